//! Transport only: one handler file per service, conversions in `convert`,
//! and what every handler shares (the request context, idempotency keys and
//! page requests). Handlers validate into domain inputs, call one store
//! function and convert the result back.

pub mod convert;
pub mod customers;
pub mod groups;
pub mod mask;
pub mod relationships;
pub mod sources;

use prost::Message;
use tonic::{Request, Status, metadata::MetadataMap};

use crate::{
    domain::{
        catalog::{IdempotencyKey, Target},
        ids,
        paging::{self, PageRequest},
        tenant::{Actor, RequestContext, TenantId},
    },
    error::{AppError, AppResult},
    store::Store,
};

/// Metadata key naming the tenant.
pub const TENANT_HEADER: &str = "x-tenant-id";
/// Metadata key naming the actor.
pub const ACTOR_HEADER: &str = "x-actor-id";
/// Longest accepted `request_id`.
const REQUEST_ID_MAX_LEN: usize = 128;

fn header<'a>(metadata: &'a MetadataMap, key: &str) -> AppResult<Option<&'a str>> {
    metadata
        .get(key)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| AppError::invalid(key, "must be printable ASCII"))
        })
        .transpose()
}

/// Reads the tenant and actor of a request and provisions the tenant on its
/// first request.
pub async fn context<T>(store: &Store, request: &Request<T>) -> Result<RequestContext, Status> {
    let metadata = request.metadata();
    let tenant = TenantId::parse(header(metadata, TENANT_HEADER)?)?;
    let actor = Actor::parse(header(metadata, ACTOR_HEADER)?)?;
    store.provision(&tenant).await?;
    Ok(RequestContext { tenant, actor })
}

/// The idempotency key of a Create: its `request_id` and a fingerprint of
/// the request without it. `None` when no request id was given.
pub fn idempotency_key<M: Message + Clone>(
    request: &M,
    request_id: &str,
    without_request_id: impl FnOnce(&mut M),
) -> AppResult<Option<IdempotencyKey>> {
    if request_id.is_empty() {
        return Ok(None);
    }
    if request_id.len() > REQUEST_ID_MAX_LEN || request_id.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "request_id",
            format!("must be at most {REQUEST_ID_MAX_LEN} bytes of printable text"),
        ));
    }
    let mut stripped = request.clone();
    without_request_id(&mut stripped);
    Ok(Some(IdempotencyKey {
        request_id: request_id.to_owned(),
        fingerprint: paging::fingerprint(&stripped.encode_to_vec()),
    }))
}

/// The page request of the List method `method`. The token is bound to the
/// method and to the request with its paging fields cleared by
/// `without_paging`, so it only works in the List call and with the filters
/// it came from.
pub fn page_request<M: Message + Clone>(
    method: &str,
    request: &M,
    page_size: i32,
    page_token: &str,
    without_paging: impl FnOnce(&mut M),
) -> AppResult<PageRequest> {
    let mut filters = request.clone();
    without_paging(&mut filters);
    let mut bound = method.as_bytes().to_vec();
    bound.push(0);
    bound.extend(filters.encode_to_vec());
    PageRequest::parse(page_size, page_token, paging::fingerprint(&bound))
}

/// Converts rows to messages and fills in each one's customer count.
pub fn with_customer_counts<M, P: From<M>>(
    rows: Vec<M>,
    counts: &std::collections::HashMap<String, i64>,
    set: impl Fn(&mut P) -> (&str, &mut i64),
) -> Vec<P> {
    rows.into_iter()
        .map(|row| {
            let mut message = P::from(row);
            let (id, count) = set(&mut message);
            *count = counts.get(id).copied().unwrap_or(0);
            message
        })
        .collect()
}

/// The resource an Update, Delete or Restore request is about.
pub fn target(id: &str, etag: String) -> AppResult<Target> {
    Ok(Target {
        id: ids::parse("id", id)?,
        etag,
    })
}
