//! The ExportCustomers stream: the snapshot's position and total first,
//! then page after page as the client reads them (a bounded channel: a
//! slow reader slows the reading, and memory holds a couple of pages
//! whatever the size).

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::watch::EventStream;
use crate::{pb, store::customers::export::Export};

/// The response stream of ExportCustomers.
pub type ExportStream = EventStream<pb::ExportCustomersResponse>;

/// Streams `export`.
pub fn stream(mut export: Export) -> ExportStream {
    let (pages, stream) = mpsc::channel(2);
    tokio::spawn(async move {
        let first = pb::ExportCustomersResponse {
            customers: Vec::new(),
            watch_from_sequence: export.sequence,
            total_size: export.total as i64,
        };
        if pages.send(Ok(first)).await.is_err() {
            return;
        }
        loop {
            let message = match export.next_page().await {
                Ok(Some(records)) => Ok(pb::ExportCustomersResponse {
                    customers: records.into_iter().map(Into::into).collect(),
                    watch_from_sequence: 0,
                    total_size: 0,
                }),
                Ok(None) => return,
                Err(err) => Err(Status::from(err)),
            };
            let failed = message.is_err();
            if pages.send(message).await.is_err() || failed {
                return;
            }
        }
    });
    Box::pin(ReceiverStream::new(stream))
}
