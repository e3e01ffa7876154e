//! Transport only: one handler file per service (and `membership_stream`
//! for GroupService's stream, `import` and `export` for CustomerService's), conversions in `convert`, what the two change
//! streams' handlers share in `watch`, and what every handler shares (the
//! request context, idempotency keys, page requests, and catalog messages
//! with their customer counts). Handlers
//! validate into domain inputs, call one store function and convert the
//! result back.

pub mod convert;
pub mod customers;
pub mod export;
pub mod groups;
pub mod import;
pub mod mask;
pub mod membership_stream;
pub mod relationships;
pub mod sources;
pub mod strings;
pub mod watch;

use std::{collections::HashMap, future::Future};

use prost::{Message, Name};
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

/// The one value of metadata `key`: sent twice it is refused, since
/// reading either copy would silently ignore the other.
fn header<'a>(metadata: &'a MetadataMap, key: &str) -> AppResult<Option<&'a str>> {
    let mut values = metadata.get_all(key).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AppError::invalid(
            key,
            "is sent more than once; send it once",
        ));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| AppError::invalid(key, "must be printable ASCII"))
}

/// Reads the tenant and actor of a request and checks the text of its
/// every string field ([`strings::check`]). Every handler starts here or at
/// [`write_context`], so no request reaches the database before its
/// metadata and text are checked. Reads never provision the tenant: one
/// never written answers as a fresh tenant would, with nothing written.
pub fn context<T: Message + Name>(request: &Request<T>) -> Result<RequestContext, Status> {
    let ctx = metadata_context(request.metadata())?;
    strings::check(request.get_ref())?;
    Ok(ctx)
}

/// The tenant and actor a call's metadata names.
fn metadata_context(metadata: &MetadataMap) -> Result<RequestContext, Status> {
    let tenant = TenantId::parse(header(metadata, TENANT_HEADER)?)?;
    let actor = Actor::parse(header(metadata, ACTOR_HEADER)?)?;
    Ok(RequestContext { tenant, actor })
}

/// [`context`] for a call whose requests come as a stream: the metadata
/// now; the caller checks each message's text as it arrives
/// ([`strings::check`]) and provisions the tenant once the first one has
/// passed, so a refused call writes nothing.
pub fn stream_context(metadata: &MetadataMap) -> Result<RequestContext, Status> {
    metadata_context(metadata)
}

/// [`context`] for a request that may write: also provisions the tenant
/// on its first write.
pub async fn write_context<T: Message + Name>(
    store: &Store,
    request: &Request<T>,
) -> Result<RequestContext, Status> {
    let ctx = context(request)?;
    store.provision(&ctx.tenant).await?;
    Ok(ctx)
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

/// A List request: its method name and its paging fields.
pub trait ListRequest: Message + Clone {
    /// The List method, e.g. `ListGroups`.
    const METHOD: &'static str;
    /// `page_size` and `page_token`.
    fn paging(&mut self) -> (&mut i32, &mut String);
}

macro_rules! list_requests {
    ($($request:ident => $method:literal),* $(,)?) => {$(
        impl ListRequest for crate::pb::$request {
            const METHOD: &'static str = $method;
            fn paging(&mut self) -> (&mut i32, &mut String) {
                (&mut self.page_size, &mut self.page_token)
            }
        }
    )*};
}

list_requests! {
    ListGroupsRequest => "ListGroups",
    ListSourcesRequest => "ListSources",
    ListRelationshipsRequest => "ListRelationships",
    ListCustomersRequest => "ListCustomers",
    ListContactsRequest => "ListContacts",
    ListRelationshipHistoryRequest => "ListRelationshipHistory",
    ListGroupMembersRequest => "ListGroupMembers",
}

/// The page request of a List call. Its token is signed with the store's
/// page key and bound to the method and to the rest of the request (the
/// filters and order), so it only works in the call and with the filters
/// it came from.
pub async fn page_request<M: ListRequest>(store: &Store, request: &M) -> AppResult<PageRequest> {
    let mut filters = request.clone();
    let (size, token) = filters.paging();
    let (size, token) = (std::mem::take(size), std::mem::take(token));
    let mut bound = M::METHOD.as_bytes().to_vec();
    bound.push(0);
    bound.extend(filters.encode_to_vec());
    let key = store.page_key().await?;
    PageRequest::parse(size, &token, paging::fingerprint(&bound), &key)
}

/// A catalog message (group, source, relationship) that shows how many
/// active customers hold its entry.
pub trait Counted: From<Self::Row> {
    /// The stored row it is made from.
    type Row;
    /// The message's id and its customer count.
    fn count_slot(&mut self) -> (&str, &mut i64);
    /// Checks what the stored row holds beyond its columns' types (a
    /// corrupt stored list is INTERNAL, never shown as empty).
    fn check(_row: &Self::Row) -> AppResult<()> {
        Ok(())
    }
    /// Active customers per entry, for the entries `ids`.
    fn customer_counts<'a>(
        store: &'a Store,
        tenant: &'a str,
        ids: &'a [String],
    ) -> impl Future<Output = AppResult<HashMap<String, i64>>> + Send + 'a;
}

macro_rules! counted {
    ($($message:ident from $row:path, counted by $counts:ident $(, checked by $check:path)?;)*) => {$(
        impl Counted for crate::pb::$message {
            type Row = $row;
            fn count_slot(&mut self) -> (&str, &mut i64) {
                (&self.id, &mut self.customer_count)
            }
            $(fn check(row: &Self::Row) -> AppResult<()> {
                $check(row).map(drop)
            })?
            fn customer_counts<'a>(
                store: &'a Store,
                tenant: &'a str,
                ids: &'a [String],
            ) -> impl Future<Output = AppResult<HashMap<String, i64>>> + Send + 'a {
                store.$counts(tenant, ids)
            }
        }
    )*};
}

counted! {
    Group from crate::entity::customer_group::Model, counted by group_customer_counts;
    Source from crate::entity::customer_source::Model, counted by source_customer_counts;
    Relationship from crate::entity::relationship::Model, counted by relationship_customer_counts,
        checked by crate::store::catalogs::relationships::exempt_ids_of;
}

/// Messages for catalog `rows`, with their customer counts.
pub async fn present<P: Counted>(
    store: &Store,
    tenant: &TenantId,
    rows: Vec<P::Row>,
) -> AppResult<Vec<P>> {
    for row in &rows {
        P::check(row)?;
    }
    let mut messages: Vec<P> = rows.into_iter().map(P::from).collect();
    let ids: Vec<String> = messages
        .iter_mut()
        .map(|m| m.count_slot().0.to_owned())
        .collect();
    let counts = P::customer_counts(store, tenant.as_str(), &ids).await?;
    for message in &mut messages {
        let (id, count) = message.count_slot();
        *count = counts.get(id).copied().unwrap_or(0);
    }
    Ok(messages)
}

/// The message for one catalog row, with its customer count.
pub async fn present_one<P: Counted>(
    store: &Store,
    tenant: &TenantId,
    row: P::Row,
) -> AppResult<Option<P>> {
    Ok(present(store, tenant, vec![row]).await?.pop())
}

/// The resource an Update, Delete or Restore request is about.
pub fn target(id: &str, etag: String) -> AppResult<Target> {
    Ok(Target {
        id: ids::parse("id", id)?,
        etag,
    })
}
