//! What the handlers of the two change streams (WatchRelationshipChanges,
//! WatchGroupMembershipChanges) share: checking the ids a filter lists,
//! and turning a started watcher into the response stream tonic sends.

use std::{collections::HashSet, pin::Pin};

use futures::{Stream, StreamExt, future, stream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Response, Status};

use super::convert::Checks;
use crate::{
    changes::{
        feed::Feed,
        log::Log,
        watch::{self, Event, Watch},
    },
    domain::ids,
    store::Store,
};

/// A change stream as tonic sends it, of response messages `M`.
pub type EventStream<M> = Pin<Box<dyn Stream<Item = Result<M, Status>> + Send>>;

/// The ids a filter field lists, each checked (`field[i]` names a bad one).
pub fn filter_ids(checks: &mut Checks, field: &str, raw: &[String]) -> HashSet<String> {
    raw.iter()
        .enumerate()
        .map(|(i, id)| checks.take(ids::parse(&format!("{field}[{i}]"), id)))
        .collect()
}

/// Starts a watcher of `feed`'s log for `watch` and answers with its
/// events as messages `M`. Errors about the request (a resume point out
/// of range) answer the call; later ones end the stream. At shutdown the
/// stream ends at once with UNAVAILABLE, even when events wait in its
/// buffer for a client that does not read them.
pub async fn respond<L, M>(
    store: &Store,
    feed: &Feed<L>,
    watch: Watch<L::Filter>,
) -> Result<Response<EventStream<M>>, Status>
where
    L: Log,
    M: From<Event<L::Change>> + Send + 'static,
{
    let events = watch::start(store.db().clone(), feed, watch).await?;
    let open = feed.opened();
    let closing = feed.closing();
    let feed = feed.clone();
    let end = stream::once(async move {
        feed.is_closed().then(|| {
            Err(Status::unavailable(
                "the server is shutting down; resume from the last sequence seen",
            ))
        })
    })
    .filter_map(future::ready);
    let events = ReceiverStream::new(events)
        .map(move |event| {
            // The stream counts as open for as long as its answer lives.
            let _open = &open;
            event.map(M::from).map_err(Status::from)
        })
        .take_until(closing)
        .chain(end);
    Ok(Response::new(Box::pin(events)))
}
