//! Folded copies of the customer text that filters compare
//! (`name`, `company`, `province`, the values of `attributes`): `=`, prefix
//! and word comparisons run on them in SQL exactly as the in-memory
//! evaluator runs on the folded text (see `folding`). The service writes
//! them with every profile write; this migration folds the rows already
//! stored, in batches of [`BATCH`] by id.

use std::collections::BTreeMap;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement, Value};

use crate::folding::{fold, folded_attributes};

const UP: &[&str] = &[
    "ALTER TABLE customers ADD COLUMN name_folded TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE customers ADD COLUMN company_folded TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE customers ADD COLUMN province_folded TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE customers ADD COLUMN attributes_folded TEXT NOT NULL DEFAULT '{}'",
];

const DOWN: &[&str] = &[
    "ALTER TABLE customers DROP COLUMN attributes_folded",
    "ALTER TABLE customers DROP COLUMN province_folded",
    "ALTER TABLE customers DROP COLUMN company_folded",
    "ALTER TABLE customers DROP COLUMN name_folded",
];

/// Rows folded per statement.
const BATCH: usize = 500;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, UP).await?;
        fold_stored_rows(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, DOWN).await
    }
}

/// Folds every stored customer, [`BATCH`] rows at a time in id order.
/// Corrupt stored attributes are left unfolded (`{}`): the service reports
/// such a customer as INTERNAL on every read anyway.
async fn fold_stored_rows(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let backend = manager.get_database_backend();
    let mut after = String::new();
    loop {
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                placeholders(
                    backend,
                    "SELECT id, name, company, province, attributes FROM customers
                     WHERE id > ? ORDER BY id LIMIT ?",
                ),
                [Value::from(after.clone()), Value::from(BATCH as i64)],
            ))
            .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.try_get("", "id")?;
        let mut values = Vec::with_capacity(rows.len() * 5);
        for row in &rows {
            let attributes: String = row.try_get("", "attributes")?;
            let attributes = serde_json::from_str::<BTreeMap<String, String>>(&attributes)
                .map(|map| folded_attributes(&map))
                .unwrap_or_else(|_| "{}".to_owned());
            values.push(Value::from(row.try_get::<String>("", "id")?));
            values.push(Value::from(fold(&row.try_get::<String>("", "name")?)));
            values.push(Value::from(fold(&row.try_get::<String>("", "company")?)));
            values.push(Value::from(fold(&row.try_get::<String>("", "province")?)));
            values.push(Value::from(attributes));
        }
        let tuples = vec!["(?, ?, ?, ?, ?)"; rows.len()].join(", ");
        // `VALUES` names its columns column1, column2, … on both databases.
        let sql = format!(
            "UPDATE customers SET name_folded = v.column2, company_folded = v.column3,
                province_folded = v.column4, attributes_folded = v.column5
             FROM (VALUES {tuples}) AS v WHERE customers.id = v.column1"
        );
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            placeholders(backend, &sql),
            values,
        ))
        .await?;
    }
}

/// `sql` with its `?` placeholders as the backend writes them.
fn placeholders(backend: sea_orm_migration::sea_orm::DatabaseBackend, sql: &str) -> String {
    if backend != sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
        return sql.to_owned();
    }
    let mut numbered = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            numbered.push_str(&format!("${n}"));
        } else {
            numbered.push(c);
        }
    }
    numbered
}
