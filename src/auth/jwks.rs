//! A JWK set read from a file or fetched from a URL, refreshed on a
//! schedule and refetched when a token names a key id it does not hold
//! (at most once per [`MIN_REFETCH`], so forged `kid`s cannot make the
//! server hammer its identity provider).

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse},
};

/// Shortest time between two fetches caused by unknown key ids.
pub const MIN_REFETCH: Duration = Duration::from_secs(30);
/// How long one fetch of a JWKS URL may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the set is read from.
#[derive(Debug, Clone)]
pub enum Location {
    File(PathBuf),
    Url(reqwest::Url),
}

impl Location {
    /// `http(s)://…` is a URL, anything else a file path.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("http://") || text.starts_with("https://") {
            reqwest::Url::parse(text)
                .map(Self::Url)
                .map_err(|e| format!("--jwt-jwks `{text}` is not a URL: {e}"))
        } else {
            Ok(Self::File(PathBuf::from(text)))
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Url(url) => write!(f, "{url}"),
        }
    }
}

/// One verification key and the algorithm its JWK pins, if any.
#[derive(Clone)]
struct Entry {
    key: DecodingKey,
    algorithm: Option<Algorithm>,
}

/// The current keys, by key id.
pub struct KeySet {
    location: Location,
    client: reqwest::Client,
    keys: RwLock<HashMap<Option<String>, Entry>>,
    /// When the last refetch for an unknown key id started; one at a time.
    refetched: tokio::sync::Mutex<Option<Instant>>,
}

impl KeySet {
    /// Reads the set for the first time; the server does not start
    /// without one.
    pub async fn load(location: Location) -> Result<Arc<Self>, String> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
        let set = Arc::new(Self {
            location,
            client,
            keys: RwLock::new(HashMap::new()),
            refetched: tokio::sync::Mutex::new(None),
        });
        set.reload().await?;
        Ok(set)
    }

    /// Reads the set again and replaces the keys; on failure the keys
    /// held stay.
    pub async fn reload(&self) -> Result<usize, String> {
        let text = match &self.location {
            Location::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?,
            Location::Url(url) => self.fetch(url).await?,
        };
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| format!("the JWKS at {} is not a JWK set: {e}", self.location))?;
        let keys = entries(&set);
        if keys.is_empty() {
            return Err(format!(
                "the JWKS at {} holds no usable signing key",
                self.location
            ));
        }
        let count = keys.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        Ok(count)
    }

    async fn fetch(&self, url: &reqwest::Url) -> Result<String, String> {
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("cannot fetch the JWKS from {url}: {e}"))?;
        response
            .text()
            .await
            .map_err(|e| format!("cannot read the JWKS from {url}: {e}"))
    }

    /// Reloads every `period` for as long as the server runs.
    pub async fn refresh_every(self: Arc<Self>, period: Duration) {
        let mut ticks = tokio::time::interval(period);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            match self.reload().await {
                Ok(count) => tracing::debug!(keys = count, "JWKS refreshed"),
                Err(err) => {
                    tracing::warn!(error = %err, "JWKS refresh failed; keeping the keys held")
                }
            }
        }
    }

    /// The key for a token's `kid` (a token without one is matched to the
    /// set's only key) signed with `alg`; refetches once when the id is
    /// unknown and the last refetch is old enough.
    pub async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        if let Some(key) = self.lookup(kid, alg) {
            return Some(key);
        }
        kid?;
        {
            let mut last = self.refetched.lock().await;
            // Another call may have refetched while this one waited.
            if let Some(key) = self.lookup(kid, alg) {
                return Some(key);
            }
            if last.is_some_and(|at| at.elapsed() < MIN_REFETCH) {
                return None;
            }
            *last = Some(Instant::now());
            if let Err(err) = self.reload().await {
                tracing::warn!(error = %err, "JWKS refetch for an unknown key id failed");
            }
        }
        self.lookup(kid, alg)
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let entry = match kid {
            Some(kid) => keys.get(&Some(kid.to_owned()))?,
            None if keys.len() == 1 => keys.values().next()?,
            None => return None,
        };
        // A key pinned to an algorithm verifies only that algorithm.
        entry
            .algorithm
            .is_none_or(|pinned| pinned == alg)
            .then(|| entry.key.clone())
    }
}

/// The signing keys of `set`, by key id; encryption keys and keys the
/// library cannot use are skipped.
fn entries(set: &JwkSet) -> HashMap<Option<String>, Entry> {
    set.keys
        .iter()
        .filter(|jwk| !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter_map(|jwk: &Jwk| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            let algorithm = match jwk.common.key_algorithm {
                None => None,
                Some(pinned) => Some(signing_algorithm(pinned)?),
            };
            Some((jwk.common.key_id.clone(), Entry { key, algorithm }))
        })
        .collect()
}

/// The JWS algorithm a JWK's `alg` names; `None` for encryption ones.
fn signing_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}
