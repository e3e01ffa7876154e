//! The ImportCustomers stream: reads the options, then batch after batch
//! of rows, each applied (and committed) before its results are sent and
//! the next batch is read. A client that sends faster than rows commit is
//! held back by HTTP/2 flow control, and one that does not read its
//! results stops the reading of rows: memory stays bounded by a batch.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::{convert::import as convert, watch::EventStream};
use crate::{
    domain::{
        import::{MAX_ROWS_PER_BATCH, Summary},
        tenant::RequestContext,
    },
    error::AppError,
    pb::{self, import_customers_request::Payload},
    store::{Store, customers::import::Import},
};

/// The response stream of ImportCustomers.
pub type ImportStream = EventStream<pb::ImportCustomersResponse>;

/// Reads the options and starts the import; its results follow on the
/// returned stream. The first request is checked whole (its text, then
/// its options) before the tenant is provisioned, so a refused import
/// writes nothing.
pub async fn start(
    store: Store,
    ctx: RequestContext,
    mut requests: Streaming<pb::ImportCustomersRequest>,
) -> Result<ImportStream, Status> {
    let first = requests.message().await?;
    if let Some(first) = &first {
        crate::grpc::strings::check(first)?;
    }
    let options = match first.and_then(|r| r.payload) {
        Some(Payload::Options(options)) => options,
        _ => {
            return Err(AppError::invalid(
                "options",
                "the first request of an import carries its options",
            )
            .into());
        }
    };
    let options = convert::import_options(options)?;
    store.provision(&ctx.tenant).await?;
    let import = store.start_import(&ctx, options).await?;
    let (results, stream) = mpsc::channel(2);
    tokio::spawn(run(store, ctx, import, requests, results));
    Ok(Box::pin(ReceiverStream::new(stream)))
}

type Results = mpsc::Sender<Result<pb::ImportCustomersResponse, Status>>;

/// Applies batch after batch until the client's stream ends (then sends
/// the summary), the client goes away, or something fails (sent as the
/// stream's status; the rows acknowledged before it stay applied).
async fn run(
    store: Store,
    ctx: RequestContext,
    import: Import,
    mut requests: Streaming<pb::ImportCustomersRequest>,
    results: Results,
) {
    let mut summary = Summary::default();
    let mut previous = 0;
    loop {
        if store.feed().is_closed() {
            let status = Status::unavailable(
                "the server is shutting down; repeat the import with the same request_id to resume",
            );
            results.send(Err(status)).await.ok();
            return;
        }
        let rows = match requests.message().await {
            Ok(Some(pb::ImportCustomersRequest {
                payload: Some(Payload::Rows(batch)),
            })) => batch.rows,
            Ok(Some(_)) => {
                let err = AppError::invalid(
                    "rows",
                    "every request after the first carries a batch of rows",
                );
                results.send(Err(err.into())).await.ok();
                return;
            }
            Ok(None) => break,
            // The client cancelled or went away: nothing to answer.
            Err(_) => return,
        };
        if rows.is_empty() || rows.len() > MAX_ROWS_PER_BATCH {
            let err = AppError::invalid(
                "rows.rows",
                format!(
                    "holds {} rows; a batch holds 1–{MAX_ROWS_PER_BATCH}",
                    rows.len()
                ),
            );
            results.send(Err(err.into())).await.ok();
            return;
        }
        let rows = rows
            .into_iter()
            .map(|row| {
                let row = convert::import_row(row, previous);
                previous = previous.max(row.number);
                row
            })
            .collect();
        let response = match store.import_rows(&ctx, &import, rows).await {
            Ok(applied) => {
                applied.iter().for_each(|r| summary.add(r));
                pb::ImportCustomersResponse {
                    results: applied.into_iter().map(Into::into).collect(),
                    summary: None,
                }
            }
            Err(err) => {
                results.send(Err(err.into())).await.ok();
                return;
            }
        };
        if results.send(Ok(response)).await.is_err() {
            return;
        }
    }
    let last = pb::ImportCustomersResponse {
        results: Vec::new(),
        summary: Some(summary.into()),
    };
    results.send(Ok(last)).await.ok();
}
