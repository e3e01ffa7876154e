//! A filter as an SQL condition on `customers`, for both databases, that
//! selects exactly what the in-memory evaluator
//! ([`crate::domain::filter::eval`]) selects:
//!
//! - every comparison is two-valued (never NULL), so `NOT` and `!=` (the
//!   negation of `=`) mean what they mean in memory: a comparison with a
//!   value the customer lacks (no source, never contacted, no such
//!   attribute) is false;
//! - text fields compare their folded columns (`name_folded`, …,
//!   `attributes_folded`) with the folded value; folded text holds only
//!   `a-z`, `0-9` and single spaces, so the LIKE patterns made of it need
//!   no escaping;
//! - names are resolved beforehand ([`super::meaning`]): codes to ids,
//!   `in_group` arguments to their subtrees, `ago(…)` to a time.
//!
//! Every value reaches the database as a bound parameter.

use sea_orm::{
    Condition, DatabaseBackend,
    sea_query::{BinOper, Expr, ExprTrait, Func, Query},
};

use crate::{
    domain::filter::{
        Comparison, Field, Filter, Op, Time, Value,
        eval::{Meaning, normalised_phone},
        text::fold,
    },
    entity::{customer, customer_group, group_member},
};

use customer::Column as C;

/// Where a condition is evaluated: the tenant (membership sub-selects
/// name it, so they read their own index) and the database.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub tenant: &'a str,
    pub backend: DatabaseBackend,
}

/// The condition selecting the customers of `scope.tenant` that `filter`
/// selects.
pub fn condition(filter: &Filter, meaning: &Meaning, scope: Scope<'_>) -> Condition {
    match filter {
        Filter::All => constant(true),
        Filter::And(parts) => parts.iter().fold(Condition::all(), |all, part| {
            all.add(condition(part, meaning, scope))
        }),
        Filter::Or(parts) => parts.iter().fold(Condition::any(), |any, part| {
            any.add(condition(part, meaning, scope))
        }),
        Filter::Not(inner) => Condition::all().add(condition(inner, meaning, scope)).not(),
        Filter::InGroup(group) => match meaning.subtrees.get(group) {
            Some(ids) if !ids.is_empty() => {
                let mut ids: Vec<String> = ids.iter().cloned().collect();
                ids.sort();
                leaf(member_of(scope.tenant, Some(ids)))
            }
            _ => constant(false),
        },
        Filter::Present(field) => present(field, scope),
        Filter::Compare(c) if c.op == Op::Ne => {
            let equal = Comparison {
                op: Op::Eq,
                ..c.clone()
            };
            Condition::all().add(compare(&equal, meaning, scope)).not()
        }
        Filter::Compare(c) => compare(c, meaning, scope),
    }
}

/// TRUE or FALSE.
fn constant(value: bool) -> Condition {
    leaf(Expr::cust(if value { "1 = 1" } else { "1 = 0" }))
}

fn leaf(expr: Expr) -> Condition {
    Condition::all().add(expr)
}

/// A column of `customers`, qualified (filters also read other tables in
/// sub-selects).
fn column(c: C) -> Expr {
    Expr::col((customer::Entity, c))
}

/// `expr` is not NULL and `test` holds: two-valued whatever `expr` holds.
fn having(expr: Expr, test: Expr) -> Condition {
    Condition::all().add(expr.is_not_null()).add(test)
}

/// The folded value of attribute `key`, NULL when the customer has none.
/// Keys are `a-z`, `0-9` and `_` (the parser refuses others).
fn attribute(stored: C, key: &str, backend: DatabaseBackend) -> Expr {
    match backend {
        DatabaseBackend::Postgres => Func::cust("jsonb_extract_path_text")
            .arg(column(stored).cast_as("jsonb"))
            .arg(key.to_owned())
            .into(),
        _ => Func::cust("json_extract")
            .arg(column(stored))
            .arg(format!("$.\"{key}\""))
            .into(),
    }
}

/// Whether the customer has a value for `field` (as
/// [`crate::domain::filter::eval`] says: non-empty text, a source, a
/// contact, an attribute, a group; the rest always have one).
fn present(field: &Field, scope: Scope<'_>) -> Condition {
    let non_empty = |c: C| leaf(column(c).ne(""));
    match field {
        Field::Name => non_empty(C::Name),
        Field::Company => non_empty(C::Company),
        Field::Province => non_empty(C::Province),
        Field::Phone => non_empty(C::Phone),
        Field::Email => non_empty(C::Email),
        Field::OwnerId => non_empty(C::OwnerId),
        Field::RelationshipId => non_empty(C::RelationshipId),
        Field::SourceId | Field::Source => having(column(C::SourceId), column(C::SourceId).ne("")),
        Field::LastContactTime => leaf(column(C::LastContactTime).is_not_null()),
        Field::GroupIds => leaf(member_of(scope.tenant, None)),
        Field::Attribute(key) => {
            let raw = attribute(C::Attributes, key, scope.backend);
            having(raw.clone(), raw.ne(""))
        }
        Field::Relationship
        | Field::Revenue
        | Field::ProfileCompletion
        | Field::CreateTime
        | Field::UpdateTime => constant(true),
    }
}

/// A comparison other than `!=`.
fn compare(c: &Comparison, meaning: &Meaning, scope: Scope<'_>) -> Condition {
    match (&c.field, &c.value) {
        (Field::GroupIds, Value::Text(id)) => leaf(member_of(scope.tenant, Some(vec![id.clone()]))),
        (Field::Revenue, Value::Integer(v)) => leaf(ordered(column(C::Revenue), c.op, *v)),
        (Field::ProfileCompletion, Value::Integer(v)) => {
            leaf(ordered(column(C::ProfileCompletion), c.op, *v))
        }
        (field, Value::Time(t)) => {
            let at = match *t {
                Time::At(at) => at,
                Time::Ago(back) => meaning.now.saturating_sub(back),
            };
            match field {
                Field::CreateTime => leaf(ordered(column(C::CreateTime), c.op, at)),
                Field::UpdateTime => leaf(ordered(column(C::UpdateTime), c.op, at)),
                // A contacted customer's activity time is its last contact
                // time, and `activity_time` is indexed: the same test on it
                // changes nothing but lets the database use the index.
                _ => having(
                    column(C::LastContactTime),
                    ordered(column(C::LastContactTime), c.op, at),
                )
                .add(ordered(column(C::ActivityTime), c.op, at)),
            }
        }
        (Field::Source, Value::Text(code)) => match meaning.sources.get(code) {
            Some(id) => having(column(C::SourceId), column(C::SourceId).eq(id.as_str())),
            None => constant(false),
        },
        (Field::Relationship, Value::Text(code)) => match meaning.relationships.get(code) {
            Some(id) => leaf(column(C::RelationshipId).eq(id.as_str())),
            None => constant(false),
        },
        (Field::Phone, Value::Text(v)) => match normalised_phone(v) {
            phone if phone.is_empty() => constant(false),
            phone => leaf(column(C::Phone).eq(phone)),
        },
        (Field::Email, Value::Text(v)) => match v.to_lowercase() {
            email if email.is_empty() => constant(false),
            email => leaf(column(C::Email).eq(email)),
        },
        (Field::OwnerId, Value::Text(v)) => leaf(column(C::OwnerId).eq(v.as_str())),
        (Field::RelationshipId, Value::Text(v)) => leaf(column(C::RelationshipId).eq(v.as_str())),
        (Field::SourceId, Value::Text(v)) => {
            having(column(C::SourceId), column(C::SourceId).eq(v.as_str()))
        }
        (field, value @ (Value::Text(_) | Value::Prefix(_))) => {
            let folded = match field {
                Field::Name => column(C::NameFolded),
                Field::Company => column(C::CompanyFolded),
                Field::Province => column(C::ProvinceFolded),
                Field::Attribute(key) => attribute(C::AttributesFolded, key, scope.backend),
                // The typed tree gives text values to no other field.
                _ => return constant(false),
            };
            let test = match value {
                Value::Prefix(prefix) => leaf(folded.clone().like(format!("{}%", fold(prefix)))),
                Value::Text(text) if c.op == Op::Has => {
                    has_words(folded.clone(), &fold(text), scope.backend)
                }
                Value::Text(text) => leaf(folded.clone().eq(fold(text))),
                _ => constant(false),
            };
            Condition::all().add(folded.is_not_null()).add(test)
        }
        // The typed tree pairs no other field with these values.
        _ => constant(false),
    }
}

/// `:` on folded text: the folded value's words stand consecutively among
/// the column's — " WORDS " is inside " COLUMN " (a plain substring search,
/// which both databases do faster than a pattern match).
fn has_words(folded: Expr, words: &str, backend: DatabaseBackend) -> Condition {
    if words.is_empty() {
        return constant(false);
    }
    let padded = Expr::val(" ")
        .binary(BinOper::Custom("||"), folded)
        .binary(BinOper::Custom("||"), Expr::val(" "));
    let position = match backend {
        DatabaseBackend::Postgres => Func::cust("strpos"),
        _ => Func::cust("instr"),
    };
    leaf(Expr::from(position.arg(padded).arg(format!(" {words} "))).gt(0))
}

/// `expr OP value` for an ordered field.
fn ordered(expr: Expr, op: Op, value: i64) -> Expr {
    match op {
        Op::Lt => expr.lt(value),
        Op::Le => expr.lte(value),
        Op::Gt => expr.gt(value),
        Op::Ge => expr.gte(value),
        Op::Ne => expr.ne(value),
        Op::Eq | Op::Has => expr.eq(value),
    }
}

/// The customer is a member of an active group (of one of `groups`, when
/// given): the definition of a customer's groups that records show
/// ([`super::super::records::active_group_ids_of`]). Written as
/// `id IN (members)`, so the database may start from the memberships when
/// they are few.
fn member_of(tenant: &str, groups: Option<Vec<String>>) -> Expr {
    let mut members = Query::select();
    members
        .column((group_member::Entity, group_member::Column::CustomerId))
        .from(group_member::Entity)
        .inner_join(
            customer_group::Entity,
            Expr::col((customer_group::Entity, customer_group::Column::Id))
                .equals((group_member::Entity, group_member::Column::GroupId))
                .and(
                    Expr::col((customer_group::Entity, customer_group::Column::DeleteTime))
                        .is_null(),
                ),
        )
        .and_where(Expr::col((group_member::Entity, group_member::Column::TenantId)).eq(tenant));
    if let Some(groups) = groups {
        members.and_where(
            Expr::col((group_member::Entity, group_member::Column::GroupId)).is_in(groups),
        );
    }
    column(C::Id).in_subquery(members)
}
