//! SQLite's statement timeout, which SQLite lacks: a statement that runs
//! past its connection's time limit is interrupted on SQLite's own thread
//! (it fails with SQLITE_INTERRUPT), not merely abandoned while that
//! thread goes on working.
//!
//! Two callbacks on each connection make it. SQLite's trace callback
//! (`SQLITE_TRACE_STMT`) notes when each statement starts; its progress
//! handler, called every `PROGRESS_OPS` virtual-machine instructions,
//! interrupts the statement once it has run longer than the limit. The
//! deadline belongs to the statement, not to the connection or its
//! transaction: a transaction of many short statements is never cut.
//! What a statement runs inside itself (triggers, which the schema has
//! none of) is part of it and keeps its start; the statement's end
//! (`SQLITE_TRACE_PROFILE`) clears the start, so a statement whose start
//! went unseen runs unbounded rather than against an earlier one's. Every
//! doubt thus errs towards a longer run, never a shorter one (a statement
//! SQLite prepares again after a schema change, say, may be timed from
//! then).
//!
//! sqlx installs the progress handler safely, but offers no trace
//! callback: that one is installed through the raw handle, the one piece
//! of `unsafe` in the crate. The progress handler owns the state both
//! callbacks share, and unregisters the trace callback before freeing it.

use std::{
    ffi::{c_char, c_int, c_uint, c_void},
    ptr::{self, NonNull},
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use libsqlite3_sys::{
    SQLITE_OK, SQLITE_TRACE_PROFILE, SQLITE_TRACE_STMT, sqlite3, sqlite3_trace_v2,
};
use sea_orm::sqlx::{self, sqlite::SqliteConnection};

/// Virtual-machine instructions between two looks at the clock: about
/// every 10–100 µs of a running statement, a reading of the monotonic
/// clock each time (well under 1 % of the work).
const PROGRESS_OPS: i32 = 1_000;

/// The reference point of the times the callbacks store.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Nanoseconds since [`EPOCH`], at least 1 (0 means "no statement").
fn now() -> u64 {
    u64::try_from(EPOCH.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The running statement of one connection, shared by its two callbacks
/// (which SQLite calls on the connection's thread, one at a time).
struct StatementClock {
    /// When the running statement started ([`now`]); 0 when none runs.
    started: AtomicU64,
    /// The running statement (its `sqlite3_stmt` address).
    statement: AtomicUsize,
    /// How long a statement may run, in nanoseconds.
    limit: u64,
}

impl StatementClock {
    /// Whether the running statement (if any) is still within its limit.
    fn within_limit(&self) -> bool {
        match self.started.load(Relaxed) {
            0 => true,
            started => now().saturating_sub(started) <= self.limit,
        }
    }
}

/// Installs `limit` as the statement timeout of `conn`, for as long as the
/// connection lives.
pub async fn install(conn: &mut SqliteConnection, limit: Duration) -> Result<(), sqlx::Error> {
    let clock = Arc::new(StatementClock {
        started: AtomicU64::new(0),
        statement: AtomicUsize::new(0),
        limit: u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX),
    });
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle();
    let context = Arc::as_ptr(&clock).cast_mut().cast::<c_void>();
    // The progress handler first: it owns the state, and sqlx drops it
    // (while the handle is still open) when the connection closes. Any
    // handler it replaces unregisters its trace callback as it goes.
    let registration = Registration { db, clock };
    handle.set_progress_handler(PROGRESS_OPS, move || registration.clock.within_limit());
    // SAFETY: `db` is the connection's open handle, which the lock keeps
    // from its worker thread while we use it. `context` stays valid for as
    // long as the callback is registered: the progress handler's
    // `Registration` holds the `Arc` and unregisters the callback before
    // releasing it.
    let rc = unsafe {
        sqlite3_trace_v2(
            db.as_ptr(),
            SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE,
            Some(on_trace),
            context,
        )
    };
    if rc != SQLITE_OK {
        return Err(sqlx::Error::Protocol(format!(
            "cannot install the statement timeout (SQLite error {rc})"
        )));
    }
    Ok(())
}

/// The trace callback's registration, owned by the progress handler.
struct Registration {
    db: NonNull<sqlite3>,
    clock: Arc<StatementClock>,
}

// SAFETY: `db` is used only in `drop`, which sqlx runs while it holds the
// connection exclusively (replacing or removing the progress handler, or
// closing the connection, before it closes the handle).
unsafe impl Send for Registration {}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: the handle is still open (sqlx removes the progress
        // handler, which needs the handle, before closing it). With the
        // callback unregistered, nothing uses the context pointer after
        // `self.clock` is released.
        unsafe {
            sqlite3_trace_v2(self.db.as_ptr(), 0, None, ptr::null_mut());
        }
    }
}

/// SQLite's trace callback: a statement starts (`SQLITE_TRACE_STMT`, with
/// its text) or ends (`SQLITE_TRACE_PROFILE`).
unsafe extern "C" fn on_trace(
    event: c_uint,
    context: *mut c_void,
    statement: *mut c_void,
    text: *mut c_void,
) -> c_int {
    // SAFETY: `context` is the `StatementClock` registered with the
    // callback, alive while it is registered (see `install`).
    let clock = unsafe { &*context.cast::<StatementClock>() };
    match event {
        SQLITE_TRACE_STMT => {
            // SAFETY: for this event `text` is a NUL-terminated string:
            // the statement's SQL, or a comment ("-- …") for a trigger or
            // a statement run inside another, which keep the outer start.
            let nested = unsafe {
                let text = text.cast::<c_char>().cast_const();
                !text.is_null() && *text == b'-' as c_char && *text.add(1) == b'-' as c_char
            };
            if !nested {
                clock.statement.store(statement.addr(), Relaxed);
                clock.started.store(now(), Relaxed);
            }
        }
        SQLITE_TRACE_PROFILE if clock.statement.load(Relaxed) == statement.addr() => {
            clock.started.store(0, Relaxed);
        }
        _ => {}
    }
    0
}
