//! One watcher of a log's stream (any [`Log`]: the relationship changes,
//! the membership changes): a heartbeat as it opens, the retained changes
//! after its resume point from the database, then the live ones from the
//! log's [`Feed`], in sequence order with no gap and no duplicate,
//! filtered, with a heartbeat whenever it has sent nothing for the
//! heartbeat interval.
//!
//! The opening heartbeat carries the sequence the watcher starts after:
//! with a resume point, that point (every change up to it was the client's
//! to consider, none after it has been yet); from now, the latest change
//! committed when it opened, so a client learns where "now" was and that
//! every later change will come.
//!
//! The watcher keeps the last sequence it has dealt with. A live change
//! at or below it is a duplicate and skipped; one further ahead than the
//! next means the watcher fell behind (its channel dropped what it had not
//! read), and the changes in between are read from the database first. So a
//! slow watcher costs a bounded buffer, never a growing one, and never holds
//! up the others.

use std::time::Duration;

use futures::FutureExt;
use sea_orm::DatabaseConnection;
use tokio::sync::{broadcast::error::RecvError, mpsc};

use super::{
    feed::{Feed, PAGE, Subscription},
    log::{Log, latest_sequence, read_after},
    retention,
};
use crate::error::{AppError, AppResult};

/// Events buffered for a client that is slow to read them.
const OUTBOX: usize = 64;

/// What a watcher sends; `C` is its log's change ([`Log::Change`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<C> {
    /// A change that matched.
    Change(Box<C>),
    /// The stream opened, or nothing was sent for a while; every change up
    /// to this sequence has been dealt with.
    Heartbeat(i64),
}

/// A watcher's request; `F` is its log's filter ([`Log::Filter`]).
#[derive(Debug, Clone)]
pub struct Watch<F> {
    /// The tenant.
    pub tenant: String,
    /// Resume after this sequence; 0: from now.
    pub after_sequence: i64,
    /// Which changes.
    pub filter: F,
    /// Idle time before a heartbeat.
    pub heartbeat: Duration,
}

/// Starts a watcher. Errors about the request (a resume point out of
/// range) come back here; later ones end the returned stream.
pub async fn start<L: Log>(
    db: DatabaseConnection,
    feed: &Feed<L>,
    watch: Watch<L::Filter>,
) -> AppResult<Events<L>> {
    if watch.after_sequence < 0 {
        return Err(AppError::invalid("after_sequence", "must not be negative"));
    }
    // Subscribe first: every change after `published` then reaches us live.
    let subscription = feed.subscribe(&watch.tenant).await?;
    let last = if watch.after_sequence == 0 {
        // "From now" is the latest committed change, which the reader may
        // not have published yet.
        subscription
            .published
            .max(latest_sequence::<L>(&db, &watch.tenant).await?)
    } else {
        check_resume_point::<L>(&db, &watch.tenant, watch.after_sequence).await?;
        watch.after_sequence
    };
    let (outbox, events) = mpsc::channel(OUTBOX);
    let watcher = Watcher {
        feed: feed.clone(),
        db,
        watch,
        outbox,
        last,
    };
    tokio::spawn(watcher.run(subscription));
    Ok(events)
}

/// OUT_OF_RANGE unless the changes after `after` are all retained and
/// `after` is not beyond the latest change.
async fn check_resume_point<L: Log>(
    db: &DatabaseConnection,
    tenant: &str,
    after: i64,
) -> AppResult<()> {
    let range = retention::retained::<L>(db, tenant).await?;
    if after > range.latest {
        return Err(AppError::OutOfRange(format!(
            "after_sequence {after} is beyond the latest change ({}); re-read, then watch from 0",
            range.latest
        )));
    }
    if after < range.trimmed_through {
        return Err(AppError::OutOfRange(format!(
            "the changes after {after} are no longer retained (the oldest replayable follows {}); re-read, then watch from 0",
            range.trimmed_through
        )));
    }
    Ok(())
}

/// What [`start`] returns: the watcher's events, then (at the end) its
/// error, if any.
pub type Events<L> = mpsc::Receiver<AppResult<Event<<L as Log>::Change>>>;

struct Watcher<L: Log> {
    /// Told when the watcher falls behind (for the metrics).
    feed: Feed<L>,
    db: DatabaseConnection,
    watch: Watch<L::Filter>,
    outbox: mpsc::Sender<AppResult<Event<L::Change>>>,
    /// The last sequence dealt with (sent or filtered out).
    last: i64,
}

/// Why a watcher stops.
enum Stop {
    /// The client went away.
    Gone,
    /// An error to send the client.
    Failed(AppError),
}

impl<L: Log> Watcher<L> {
    async fn run(mut self, subscription: Subscription<L>) {
        if let Err(Stop::Failed(err)) = self.serve(subscription).await {
            let _ = self.outbox.send(Err(err)).await;
        }
    }

    async fn serve(&mut self, subscription: Subscription<L>) -> Result<(), Stop> {
        let Subscription {
            mut live,
            published,
            mut closed,
        } = subscription;
        self.send(Event::Heartbeat(self.last)).await?;
        self.catch_up(published).await?;
        let mut idle_until = tokio::time::Instant::now() + self.watch.heartbeat;
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Ok(batch) => {
                        let mut sent = false;
                        for entry in batch.iter() {
                            sent |= self.take(entry).await?;
                        }
                        if sent {
                            idle_until = tokio::time::Instant::now() + self.watch.heartbeat;
                        }
                    }
                    // Fell behind: the next change received is further
                    // ahead, and take() reads the ones between.
                    Err(RecvError::Lagged(_)) => self.feed.note_lagged(),
                    Err(RecvError::Closed) => return Err(Stop::Failed(closing())),
                },
                () = tokio::time::sleep_until(idle_until) => {
                    self.send(Event::Heartbeat(self.last)).await?;
                    idle_until = tokio::time::Instant::now() + self.watch.heartbeat;
                }
                () = closed.wait_for(|c| *c).map(|_| ()) => return Err(Stop::Failed(closing())),
                () = self.outbox.closed() => return Err(Stop::Gone),
            }
        }
    }

    /// Deals with a live change; returns whether something was sent.
    async fn take(&mut self, entry: &L::Entry) -> Result<bool, Stop> {
        let sequence = L::sequence(entry);
        if sequence <= self.last {
            return Ok(false);
        }
        let mut sent = false;
        if sequence > self.last + 1 {
            sent = self.catch_up(sequence - 1).await?;
        }
        Ok(self.deal_with(entry).await? || sent)
    }

    /// Sends the retained changes after `last` up to `upto` from the
    /// database; returns whether something was sent.
    async fn catch_up(&mut self, upto: i64) -> Result<bool, Stop> {
        let mut sent = false;
        while self.last < upto {
            let entries = read_after::<L>(&self.db, &self.watch.tenant, self.last, PAGE)
                .await
                .map_err(Stop::Failed)?;
            if entries.is_empty() {
                // Not committed yet as far as this read can see; the live
                // channel brings them.
                break;
            }
            for entry in &entries {
                let sequence = L::sequence(entry);
                if sequence > upto && sequence == self.last + 1 {
                    break;
                }
                // An entry past the next sequence (the ones between are no
                // longer retained) is refused here, so the loop never spins.
                sent |= self.deal_with(entry).await?;
            }
        }
        Ok(sent)
    }

    /// Sends `entry` if it matches, and moves past it; it must be the next
    /// sequence.
    async fn deal_with(&mut self, entry: &L::Entry) -> Result<bool, Stop> {
        let sequence = L::sequence(entry);
        if sequence != self.last + 1 {
            return Err(Stop::Failed(AppError::OutOfRange(format!(
                "change {} is no longer retained; re-read, then watch from 0",
                self.last + 1
            ))));
        }
        self.last = sequence;
        if !L::matches(&self.watch.filter, entry) {
            return Ok(false);
        }
        self.send(Event::Change(Box::new(L::change(entry)))).await?;
        Ok(true)
    }

    async fn send(&self, event: Event<L::Change>) -> Result<(), Stop> {
        self.outbox.send(Ok(event)).await.map_err(|_| Stop::Gone)
    }
}

fn closing() -> AppError {
    AppError::Busy("the server is shutting down; resume from the last sequence seen".into())
}
