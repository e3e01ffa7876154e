//! The connection to a running server: its address, and the tenant and
//! actor every call of the command carries as metadata.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use tonic::{
    Request, Status,
    metadata::AsciiMetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use super::CliError;
use crate::pb::{
    customer_service_client::CustomerServiceClient, group_service_client::GroupServiceClient,
    relationship_service_client::RelationshipServiceClient,
    source_service_client::SourceServiceClient,
};

/// Largest message the command accepts from the server: an export page of
/// 1,000 customers each with 50 attributes of 1,000 characters is ~50 MB,
/// far above tonic's 4 MiB default.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Where the server is and who is asking.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ServerArgs {
    /// The running server (`http://HOST:PORT`; `HOST:PORT` is taken as
    /// http).
    #[arg(long, env = "CRM_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,

    /// The tenant, sent as `x-tenant-id`; the server's `default` tenant
    /// when omitted.
    #[arg(long, env = "CRM_TENANT")]
    pub tenant: Option<String>,

    /// Who is acting, sent as `x-actor-id` and recorded with the
    /// relationship changes the command makes. Under `--auth jwt` the
    /// token's subject acts unless the token has the `crm.act_as` scope.
    #[arg(long, env = "CRM_ACTOR")]
    pub actor: Option<String>,

    /// A JWT for a server that runs `--auth jwt`, sent as
    /// `authorization: Bearer …` (prefer the environment variable: flags
    /// show in process lists).
    #[arg(long, env = "CRM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// PEM CA certificate to trust for an `https://` server (default: the
    /// system's roots).
    #[arg(long, env = "CRM_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// PEM client certificate for a server that asks for mutual TLS
    /// (with --tls-client-key).
    #[arg(long, env = "CRM_TLS_CLIENT_CERT", requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,

    /// PEM private key of --tls-client-cert.
    #[arg(long, env = "CRM_TLS_CLIENT_KEY", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
}

/// Adds the tenant, the actor and the token to every call.
#[derive(Clone)]
pub struct Headers {
    tenant: Option<AsciiMetadataValue>,
    actor: Option<AsciiMetadataValue>,
    authorization: Option<AsciiMetadataValue>,
}

impl std::fmt::Debug for Headers {
    // Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Headers")
            .field("tenant", &self.tenant)
            .field("actor", &self.actor)
            .field("token", &self.authorization.as_ref().map(|_| "…"))
            .finish()
    }
}

impl Interceptor for Headers {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        if let Some(tenant) = &self.tenant {
            request.metadata_mut().insert("x-tenant-id", tenant.clone());
        }
        if let Some(actor) = &self.actor {
            request.metadata_mut().insert("x-actor-id", actor.clone());
        }
        Ok(request)
    }
}

/// A channel whose calls carry the command's headers.
pub type Svc = InterceptedService<Channel, Headers>;

/// An open connection.
#[derive(Debug, Clone)]
pub struct Connection {
    channel: Channel,
    headers: Headers,
    /// The address, for messages.
    pub server: String,
}

fn header_value(flag: &str, value: Option<&str>) -> Result<Option<AsciiMetadataValue>, CliError> {
    value
        .map(|value| {
            AsciiMetadataValue::try_from(value).map_err(|_| {
                CliError::Usage(format!(
                    "--{flag} \"{value}\" cannot be sent as metadata: use visible ASCII characters"
                ))
            })
        })
        .transpose()
}

/// Connects to the server now, so that a wrong address fails before any
/// work is done.
pub async fn connect(args: &ServerArgs) -> Result<Connection, CliError> {
    let authorization = args
        .token
        .as_deref()
        .map(|token| {
            AsciiMetadataValue::try_from(format!("Bearer {}", token.trim()))
                .map_err(|_| CliError::Usage("--token is not a JWT (visible ASCII)".to_owned()))
        })
        .transpose()?;
    let headers = Headers {
        tenant: header_value("tenant", args.tenant.as_deref())?,
        actor: header_value("actor", args.actor.as_deref())?,
        authorization,
    };
    let address = if args.server.contains("://") {
        args.server.clone()
    } else {
        format!("http://{}", args.server)
    };
    let tls = address.starts_with("https://");
    if !tls && !address.starts_with("http://") {
        return Err(CliError::Usage(format!(
            "--server {}: only http:// and https:// addresses are supported",
            args.server
        )));
    }
    let mut endpoint = Endpoint::from_shared(address.clone())
        .map_err(|e| CliError::Usage(format!("--server {}: {e}", args.server)))?;
    if tls {
        endpoint = endpoint
            .tls_config(client_tls(args)?)
            .map_err(|e| CliError::Usage(format!("TLS setup: {}", error_chain(&e))))?;
    } else if args.tls_ca.is_some() || args.tls_client_cert.is_some() {
        return Err(CliError::Usage(
            "--tls-ca and --tls-client-cert need an https:// --server".to_owned(),
        ));
    }
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(10))
        // A long import keeps its stream open for minutes; pings notice a
        // server that went away instead of waiting forever.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let channel = endpoint.connect().await.map_err(|e| {
        CliError::Connection(format!(
            "cannot reach the server at {address}: {}",
            error_chain(&e)
        ))
    })?;
    Ok(Connection {
        channel,
        headers,
        server: address,
    })
}

/// The TLS setup of an `https://` server: its CA (or the system's
/// roots) and the client's certificate for mutual TLS.
fn client_tls(args: &ServerArgs) -> Result<ClientTlsConfig, CliError> {
    let read = |path: &PathBuf, flag: &str| {
        std::fs::read(path)
            .map_err(|e| CliError::Usage(format!("--{flag} {}: {e}", path.display())))
    };
    let mut tls = match &args.tls_ca {
        Some(ca) => {
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "tls-ca")?))
        }
        None => ClientTlsConfig::new().with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&args.tls_client_cert, &args.tls_client_key) {
        tls = tls.identity(Identity::from_pem(
            read(cert, "tls-client-cert")?,
            read(key, "tls-client-key")?,
        ));
    }
    Ok(tls)
}

/// An error and its causes on one line ("transport error: connection
/// refused").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl Connection {
    fn svc(&self) -> Svc {
        InterceptedService::new(self.channel.clone(), self.headers.clone())
    }

    /// CustomerService.
    pub fn customers(&self) -> CustomerServiceClient<Svc> {
        CustomerServiceClient::new(self.svc()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// GroupService.
    pub fn groups(&self) -> GroupServiceClient<Svc> {
        GroupServiceClient::new(self.svc()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// SourceService.
    pub fn sources(&self) -> SourceServiceClient<Svc> {
        SourceServiceClient::new(self.svc()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// RelationshipService.
    pub fn relationships(&self) -> RelationshipServiceClient<Svc> {
        RelationshipServiceClient::new(self.svc()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }
}

/// A failed call as one line: its code and message, and the field
/// violations of an INVALID_ARGUMENT.
pub fn describe_status(status: &Status) -> String {
    use tonic_types::StatusExt;
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(bad) = status.get_details_bad_request() {
        for violation in bad.field_violations {
            if !text.contains(&violation.description) {
                text.push_str(&format!("; {}: {}", violation.field, violation.description));
            }
        }
    }
    text
}
