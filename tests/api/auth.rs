//! Authentication and authorization (`--auth`): bearer tokens verified
//! against an HS256 secret or a JWK set (file or URL), the scope each RPC
//! needs, one tenant per token, `x-actor-id` only with `crm.act_as`, and
//! `auto` refusing to expose an address other than loopback.

use std::sync::{Arc, Mutex};

use crm_classify::{
    Application, Config,
    auth::AuthMode,
    pb::{
        ApplyInactivityRulesRequest, ContactChannel, CreateGroupRequest, GetCustomerRequest, Group,
        ListContactsRequest, ListCustomersRequest, RecordContactRequest,
        WatchRelationshipChangesRequest, customer_service_client::CustomerServiceClient,
        group_service_client::GroupServiceClient,
        relationship_service_client::RelationshipServiceClient,
    },
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tonic::{
    Code, Request, Status,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

use crate::{
    fixtures::named,
    helpers::{Backend, TestApp},
};

pub(crate) const SECRET: &str = "the test tenant's shared secret, 32 bytes or more";
const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "crm-classify";

crate::on_both_backends!(
    calls_without_a_valid_token_are_unauthenticated_and_health_stays_open,
    a_token_grants_only_the_rpcs_its_scopes_name,
    a_token_of_one_tenant_cannot_read_write_or_watch_another,
    another_actor_is_recorded_only_with_the_act_as_scope,
    a_jwk_set_verifies_by_key_id_and_refuses_algorithm_confusion,
);

/// Sends a bearer token and, optionally, a tenant and an actor.
#[derive(Clone)]
struct Bearer {
    token: Option<String>,
    tenant: Option<String>,
    actor: Option<String>,
}

impl Bearer {
    fn token(token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            tenant: None,
            actor: None,
        }
    }

    fn tenant(mut self, tenant: &str) -> Self {
        self.tenant = Some(tenant.to_owned());
        self
    }

    fn actor(mut self, actor: &str) -> Self {
        self.actor = Some(actor.to_owned());
        self
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let metadata = request.metadata_mut();
        if let Some(token) = &self.token {
            let value = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| Status::internal("bad token"))?;
            metadata.insert("authorization", value);
        }
        for (key, value) in [("x-tenant-id", &self.tenant), ("x-actor-id", &self.actor)] {
            if let Some(value) = value {
                let value =
                    MetadataValue::try_from(value.as_str()).map_err(|_| Status::internal("bad"))?;
                metadata.insert(key, value);
            }
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

fn customers(app: &TestApp, bearer: Bearer) -> CustomerServiceClient<Authed> {
    CustomerServiceClient::with_interceptor(app.channel.clone(), bearer)
}

fn groups(app: &TestApp, bearer: Bearer) -> GroupServiceClient<Authed> {
    GroupServiceClient::with_interceptor(app.channel.clone(), bearer)
}

fn relationships(app: &TestApp, bearer: Bearer) -> RelationshipServiceClient<Authed> {
    RelationshipServiceClient::with_interceptor(app.channel.clone(), bearer)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a good token for `tenant` with `scope`.
pub(crate) fn claims(tenant: &str, scope: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "sales-service",
        "iat": now(), "exp": now() + 600, "tenant_id": tenant, "scope": scope,
    })
}

pub(crate) fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

fn jwt_config(config: &mut Config) {
    config.auth = AuthMode::Jwt;
    config.jwt_issuer = Some(ISSUER.to_owned());
    config.jwt_audience = Some(AUDIENCE.to_owned());
}

/// A server that verifies HS256 tokens signed with [`SECRET`].
pub(crate) async fn secret_server(backend: Backend) -> TestApp {
    TestApp::spawn_with_config(backend, |config| {
        jwt_config(config);
        config.jwt_secret = Some(SECRET.to_owned());
    })
    .await
    .expect("server")
}

/// The status code and ErrorInfo reason of a refused call.
fn refusal<T: std::fmt::Debug>(result: Result<T, Status>) -> (Code, String, Status) {
    let status = result.expect_err("the call is refused");
    let reason = status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default();
    (status.code(), reason, status)
}

fn list() -> ListCustomersRequest {
    ListCustomersRequest::default()
}

async fn calls_without_a_valid_token_are_unauthenticated_and_health_stays_open(backend: Backend) {
    let app = secret_server(backend).await;
    let tenant = app.tenant.clone();
    let good = claims(&tenant, "crm.read");
    let with = |change: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut claims = good.clone();
        change(claims.as_object_mut().expect("object"));
        hs256(&claims)
    };
    let other_secret = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(b"another secret that is also long enough"),
    )
    .expect("sign");
    let payload = hs256(&good).split('.').nth(1).expect("payload").to_owned();
    let unsigned = format!(
        "{}.{payload}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#)
    );
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "TOKEN_MISSING"),
        ("bad signature", Some(other_secret), "TOKEN_SIGNATURE"),
        (
            "expired",
            Some(with(&|c| {
                c.insert("exp".into(), json!(now() - 3600));
            })),
            "TOKEN_EXPIRED",
        ),
        (
            "not yet valid",
            Some(with(&|c| {
                c.insert("nbf".into(), json!(now() + 3600));
            })),
            "TOKEN_NOT_YET_VALID",
        ),
        (
            "wrong issuer",
            Some(with(&|c| {
                c.insert("iss".into(), json!("https://elsewhere.test"));
            })),
            "TOKEN_ISSUER",
        ),
        (
            "wrong audience",
            Some(with(&|c| {
                c.insert("aud".into(), json!("another-service"));
            })),
            "TOKEN_AUDIENCE",
        ),
        ("alg none", Some(unsigned), "TOKEN_MALFORMED"),
        ("garbage", Some("not.a.jwt".to_owned()), "TOKEN_MALFORMED"),
    ];
    for (case, token, reason) in cases {
        let bearer = Bearer {
            token: token.clone(),
            tenant: None,
            actor: None,
        };
        let (code, got, status) = refusal(customers(&app, bearer).list_customers(list()).await);
        assert_eq!(code, Code::Unauthenticated, "{case}: {status:?}");
        assert_eq!(got, reason, "{case}: {status:?}");
        if let Some(token) = token {
            assert!(
                !status.message().contains(&token) && !format!("{status:?}").contains(&token),
                "{case}: the token is echoed"
            );
        }
    }
    // The same token that failed for its claims passes when they are right.
    customers(&app, Bearer::token(&hs256(&good)))
        .list_customers(list())
        .await
        .expect("a good token is accepted");
    // Health needs no token.
    let health = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("health without a token")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
}

async fn a_token_grants_only_the_rpcs_its_scopes_name(backend: Backend) {
    let app = secret_server(backend).await;
    let tenant = app.tenant.clone();
    let reader = Bearer::token(&hs256(&claims(&tenant, "crm.read")));
    let writer = Bearer::token(&hs256(&claims(&tenant, "crm.read crm.write")));
    let admin = Bearer::token(&hs256(&claims(&tenant, "crm.admin")));

    let created = customers(&app, writer.clone())
        .create_customer(crate::fixtures::create_request(named("Nguyễn Văn An")))
        .await
        .expect("a writer creates")
        .into_inner()
        .customer
        .expect("customer");
    let read = customers(&app, reader.clone())
        .get_customer(GetCustomerRequest {
            id: created.id.clone(),
        })
        .await
        .expect("a reader reads");
    assert_eq!(
        read.into_inner().customer.expect("customer").name,
        "Nguyễn Văn An"
    );

    let (code, reason, status) = refusal(
        customers(&app, reader.clone())
            .create_customer(crate::fixtures::create_request(named("Trần Thị Bình")))
            .await,
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::PermissionDenied, "MISSING_SCOPE"),
        "{status:?}"
    );
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(
        info.metadata.get("required_scope").map(String::as_str),
        Some("crm.write")
    );

    // Catalogs need crm.admin; a writer cannot create a group, an admin can.
    let group = CreateGroupRequest {
        group: Some(Group {
            name: "Khách VIP".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (code, _, status) = refusal(
        groups(&app, writer.clone())
            .create_group(group.clone())
            .await,
    );
    assert_eq!(code, Code::PermissionDenied, "{status:?}");
    groups(&app, admin.clone())
        .create_group(group)
        .await
        .expect("an admin creates a group");
    // An admin token without crm.read does not read customers.
    let (code, _, _) = refusal(customers(&app, admin.clone()).list_customers(list()).await);
    assert_eq!(code, Code::PermissionDenied);

    // The inactivity rules: a dry run reads, a real run administers.
    let dry = ApplyInactivityRulesRequest {
        dry_run: true,
        ..Default::default()
    };
    relationships(&app, reader.clone())
        .apply_inactivity_rules(dry)
        .await
        .expect("a reader's dry run");
    let real = ApplyInactivityRulesRequest {
        dry_run: false,
        ..dry
    };
    let (code, reason, status) = refusal(
        relationships(&app, writer)
            .apply_inactivity_rules(real)
            .await,
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::PermissionDenied, "MISSING_SCOPE"),
        "{status:?}"
    );
    let full = Bearer::token(&hs256(&claims(&tenant, "crm.read crm.admin")));
    relationships(&app, full)
        .apply_inactivity_rules(real)
        .await
        .expect("an admin's real run");
}

async fn a_token_of_one_tenant_cannot_read_write_or_watch_another(backend: Backend) {
    let app = secret_server(backend).await;
    let tenant_a = app.tenant.clone();
    let tenant_b = format!("{tenant_a}-b");
    let all = "crm.read crm.write crm.admin";
    let token_a = hs256(&claims(&tenant_a, all));
    let token_b = hs256(&claims(&tenant_b, all));
    let created = customers(&app, Bearer::token(&token_a))
        .create_customer(crate::fixtures::create_request(named("Lê Văn Cường")))
        .await
        .expect("create in A")
        .into_inner()
        .customer
        .expect("customer");

    // B's token sees nothing of A's, whatever it asks.
    let seen_by_b = customers(&app, Bearer::token(&token_b))
        .list_customers(list())
        .await
        .expect("B lists its own tenant")
        .into_inner();
    assert_eq!(seen_by_b.total_size, 0);
    let (code, _, _) = refusal(
        customers(&app, Bearer::token(&token_b))
            .get_customer(GetCustomerRequest {
                id: created.id.clone(),
            })
            .await,
    );
    assert_eq!(code, Code::NotFound);

    // Naming A in x-tenant-id with B's token: denied for reads, writes
    // and watches.
    let b_as_a = Bearer::token(&token_b).tenant(&tenant_a);
    let (code, reason, _) = refusal(customers(&app, b_as_a.clone()).list_customers(list()).await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::PermissionDenied, "OTHER_TENANT")
    );
    let (code, _, _) = refusal(
        customers(&app, b_as_a.clone())
            .create_customer(crate::fixtures::create_request(named("Phạm Thu")))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    let (code, _, _) = refusal(
        relationships(&app, b_as_a)
            .watch_relationship_changes(WatchRelationshipChangesRequest::default())
            .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    // Naming its own tenant is fine.
    let own = customers(&app, Bearer::token(&token_a).tenant(&tenant_a))
        .list_customers(list())
        .await
        .expect("A names A")
        .into_inner();
    assert_eq!(own.total_size, 1);
    // Nothing was written to A by B's attempts.
    assert_eq!(
        customers(&app, Bearer::token(&token_a))
            .list_customers(list())
            .await
            .expect("list")
            .into_inner()
            .total_size,
        1
    );
}

async fn another_actor_is_recorded_only_with_the_act_as_scope(backend: Backend) {
    let app = secret_server(backend).await;
    let tenant = app.tenant.clone();
    let service = hs256(&claims(&tenant, "crm.read crm.write"));
    let delegate = hs256(&claims(&tenant, "crm.read crm.write crm.act_as"));
    let customer = customers(&app, Bearer::token(&service))
        .create_customer(crate::fixtures::create_request(named("Võ Minh Đức")))
        .await
        .expect("create")
        .into_inner()
        .customer
        .expect("customer");

    let (code, reason, status) = refusal(
        customers(&app, Bearer::token(&service).actor("alice"))
            .list_customers(list())
            .await,
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::PermissionDenied, "MISSING_SCOPE"),
        "{status:?}"
    );

    // Without a header, and with its own subject, the token's sub acts.
    let contact = |bearer: Bearer| {
        let mut client = customers(&app, bearer);
        let request = RecordContactRequest {
            customer_id: customer.id.clone(),
            channel: ContactChannel::Call as i32,
            ..Default::default()
        };
        async move { client.record_contact(request).await }
    };
    contact(Bearer::token(&service)).await.expect("as itself");
    contact(Bearer::token(&service).actor("sales-service"))
        .await
        .expect("naming itself");
    // With crm.act_as the service names the user it acts for.
    contact(Bearer::token(&delegate).actor("alice"))
        .await
        .expect("acting for alice");
    let contacts = customers(&app, Bearer::token(&service))
        .list_contacts(ListContactsRequest {
            customer_id: customer.id.clone(),
            ..Default::default()
        })
        .await
        .expect("contacts")
        .into_inner()
        .contacts;
    let mut actors: Vec<String> = contacts.into_iter().map(|c| c.actor_id).collect();
    actors.sort();
    assert_eq!(actors, ["alice", "sales-service", "sales-service"]);
}

/// A JWKS served over HTTP by the test, counting its fetches.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    fetches: Arc<Mutex<usize>>,
}

impl JwksServer {
    async fn start(keys: &[Jwk]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
        let body = Arc::new(Mutex::new(set(keys)));
        let fetches = Arc::new(Mutex::new(0));
        let (served, counted) = (body.clone(), fetches.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = vec![0; 4096];
                let mut read = 0;
                while !request[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut request[read..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read += n,
                    }
                }
                *counted.lock().expect("count") += 1;
                let body = served.lock().expect("body").clone();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        Self { url, body, fetches }
    }

    fn publish(&self, keys: &[Jwk]) {
        *self.body.lock().expect("body") = set(keys);
    }

    fn fetches(&self) -> usize {
        *self.fetches.lock().expect("count")
    }
}

fn set(keys: &[Jwk]) -> String {
    json!({ "keys": keys }).to_string()
}

/// An RSA signing key and its public JWK under `kid`.
fn rsa_key(kid: &str) -> (EncodingKey, Jwk, String) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
    let pem = pair.serialize_pem();
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("encoding key");
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("jwk");
    jwk.common.key_id = Some(kid.to_owned());
    (key, jwk, pair.public_key_pem())
}

fn rs256(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

async fn a_jwk_set_verifies_by_key_id_and_refuses_algorithm_confusion(backend: Backend) {
    let (key1, jwk1, public_pem) = rsa_key("k1");
    let (key2, jwk2, _) = rsa_key("k2");
    let (key3, jwk3, _) = rsa_key("k3");
    let jwks = JwksServer::start(std::slice::from_ref(&jwk1)).await;
    let url = jwks.url.clone();
    let app = TestApp::spawn_with_config(backend, |config| {
        jwt_config(config);
        config.jwt_jwks = Some(url.clone());
    })
    .await
    .expect("server");
    assert_eq!(jwks.fetches(), 1, "the set is read once at start");
    let claims = claims(&app.tenant, "crm.read");
    let call = |token: String| {
        let mut client = customers(&app, Bearer::token(&token));
        async move { client.list_customers(list()).await }
    };
    call(rs256(&key1, "k1", &claims))
        .await
        .expect("k1 verifies");

    // HS256 signed with the public key as the secret: the classic confusion.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let confused = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .expect("sign");
    let (code, reason, _) = refusal(call(confused).await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::Unauthenticated, "TOKEN_ALGORITHM")
    );
    // Another key under k1's id: the signature fails.
    let (code, reason, _) = refusal(call(rs256(&key2, "k1", &claims)).await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::Unauthenticated, "TOKEN_SIGNATURE")
    );

    // The provider rotates in k2: a token naming it makes the server read
    // the set again, once.
    jwks.publish(&[jwk1.clone(), jwk2.clone()]);
    call(rs256(&key2, "k2", &claims))
        .await
        .expect("k2 after a refetch");
    assert_eq!(jwks.fetches(), 2);
    call(rs256(&key2, "k2", &claims)).await.expect("k2 held");
    assert_eq!(jwks.fetches(), 2);
    // Unknown ids right after: no refetch (rate-limited), refused.
    jwks.publish(&[jwk1, jwk2, jwk3]);
    for _ in 0..3 {
        let (code, reason, _) = refusal(call(rs256(&key3, "k3", &claims)).await);
        assert_eq!(
            (code, reason.as_str()),
            (Code::Unauthenticated, "TOKEN_UNKNOWN_KEY")
        );
    }
    assert_eq!(
        jwks.fetches(),
        2,
        "unknown key ids refetch at most every 30 s"
    );
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn auto_refuses_an_address_other_than_loopback_and_jwt_needs_its_settings() {
    /// Why the server refuses to start with `config`; it must name each of `words`.
    async fn refusal(config: &Config, words: &[&str]) {
        let refused = Application::build(config.clone())
            .await
            .err()
            .unwrap_or_else(|| panic!("the server started; expected {words:?}"))
            .to_string();
        assert!(words.iter().all(|word| refused.contains(word)), "{refused}");
    }
    let mut config = Config::from_defaults();
    config.listen = "0.0.0.0:0".parse().expect("address");
    config.database_url = "sqlite::memory:".to_owned();
    refusal(&config, &["--auth jwt", "--auth none"]).await;
    let mut jwt = config.clone();
    jwt_config(&mut jwt);
    refusal(&jwt, &["--jwt-secret", "--jwt-jwks"]).await;
    jwt.jwt_secret = Some("short".into());
    refusal(&jwt, &["32 bytes"]).await;
    jwt.jwt_secret = Some(SECRET.into());
    jwt.jwt_algorithms = vec!["RS256".into()];
    refusal(&jwt, &["RS256"]).await;
    // `none` is an explicit choice, allowed anywhere.
    let mut none = config;
    none.auth = AuthMode::None;
    let built = Application::build(none).await;
    assert!(built.is_ok(), "{:?}", built.err().map(|e| e.to_string()));
}
