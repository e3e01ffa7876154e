//! A response body that holds what its call took from the limits (a place
//! among the calls in flight, a tenant's watch slot) until hyper drops it:
//! when the last frame is sent, the client resets the stream or goes
//! away, or the server shuts down. A call is in flight until then, not
//! only until its handler returns (a stream's handler returns at once).

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use std::sync::Arc;

use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tonic::{Status, body::Body, codegen::Bytes};

use super::watches::WatchSlot;

/// What a call holds while it is in flight.
#[derive(Debug, Default)]
pub struct Held {
    /// Its place among the server's calls in flight.
    pub permit: Option<OwnedSemaphorePermit>,
    /// Its tenant's watch slot (change streams).
    pub watch: Option<WatchSlot>,
    /// Counts the calls that gave back what they held, told once this is
    /// dropped holding something.
    pub released: Option<Arc<watch::Sender<u64>>>,
}

impl Held {
    /// Whether the call holds nothing.
    pub fn is_empty(&self) -> bool {
        self.permit.is_none() && self.watch.is_none()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.is_empty() {
            return;
        }
        // Give back first, then tell: whoever hears can take the place.
        drop(self.permit.take());
        drop(self.watch.take());
        if let Some(released) = &self.released {
            released.send_modify(|count| *count += 1);
        }
    }
}

/// `body`, keeping `held` until it is dropped.
pub struct Holding {
    body: Body,
    _held: Held,
}

impl Holding {
    /// `body` holding `held`.
    pub fn new(body: Body, held: Held) -> Self {
        Self { body, _held: held }
    }
}

impl http_body::Body for Holding {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
