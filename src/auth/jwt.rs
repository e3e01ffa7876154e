//! Verifying a bearer token: its signature against the configured key
//! (an HS256 secret or a JWK set), its algorithm against the configured
//! list (never the token's word), `exp`/`nbf` with a small leeway, `iss`
//! and `aud`; then reading the tenant, the subject and the scopes.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use super::{jwks::KeySet, scopes::Scope};
use crate::domain::tenant::TenantId;

/// Who a verified token says is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant the token is for (the configured claim).
    pub tenant: String,
    /// The token's `sub`: the actor recorded for its changes.
    pub subject: String,
    /// The scopes of ours the token grants.
    pub scopes: HashSet<Scope>,
}

impl Principal {
    /// Whether the token grants `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Why a token was refused: a stable reason for clients and words for
/// people. Neither ever repeats the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Machine-readable, e.g. `TOKEN_EXPIRED`.
    pub reason: &'static str,
    /// What is wrong.
    pub message: &'static str,
}

const fn refusal(reason: &'static str, message: &'static str) -> Refusal {
    Refusal { reason, message }
}

const MALFORMED: Refusal = refusal(
    "TOKEN_MALFORMED",
    "the bearer token is not a well-formed JWT with an accepted algorithm",
);
const ALGORITHM: Refusal = refusal(
    "TOKEN_ALGORITHM",
    "the token's algorithm is not one this server accepts for its keys",
);
const UNKNOWN_KEY: Refusal = refusal(
    "TOKEN_UNKNOWN_KEY",
    "the token's key id (kid) names no key this server knows",
);
const SIGNATURE: Refusal = refusal("TOKEN_SIGNATURE", "the token's signature does not verify");
const EXPIRED: Refusal = refusal("TOKEN_EXPIRED", "the token has expired");
const NOT_YET_VALID: Refusal = refusal("TOKEN_NOT_YET_VALID", "the token is not valid yet (nbf)");
const ISSUER: Refusal = refusal("TOKEN_ISSUER", "the token's issuer (iss) is not accepted");
const AUDIENCE: Refusal = refusal(
    "TOKEN_AUDIENCE",
    "the token's audience (aud) does not name this service",
);
const CLAIMS: Refusal = refusal(
    "TOKEN_CLAIMS",
    "the token lacks a required claim (exp, iss, aud, sub) or one has the wrong type",
);
const TENANT: Refusal = refusal(
    "TOKEN_TENANT",
    "the token's tenant claim is missing or is not a valid tenant id",
);
const SUBJECT: Refusal = refusal(
    "TOKEN_SUBJECT",
    "the token's subject (sub) must be 1–200 printable ASCII characters",
);

/// Longest `sub` accepted (the longest actor the service records).
const SUBJECT_MAX_LEN: usize = 200;

/// Where verification keys come from.
pub enum Keys {
    /// One shared secret (HS256 and its kin).
    Secret(DecodingKey),
    /// A JWK set, looked up by the token's `kid`.
    Set(Arc<KeySet>),
}

/// How long a verified token is taken from the cache before its
/// signature is checked again (at most: never past its `exp`). Bounds how
/// long a key removed from the JWK set still admits tokens it signed.
const CACHE_TTL: Duration = Duration::from_secs(60);
/// Most tokens the cache holds; past it, expired ones go, then all.
const CACHE_MAX: usize = 10_000;

/// Checks bearer tokens against one configuration.
pub struct Verifier {
    keys: Keys,
    algorithms: Vec<Algorithm>,
    validation: Validation,
    tenant_claim: String,
    leeway: Duration,
    /// Tokens verified lately, until when each may be taken as verified:
    /// a service sends the same token on every call, and checking an
    /// RS256 signature each time halved GetCustomer's calls/s.
    verified: RwLock<HashMap<String, (Arc<Principal>, Instant)>>,
}

/// What a verifier checks besides the signature.
pub struct Expectations {
    pub issuer: String,
    pub audience: String,
    pub tenant_claim: String,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
}

impl Verifier {
    /// A verifier of tokens signed with `keys`.
    pub fn new(keys: Keys, expect: Expectations) -> Self {
        let mut validation = Validation::new(expect.algorithms[0]);
        validation.algorithms.clone_from(&expect.algorithms);
        validation.leeway = expect.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[expect.issuer]);
        validation.set_audience(&[expect.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            keys,
            algorithms: expect.algorithms,
            validation,
            tenant_claim: expect.tenant_claim,
            leeway: expect.leeway,
            verified: RwLock::new(HashMap::new()),
        }
    }

    /// The principal a valid `token` names, or why it is refused; from the
    /// cache when the same token passed lately.
    pub async fn verify(&self, token: &str) -> Result<Arc<Principal>, Refusal> {
        let now = Instant::now();
        if let Some((principal, until)) = self
            .verified
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            && now < *until
        {
            return Ok(principal.clone());
        }
        let (principal, expires) = self.check(token).await?;
        let principal = Arc::new(principal);
        let left = Duration::from_secs(
            u64::try_from(expires.saturating_sub(chrono::Utc::now().timestamp())).unwrap_or(0),
        ) + self.leeway;
        let until = now + left.min(CACHE_TTL);
        let mut verified = self.verified.write().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= CACHE_MAX {
            verified.retain(|_, (_, until)| now < *until);
            if verified.len() >= CACHE_MAX {
                verified.clear();
            }
        }
        verified.insert(token.to_owned(), (principal.clone(), until));
        Ok(principal)
    }

    /// Verifies `token` in full: its principal and its `exp` (Unix seconds).
    async fn check(&self, token: &str) -> Result<(Principal, i64), Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| MALFORMED)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(ALGORITHM);
        }
        let key = match &self.keys {
            Keys::Secret(key) => key.clone(),
            Keys::Set(set) => set
                .key_for(header.kid.as_deref(), header.alg)
                .await
                .ok_or(UNKNOWN_KEY)?,
        };
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &self.validation)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => EXPIRED,
                ErrorKind::ImmatureSignature => NOT_YET_VALID,
                ErrorKind::InvalidIssuer => ISSUER,
                ErrorKind::InvalidAudience => AUDIENCE,
                ErrorKind::InvalidSignature => SIGNATURE,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => ALGORITHM,
                ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => CLAIMS,
                _ => MALFORMED,
            })?;
        let expires = data
            .claims
            .get("exp")
            .and_then(|exp| exp.as_i64().or_else(|| exp.as_f64().map(|exp| exp as i64)))
            .ok_or(CLAIMS)?;
        Ok((self.principal(&data.claims)?, expires))
    }

    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, Refusal> {
        let tenant = claims
            .get(&self.tenant_claim)
            .and_then(Value::as_str)
            .filter(|tenant| TenantId::parse(Some(tenant)).is_ok())
            .ok_or(TENANT)?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|sub| {
                !sub.is_empty()
                    && sub.len() <= SUBJECT_MAX_LEN
                    && sub.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
            })
            .ok_or(SUBJECT)?;
        Ok(Principal {
            tenant: tenant.to_owned(),
            subject: subject.to_owned(),
            scopes: scopes(claims.get("scope")),
        })
    }
}

/// The scopes of ours in a `scope` claim: a space-separated string (RFC
/// 8693) or a list of strings. Others are ignored.
fn scopes(claim: Option<&Value>) -> HashSet<Scope> {
    match claim {
        Some(Value::String(text)) => text
            .split_ascii_whitespace()
            .filter_map(Scope::parse)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter_map(Scope::parse)
            .collect(),
        _ => HashSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"a shared secret of at least thirty-two bytes";

    fn verifier() -> Verifier {
        Verifier::new(
            Keys::Secret(DecodingKey::from_secret(SECRET)),
            Expectations {
                issuer: "https://id.example".into(),
                audience: "crm-classify".into(),
                tenant_claim: "tenant_id".into(),
                algorithms: vec![Algorithm::HS256],
                leeway: Duration::from_secs(30),
            },
        )
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn token(claims: &Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encode")
    }

    fn claims() -> Value {
        json!({
            "iss": "https://id.example", "aud": "crm-classify", "sub": "sales-svc",
            "exp": now() + 600, "tenant_id": "shop-1", "scope": "crm.read crm.write other"
        })
    }

    async fn verdict(
        mut change: impl FnMut(&mut Map<String, Value>),
    ) -> Result<Arc<Principal>, Refusal> {
        let mut claims = claims();
        change(claims.as_object_mut().expect("object"));
        verifier().verify(&token(&claims)).await
    }

    #[tokio::test]
    async fn a_good_token_names_its_tenant_subject_and_scopes() {
        let principal = verdict(|_| {}).await.expect("accepted");
        assert_eq!(principal.tenant, "shop-1");
        assert_eq!(principal.subject, "sales-svc");
        assert_eq!(principal.scopes, HashSet::from([Scope::Read, Scope::Write]));
        let listed = verdict(|c| {
            c.insert("scope".into(), json!(["crm.admin"]));
        })
        .await
        .expect("accepted");
        assert_eq!(listed.scopes, HashSet::from([Scope::Admin]));
    }

    #[tokio::test]
    async fn each_broken_claim_is_refused_for_its_own_reason() {
        type Change = Box<dyn Fn(&mut Map<String, Value>)>;
        let cases: [(&str, Change, Refusal); 8] = [
            (
                "expired",
                Box::new(|c| {
                    c.insert("exp".into(), json!(now() - 120));
                }),
                EXPIRED,
            ),
            (
                "immature",
                Box::new(|c| {
                    c.insert("nbf".into(), json!(now() + 120));
                }),
                NOT_YET_VALID,
            ),
            (
                "issuer",
                Box::new(|c| {
                    c.insert("iss".into(), json!("https://evil.example"));
                }),
                ISSUER,
            ),
            (
                "audience",
                Box::new(|c| {
                    c.insert("aud".into(), json!("another"));
                }),
                AUDIENCE,
            ),
            (
                "no exp",
                Box::new(|c| {
                    c.remove("exp");
                }),
                CLAIMS,
            ),
            (
                "no sub",
                Box::new(|c| {
                    c.remove("sub");
                }),
                CLAIMS,
            ),
            (
                "no tenant",
                Box::new(|c| {
                    c.remove("tenant_id");
                }),
                TENANT,
            ),
            (
                "bad tenant",
                Box::new(|c| {
                    c.insert("tenant_id".into(), json!("a b"));
                }),
                TENANT,
            ),
        ];
        for (name, change, expected) in cases {
            assert_eq!(verdict(change).await, Err(expected), "{name}");
        }
    }

    #[tokio::test]
    async fn a_token_verified_lately_comes_from_the_cache() {
        let verifier = verifier();
        let token = token(&claims());
        let first = verifier.verify(&token).await.expect("accepted");
        let again = verifier.verify(&token).await.expect("accepted");
        assert!(Arc::ptr_eq(&first, &again), "verified once, then cached");
        // Another token of the same claims is checked on its own.
        let mut other = claims();
        other["sub"] = json!("another-service");
        let other = verifier
            .verify(&super::tests::token(&other))
            .await
            .expect("accepted");
        assert_eq!(other.subject, "another-service");
    }

    #[tokio::test]
    async fn within_the_leeway_an_expired_token_still_passes() {
        let accepted = verdict(|c| {
            c.insert("exp".into(), json!(now() - 5));
        })
        .await;
        assert!(accepted.is_ok(), "{accepted:?}");
    }

    #[tokio::test]
    async fn a_forged_or_unsigned_token_is_refused() {
        let good = token(&claims());
        let (body, _) = good.rsplit_once('.').expect("three parts");
        let forged = format!("{body}.c2lnbmF0dXJl");
        assert_eq!(verifier().verify(&forged).await, Err(SIGNATURE));
        // alg: none, no signature.
        let unsigned = format!(
            "{}.{}.",
            base64_url(br#"{"alg":"none","typ":"JWT"}"#),
            body.split_once('.').expect("payload").1
        );
        assert_eq!(verifier().verify(&unsigned).await, Err(MALFORMED));
        assert_eq!(verifier().verify("not a token").await, Err(MALFORMED));
        // Signed with another algorithm of the same family: not configured.
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(),
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encode");
        assert_eq!(verifier().verify(&hs512).await, Err(ALGORITHM));
    }

    fn base64_url(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}
