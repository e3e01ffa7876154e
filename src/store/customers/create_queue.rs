//! The queue of CreateCustomer calls: concurrent calls queue up and are
//! committed together, a batch per transaction (see `create` for what a
//! batch checks and writes).
//!
//! A create costs a dozen statements (the catalog checks, the duplicate
//! check, the row, its memberships, the counters, the change log); run one
//! by one, the database's per-statement overhead caps creates at a few
//! hundred per second, since writers take turns. A batch runs the same
//! dozen statements once for all its creates, each reading or writing many
//! rows. Should the transaction itself fail, each create is retried alone,
//! so one create never fails another.
//!
//! When calls arrive one at a time, a batch holds one create and nothing
//! waits: the queue only fills while a batch is being committed. A create
//! whose caller went away before its batch began is dropped; once begun it
//! commits like any write. At most 4,096 creates wait; beyond that a create
//! is UNAVAILABLE at once (retry), and an outage of the database fails the
//! whole batch with UNAVAILABLE rather than retrying each create alone.

use std::{
    collections::HashSet,
    sync::{Arc, OnceLock},
    time::Duration,
};

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{
    CustomerRecord,
    create::{Create, create_all, went_missing},
};
use crate::{
    domain::{catalog::IdempotencyKey, customer::NewCustomer, tenant::RequestContext},
    error::{AppError, AppResult},
    store::Store,
};

/// Most creates committed in one transaction.
const MAX_BATCH: usize = 64;
/// How long a batch may wait for creates to make it as large as the one
/// before (see [`gather`]).
const LINGER: Duration = Duration::from_millis(1);
/// Most creates waiting for their batch; more are UNAVAILABLE (retry).
const MAX_QUEUED: usize = 4096;
/// Batches committed at once: SQLite has one writer; PostgreSQL can
/// commit other tenants' batches meanwhile.
const SQLITE_BATCHES_AT_ONCE: usize = 1;
const POSTGRES_BATCHES_AT_ONCE: usize = 4;

struct Queued {
    create: Create,
    reply: oneshot::Sender<AppResult<CustomerRecord>>,
}

/// The queue of creates waiting for their batch; started on first use.
#[derive(Clone, Default)]
pub struct CreateQueue {
    sender: Arc<OnceLock<mpsc::Sender<Queued>>>,
}

impl Store {
    /// Creates a customer in its initial relationship, recording the change.
    pub async fn create_customer(
        &self,
        ctx: &RequestContext,
        input: &NewCustomer,
        key: Option<&IdempotencyKey>,
    ) -> AppResult<CustomerRecord> {
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            create: Create {
                ctx: ctx.clone(),
                input: input.clone(),
                key: key.cloned(),
            },
            reply,
        };
        self.create_queue().try_send(queued).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AppError::Busy(format!(
                "{MAX_QUEUED} creates are waiting already; retry shortly"
            )),
            mpsc::error::TrySendError::Closed(_) => {
                AppError::Busy("the service is shutting down".into())
            }
        })?;
        answer
            .await
            .map_err(|_| AppError::Busy("the service is shutting down".into()))?
    }

    /// Creates waiting for their batch (for the metrics).
    pub fn queued_creates(&self) -> usize {
        self.creates
            .sender
            .get()
            .map_or(0, |sender| sender.max_capacity() - sender.capacity())
    }

    fn create_queue(&self) -> &mpsc::Sender<Queued> {
        self.creates.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(MAX_QUEUED);
            // The worker's store holds no sender, so the worker ends when
            // the last store that can queue is gone.
            let worker = Self {
                creates: CreateQueue::default(),
                ..self.clone()
            };
            tokio::spawn(drain(worker, receiver));
            sender
        })
    }

    /// Commits `batch` and answers each create; retries each alone when the
    /// batch as a whole failed.
    async fn commit_batch(&self, batch: Vec<Queued>) {
        let (batch, repeats) = split_repeated_keys(batch);
        let creates: Vec<Create> = batch.iter().map(|q| q.create.clone()).collect();
        let now = self.now();
        let outcome = self
            .write(creates.clone(), move |tx, creates| {
                Box::pin(create_all(tx, creates, now))
            })
            .await;
        let results = match outcome {
            Ok(results) => results,
            Err(err) if creates.len() == 1 => vec![Err(err)],
            // Not something one create could cause: one by one would only
            // wait for the same outage again and again.
            Err(AppError::Unavailable(why)) => creates
                .iter()
                .map(|_| Err(AppError::Unavailable(why.clone())))
                .collect(),
            Err(err) => {
                tracing::debug!(error = %err, size = creates.len(), "a batch of creates failed; creating one by one");
                let mut results = Vec::with_capacity(creates.len());
                for create in creates {
                    results.push(self.create_alone(create).await);
                }
                results
            }
        };
        for (queued, result) in batch.into_iter().zip(results) {
            // A caller that went away does not undo its create.
            let _ = queued.reply.send(result);
        }
        if !repeats.is_empty() {
            // They find the first use of their request id committed now.
            Box::pin(self.commit_batch(repeats)).await;
        }
    }

    async fn create_alone(&self, create: Create) -> AppResult<CustomerRecord> {
        let now = self.now();
        self.write([create], move |tx, creates| {
            Box::pin(async move {
                create_all(tx, creates, now)
                    .await?
                    .pop()
                    .unwrap_or_else(went_missing)
            })
        })
        .await
    }
}

/// Splits off the creates whose tenant and request id an earlier create of
/// the batch has: they must see that one's result, so they go in a later
/// batch.
fn split_repeated_keys(batch: Vec<Queued>) -> (Vec<Queued>, Vec<Queued>) {
    let mut seen = HashSet::new();
    batch.into_iter().partition(|q| match &q.create.key {
        Some(key) => seen.insert((q.create.ctx.tenant.clone(), key.request_id.clone())),
        None => true,
    })
}

/// Whether the caller of `queued` still waits for it.
fn waited_for(queued: &Queued) -> bool {
    !queued.reply.is_closed()
}

/// Takes batches off the queue for as long as the store lives.
async fn drain(store: Store, mut receiver: mpsc::Receiver<Queued>) {
    let at_once = if store.write_queue.is_some() {
        SQLITE_BATCHES_AT_ONCE
    } else {
        POSTGRES_BATCHES_AT_ONCE
    };
    let slots = Arc::new(Semaphore::new(at_once));
    let mut last_size = 1;
    while let Some(first) = receiver.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let batch = gather(&mut receiver, first, last_size).await;
        if batch.is_empty() {
            continue;
        }
        last_size = batch.len();
        let store = store.clone();
        tokio::spawn(async move {
            store.commit_batch(batch).await;
            drop(slot);
        });
    }
}

/// The batch that starts with `first`: what is queued already, and, when
/// the previous batch was larger, what arrives within [`LINGER`] until it
/// is as large. Under steady load the callers answered by one batch send
/// their next creates a moment after it ends; without the wait the next
/// batch would take the first of them alone, and batches would alternate
/// between one create and all the others. Creates whose callers went away
/// before their batch began are dropped: nothing has been done for them.
async fn gather(
    receiver: &mut mpsc::Receiver<Queued>,
    first: Queued,
    expected: usize,
) -> Vec<Queued> {
    let mut batch: Vec<Queued> = Some(first).into_iter().filter(waited_for).collect();
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut received = 1;
    while received < MAX_BATCH {
        let next = match receiver.try_recv() {
            Ok(next) => next,
            Err(_) if received < expected => {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(next)) => next,
                    _ => break,
                }
            }
            Err(_) => break,
        };
        received += 1;
        if waited_for(&next) {
            batch.push(next);
        }
    }
    batch
}
