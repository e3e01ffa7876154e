//! The connection to a running server: its address, and the tenant and
//! actor every call of the command carries as metadata.

use std::time::Duration;

use clap::Args;
use tonic::{
    Request, Status,
    metadata::AsciiMetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
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
    /// relationship changes the command makes.
    #[arg(long, env = "CRM_ACTOR")]
    pub actor: Option<String>,
}

/// Adds the tenant and the actor to every call.
#[derive(Debug, Clone)]
pub struct Headers {
    tenant: Option<AsciiMetadataValue>,
    actor: Option<AsciiMetadataValue>,
}

impl Interceptor for Headers {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
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
    let headers = Headers {
        tenant: header_value("tenant", args.tenant.as_deref())?,
        actor: header_value("actor", args.actor.as_deref())?,
    };
    let address = if args.server.contains("://") {
        args.server.clone()
    } else {
        format!("http://{}", args.server)
    };
    if !address.starts_with("http://") {
        return Err(CliError::Usage(format!(
            "--server {}: only http:// addresses are supported",
            args.server
        )));
    }
    let endpoint = Endpoint::from_shared(address.clone())
        .map_err(|e| CliError::Usage(format!("--server {}: {e}", args.server)))?
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
