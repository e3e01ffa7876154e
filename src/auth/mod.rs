//! Who may call: `--auth auto|none|jwt`, bearer-token verification
//! ([`jwt`], keys from a secret or a JWK set in [`jwks`]), the table of
//! what each RPC requires ([`scopes`]) and the layer that applies them to
//! every call ([`layer`]); TLS and mutual TLS ([`tls`]).

pub mod jwks;
pub mod jwt;
pub mod layer;
pub mod scopes;
pub mod tls;

use std::{net::SocketAddr, sync::Arc};

use clap::ValueEnum;
use jsonwebtoken::{Algorithm, DecodingKey};

use self::{
    jwks::{KeySet, Location},
    jwt::{Expectations, Keys, Verifier},
};
use crate::config::Config;

/// How callers are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AuthMode {
    /// `none` on a loopback address; refuses to start on any other.
    #[default]
    Auto,
    /// Every caller is trusted (a mesh in front authenticates).
    None,
    /// Every call but health carries a JWT, verified here.
    Jwt,
}

/// Shortest HS256 secret accepted: the hash's own size (RFC 7518 §3.2).
const MIN_SECRET_BYTES: usize = 32;

/// The verifier `config` asks for (`None`: no authentication) and, for a
/// JWK set, the task that keeps it fresh. Refuses `auto` on an address
/// other than loopback, and an incomplete or contradictory JWT setup.
pub async fn verifier(
    config: &Config,
) -> Result<(Option<Arc<Verifier>>, Option<Arc<KeySet>>), String> {
    let jwt_flags_given = config.jwt_secret.is_some() || config.jwt_jwks.is_some();
    match config.auth {
        AuthMode::Auto if !config.listen.ip().is_loopback() => {
            return Err(refuse_auto(config.listen));
        }
        AuthMode::Auto | AuthMode::None if jwt_flags_given => {
            return Err(
                "--jwt-secret / --jwt-jwks are set but --auth is not `jwt`: add --auth jwt \
                 to verify tokens, or drop the JWT flags"
                    .to_owned(),
            );
        }
        AuthMode::Auto | AuthMode::None => return Ok((None, None)),
        AuthMode::Jwt => {}
    }
    let (Some(issuer), Some(audience)) = (config.jwt_issuer.clone(), config.jwt_audience.clone())
    else {
        return Err("--auth jwt needs --jwt-issuer and --jwt-audience".to_owned());
    };
    let (keys, set, algorithms) = match (&config.jwt_secret, &config.jwt_jwks) {
        (Some(secret), None) => {
            let algorithms = algorithms(&config.jwt_algorithms, Algorithm::HS256)?;
            if secret.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "--jwt-secret must be at least {MIN_SECRET_BYTES} bytes"
                ));
            }
            if let Some(alg) = algorithms.iter().find(|alg| !is_hmac(**alg)) {
                return Err(format!(
                    "--jwt-algorithms lists {alg:?}, which a --jwt-secret cannot verify"
                ));
            }
            let key = DecodingKey::from_secret(secret.as_bytes());
            (Keys::Secret(key), None, algorithms)
        }
        (None, Some(location)) => {
            let algorithms = algorithms(&config.jwt_algorithms, Algorithm::RS256)?;
            if let Some(alg) = algorithms.iter().find(|alg| is_hmac(**alg)) {
                return Err(format!(
                    "--jwt-algorithms lists {alg:?}: a shared-secret algorithm with public keys \
                     invites key confusion; use --jwt-secret for HS256"
                ));
            }
            let set = KeySet::load(Location::parse(location)?).await?;
            (Keys::Set(set.clone()), Some(set), algorithms)
        }
        _ => {
            return Err(
                "--auth jwt needs exactly one of --jwt-secret (HS256) and --jwt-jwks (a JWKS file or URL)"
                    .to_owned(),
            );
        }
    };
    let verifier = Verifier::new(
        keys,
        Expectations {
            issuer,
            audience,
            tenant_claim: config.jwt_tenant_claim.clone(),
            algorithms,
            leeway: config.jwt_leeway,
        },
    );
    Ok((Some(Arc::new(verifier)), set))
}

fn refuse_auto(listen: SocketAddr) -> String {
    format!(
        "--auth auto serves without authentication only on a loopback address, and {listen} is \
         not one: choose --auth jwt (verify callers' tokens; see --jwt-*) or --auth none \
         (trust every caller that reaches the port, e.g. behind a mesh that authenticates)"
    )
}

/// `--jwt-algorithms` (names such as `RS256,ES256`); `default` when none
/// is named.
fn algorithms(names: &[String], default: Algorithm) -> Result<Vec<Algorithm>, String> {
    if names.is_empty() {
        return Ok(vec![default]);
    }
    names
        .iter()
        .map(|name| {
            name.trim()
                .parse::<Algorithm>()
                .map_err(|_| format!("--jwt-algorithms: `{name}` is not a JWS algorithm (e.g. RS256, ES256, EdDSA, HS256)"))
        })
        .collect()
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}
