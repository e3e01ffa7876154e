//! Hostile page tokens (issue 19): tokens forged by decoding a real one,
//! editing its cursor and signing it again, with the old unkeyed checksum,
//! with a wrong key, and with the server's own key (a leaked key must not
//! reach the database either). Every List call answers INVALID_ARGUMENT on
//! `page_token`, writes nothing, and the server answers afterwards.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use crm_classify::pb::{
    ListContactsRequest, ListCustomersRequest, ListGroupsRequest, ListRelationshipHistoryRequest,
    ListRelationshipsRequest, ListSourcesRequest,
};
use hmac::{Hmac, KeyInit, Mac};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tonic::{Code, Status};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::fixtures::{
    change, create_customer, named, new_group, new_source, record_contact, relationships,
};
use crate::helpers::{TestApp, expect_code, violated_fields};
use crate::on_both_databases;

/// Bytes of the HMAC tag at the end of a token.
const TAG_LEN: usize = 16;

/// How a forged payload is signed.
#[derive(Debug, Clone, Copy)]
enum Signer<'a> {
    /// The checksum of the first token format: SHA-256 without a secret.
    Unkeyed,
    /// HMAC-SHA-256 with this key.
    Key(&'a [u8]),
}

impl Signer<'_> {
    fn sign(self, payload: &Value) -> String {
        let mut bytes = serde_json::to_vec(payload).expect("payload");
        match self {
            Signer::Unkeyed => {
                let mut payload = payload.clone();
                payload["v"] = json!(1);
                bytes = serde_json::to_vec(&payload).expect("payload");
                let mut hasher = Sha256::new();
                hasher.update(b"crm-classify/page-token/v1");
                hasher.update(&bytes);
                let sum = hasher.finalize();
                bytes.extend_from_slice(&sum[..8]);
            }
            Signer::Key(key) => {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("key");
                mac.update(b"crm-classify/page-token/v2");
                mac.update(&bytes);
                let tag = mac.finalize().into_bytes();
                bytes.extend_from_slice(&tag[..TAG_LEN]);
            }
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

/// The JSON payload of a token the server issued.
fn payload_of(token: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD.decode(token).expect("base64url");
    serde_json::from_slice(&bytes[..bytes.len() - TAG_LEN]).expect("JSON payload")
}

/// One text value `query` reads on the server's database.
async fn query_text(app: &TestApp, sqlite: &str, postgres: &str, value: &str) -> Option<String> {
    let db = app.database().await;
    let backend = db.get_database_backend();
    let sql = if backend == DatabaseBackend::Postgres {
        postgres
    } else {
        sqlite
    };
    db.query_one_raw(Statement::from_sql_and_values(backend, sql, [value.into()]))
        .await
        .expect("query")
        .map(|row| row.try_get_by_index(0).expect("text"))
}

/// The server's page-token key, as stored.
async fn server_key(app: &TestApp) -> Vec<u8> {
    let hex = query_text(
        app,
        "SELECT value FROM service_secrets WHERE name = ?",
        "SELECT value FROM service_secrets WHERE name = $1",
        "page_token_key",
    )
    .await
    .expect("the server has a page-token key once it issued a token");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Rows each tenant-scoped table holds for the tenants whose id starts with
/// `prefix`, and whether such a tenant row exists.
pub async fn rows_of_tenants(app: &TestApp, prefix: &str) -> Vec<(&'static str, i64)> {
    let db = app.database().await;
    let backend = db.get_database_backend();
    let placeholder = if backend == DatabaseBackend::Postgres {
        "$1"
    } else {
        "?"
    };
    let mut counts = Vec::new();
    for (table, column) in [
        ("tenants", "id"),
        ("relationships", "tenant_id"),
        ("customer_groups", "tenant_id"),
        ("customer_sources", "tenant_id"),
        ("customers", "tenant_id"),
        ("contacts", "tenant_id"),
        ("relationship_changes", "tenant_id"),
        ("idempotency_keys", "tenant_id"),
        ("relationship_counts", "tenant_id"),
        ("group_relationship_counts", "tenant_id"),
        ("relationship_members", "tenant_id"),
        ("group_members", "tenant_id"),
        ("change_counters", "tenant_id"),
    ] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} LIKE {placeholder}");
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [format!("{prefix}%").into()],
            ))
            .await
            .expect("count")
            .expect("a row");
        counts.push((table, row.try_get_by_index::<i64>(0).expect("count")));
    }
    counts
}

/// Whether the server still answers its health check.
pub async fn assert_serving(app: &TestApp) {
    let status = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);
}

/// A List call paged one row at a time.
#[derive(Debug, Clone)]
enum List {
    Groups,
    Sources,
    Relationships,
    Customers(&'static str),
    History(String),
    Contacts(String),
}

/// The next page token of `client.method(request)` asked for the page of
/// one row after `token`.
macro_rules! next_token {
    ($client:expr, $method:ident, $request:expr, $token:expr) => {{
        let mut request = $request;
        request.page_size = 1;
        request.page_token = $token.to_owned();
        $client.$method(request).await?.into_inner().next_page_token
    }};
}

impl List {
    /// Lists the first page (`token` empty) or the page after `token`;
    /// returns the next page token.
    #[allow(clippy::field_reassign_with_default)] // next_token! sets the paging fields
    async fn call(&self, app: &TestApp, token: &str) -> Result<String, Status> {
        Ok(match self {
            List::Groups => next_token!(
                app.groups(),
                list_groups,
                ListGroupsRequest::default(),
                token
            ),
            List::Sources => next_token!(
                app.sources(),
                list_sources,
                ListSourcesRequest::default(),
                token
            ),
            List::Relationships => next_token!(
                app.relationships(),
                list_relationships,
                ListRelationshipsRequest::default(),
                token
            ),
            List::Customers(order_by) => {
                let request = ListCustomersRequest {
                    order_by: (*order_by).to_owned(),
                    ..Default::default()
                };
                next_token!(app.customers(), list_customers, request, token)
            }
            List::History(customer_id) => {
                let request = ListRelationshipHistoryRequest {
                    customer_id: customer_id.clone(),
                    ..Default::default()
                };
                next_token!(app.customers(), list_relationship_history, request, token)
            }
            List::Contacts(customer_id) => {
                let request = ListContactsRequest {
                    customer_id: customer_id.clone(),
                    ..Default::default()
                };
                next_token!(app.customers(), list_contacts, request, token)
            }
        })
    }
}

/// Cursors a client could forge from a real one: each value edited in ways
/// its column cannot hold (a NUL, too long, not an id in canonical form, out
/// of range, the wrong type), and values missing or added. `position`: the
/// integer is a relationship position (1 to `i32::MAX`); other integer
/// columns take any `i64`.
fn hostile_cursors(cursor: &[Value], position: bool) -> Vec<Value> {
    let mut forged = Vec::new();
    for i in 0..cursor.len() {
        let mut edits: Vec<Value> = vec![json!(null), json!([1]), json!({"a": 1}), json!(1.5)];
        match &cursor[i] {
            Value::String(s) => {
                let mut with_nul = s.clone();
                with_nul.insert(s.len() / 2, '\0');
                edits.extend([
                    json!(with_nul),
                    json!(format!("{s}\0")),
                    json!("\0"),
                    json!("x".repeat(5000)),
                    json!(12345),
                ]);
                if uuid::Uuid::try_parse(s).is_ok() {
                    edits.extend([
                        json!(s.to_uppercase()),
                        json!(s.replace('-', "")),
                        json!("x"),
                    ]);
                }
            }
            Value::Number(_) => {
                edits.extend([json!(u64::MAX), json!("1"), json!("\0")]);
                if position {
                    edits.extend([
                        json!(0),
                        json!(-1),
                        json!(i64::from(i32::MAX) + 1),
                        json!(i64::MAX),
                    ]);
                }
            }
            other => panic!("unexpected cursor value {other}"),
        }
        for edit in edits {
            let mut edited = cursor.to_vec();
            edited[i] = edit;
            forged.push(Value::Array(edited));
        }
    }
    forged.push(json!([]));
    forged.push(Value::Array(cursor[..1].to_vec()));
    let mut longer = cursor.to_vec();
    longer.push(json!("\0"));
    forged.push(Value::Array(longer));
    forged
}

/// Every forgery of `list`'s second page token is INVALID_ARGUMENT on
/// `page_token`; the real token, signed again with the server's key, works
/// (so the forging is right and only the edits are refused).
async fn refuses_forgeries(app: &TestApp, list: List) {
    let token = list.call(app, "").await.expect("first page");
    assert!(!token.is_empty(), "{list:?} has a second page");
    let key = server_key(app).await;
    let payload = payload_of(&token);
    if let Err(status) = list.call(app, &Signer::Key(&key).sign(&payload)).await {
        panic!("{list:?}: the real token signed again is refused: {status:?}");
    }
    let wrong_key = [0x5a_u8; 32];
    let cursor = payload["k"].as_array().expect("cursor").clone();
    let mut forgeries = vec![
        (Signer::Unkeyed, payload.clone()),
        (Signer::Key(&wrong_key), payload.clone()),
    ];
    for forged in hostile_cursors(&cursor, matches!(list, List::Relationships)) {
        let mut edited = payload.clone();
        edited["k"] = forged;
        for signer in [Signer::Unkeyed, Signer::Key(&wrong_key), Signer::Key(&key)] {
            forgeries.push((signer, edited.clone()));
        }
    }
    for (signer, forged) in forgeries {
        let status = expect_code(
            list.call(app, &signer.sign(&forged))
                .await
                .map(tonic::Response::new),
            Code::InvalidArgument,
        );
        assert_eq!(
            violated_fields(&status),
            vec!["page_token"],
            "{list:?} {signer:?} {forged}"
        );
    }
}

on_both_databases! {
    async fn forged_page_tokens_are_invalid_argument_on_every_list(app: TestApp) {
        let mut customers = app.customers();
        for name in ["An", "Bình", "Châu"] {
            new_group(&app, name).await;
            new_source(&app, name).await;
        }
        let first = create_customer(&mut customers, named("Dũng")).await;
        create_customer(&mut customers, named("Em")).await;
        let seeded = relationships(&mut app.relationships()).await;
        let other = seeded.iter().find(|r| r.id != first.relationship_id).expect("two relationships");
        change(&mut customers, &first.id, &other.id).await;
        change(&mut customers, &first.id, &first.relationship_id).await;
        record_contact(&mut customers, &first.id, None).await;
        record_contact(&mut customers, &first.id, None).await;

        let before = rows_of_tenants(&app, &app.tenant).await;
        for list in [
            List::Groups,
            List::Sources,
            List::Relationships,
            List::Customers(""),
            List::Customers("name"),
            List::Customers("last_contact_time"),
            List::History(first.id.clone()),
            List::Contacts(first.id.clone()),
        ] {
            refuses_forgeries(&app, list).await;
        }
        assert_eq!(rows_of_tenants(&app, &app.tenant).await, before, "forged tokens wrote nothing");
        assert_serving(&app).await;
        assert!(List::Groups.call(&app, "").await.is_ok(), "the server still answers");
    }
}
