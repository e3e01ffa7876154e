//! The folded text filters compare: written with every profile write, and
//! filled by its migration for customers stored before it existed.

use std::{collections::BTreeMap, time::Duration};

use crm_classify::pb::{Customer, ListCustomersRequest};
use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::fixtures::create_customer;
use crate::helpers::{Backend, TestApp, with_own_database};

/// Folded columns of every customer, by name.
async fn folded_rows(url: &str) -> Vec<(String, String, String, String, String)> {
    let db = Database::connect(url).await.expect("connect");
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT name, name_folded, company_folded, province_folded, attributes_folded
             FROM customers ORDER BY name",
        ))
        .await
        .expect("read folded columns");
    rows.iter()
        .map(|row| {
            let get = |c: &str| row.try_get::<String>("", c).expect("column");
            (
                get("name"),
                get("name_folded"),
                get("company_folded"),
                get("province_folded"),
                get("attributes_folded"),
            )
        })
        .collect()
}

async fn stored_customers_are_folded_by_the_migration(backend: Backend) {
    with_own_database(backend, "folding", async |url| {
        folded_by_the_migration(backend, url).await
    })
    .await;
}

async fn folded_by_the_migration(backend: Backend, url: String) {
    let mut app = TestApp::spawn_on_url(backend, url.clone()).await;
    let tenant = app.tenant.clone();
    let mut customers = app.customers();
    let an = Customer {
        name: "Nguyễn Văn-An".into(),
        company: "Công ty TNHH Sông Hàn".into(),
        province: "Đà Nẵng".into(),
        attributes: BTreeMap::from([("tier".into(), "Vàng  Ý".into())]),
        ..Default::default()
    };
    let binh = Customer {
        name: "Trần Bình".into(),
        province: "Hà Nội".into(),
        ..Default::default()
    };
    create_customer(&mut customers, an).await;
    create_customer(&mut customers, binh).await;
    let expected = vec![
        (
            "Nguyễn Văn-An".to_owned(),
            "nguyen van an".to_owned(),
            "cong ty tnhh song han".to_owned(),
            "da nang".to_owned(),
            r#"{"tier":"vang y"}"#.to_owned(),
        ),
        (
            "Trần Bình".into(),
            "tran binh".into(),
            String::new(),
            "ha noi".into(),
            "{}".into(),
        ),
    ];
    assert_eq!(folded_rows(&url).await, expected, "written by the service");
    app.stop_and_wait(Duration::from_secs(20)).await;

    // Back to the schema before the folded columns, then forward again.
    let db = Database::connect(&url).await.expect("connect");
    let migrations = Migrator::migrations();
    let folded = migrations
        .iter()
        .position(|m| m.name() == "m20261206_000010_folded_text")
        .expect("the folded-text migration");
    let since = (migrations.len() - folded) as u32;
    Migrator::down(&db, Some(since))
        .await
        .expect("undo the migrations from the folded text on");
    let columns = match backend {
        Backend::Sqlite => "SELECT name FROM pragma_table_info('customers')",
        Backend::Postgres => {
            "SELECT column_name AS name FROM information_schema.columns WHERE table_name = 'customers'"
        }
    };
    let names: Vec<String> = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), columns))
        .await
        .expect("columns")
        .iter()
        .map(|row| row.try_get("", "name").expect("name"))
        .collect();
    assert!(!names.iter().any(|n| n.ends_with("_folded")), "{names:?}");
    Migrator::up(&db, None).await.expect("migrate again");
    assert_eq!(folded_rows(&url).await, expected, "filled by the migration");
    drop(db);

    let app = TestApp::spawn_on_url(backend, url).await;
    let found = app
        .customers_of(&tenant)
        .list_customers(ListCustomersRequest {
            filter: r#"province = "da nang" attributes.tier:"vang" name:"Văn an""#.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let names: Vec<&str> = found.customers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Nguyễn Văn-An"]);
}

crate::on_both_backends!(stored_customers_are_folded_by_the_migration);
