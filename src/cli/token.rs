//! `crm-classify token`: signs an HS256 token with the server's
//! `--jwt-secret`, issuer and audience, for trying `--auth jwt` from
//! grpcurl or the CLI. Production tokens come from an identity provider.

use std::{io::Write, process::ExitCode, time::Duration};

use clap::Args;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::EXIT_TROUBLE;
use crate::config::{Config, parse_duration};

/// What the token says.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct TokenArgs {
    /// The tenant the token is for (its tenant claim).
    #[arg(long, default_value = "default")]
    pub tenant: String,

    /// The scopes, space-separated: crm.read, crm.write, crm.admin,
    /// crm.act_as.
    #[arg(long, default_value = "crm.read crm.write")]
    pub scope: String,

    /// The subject (`sub`): the actor recorded for the token's changes.
    #[arg(long, default_value = "dev")]
    pub subject: String,

    /// How long the token is valid.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
}

/// Prints the token on stdout; exit code 2 when the server options lack
/// what it needs.
pub fn run(args: &TokenArgs, config: &Config) -> ExitCode {
    match sign(args, config) {
        Ok(token) => {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{token}").is_err() {
                return ExitCode::from(EXIT_TROUBLE);
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("token: {message}");
            ExitCode::from(EXIT_TROUBLE)
        }
    }
}

fn sign(args: &TokenArgs, config: &Config) -> Result<String, String> {
    let (Some(secret), Some(issuer), Some(audience)) =
        (&config.jwt_secret, &config.jwt_issuer, &config.jwt_audience)
    else {
        return Err(
            "needs the server's --jwt-secret, --jwt-issuer and --jwt-audience (or CRM_JWT_*)"
                .to_owned(),
        );
    };
    let now = chrono::Utc::now().timestamp();
    let ttl = i64::try_from(args.ttl.as_secs()).map_err(|_| "--ttl is too long".to_owned())?;
    let mut claims = json!({
        "iss": issuer, "aud": audience, "sub": args.subject, "scope": args.scope,
        "iat": now, "nbf": now, "exp": now.saturating_add(ttl),
    });
    claims[config.jwt_tenant_claim.as_str()] = json!(args.tenant);
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| format!("cannot sign: {e}"))
}
