//! Read snapshots: read-only transactions that see one state of the
//! database, so that several reads agree (a page and its total), and the
//! tenant's change-log positions that state reflects (relationship changes,
//! and on request memberships), so that a client can keep what it read up
//! to date from the change streams.

use sea_orm::{
    AccessMode, DatabaseBackend, DatabaseConnection, DatabaseTransaction, IsolationLevel,
    TransactionOptions, TransactionTrait,
};

use crate::{
    changes::{log::latest_sequence, membership::MembershipLog, relationship::RelationshipLog},
    error::AppResult,
    store::{
        Store,
        customers::{
            CustomerRecord,
            cache::{RecordCache, Tickets},
        },
    },
};

/// A read-only transaction that sees one snapshot of the database, so that
/// several reads (a page and its total) agree. PostgreSQL needs REPEATABLE
/// READ for that; a SQLite read transaction always reads one snapshot.
pub async fn snapshot(db: &DatabaseConnection) -> AppResult<DatabaseTransaction> {
    let options = match db.get_database_backend() {
        DatabaseBackend::Postgres => TransactionOptions {
            isolation_level: Some(IsolationLevel::RepeatableRead),
            access_mode: Some(AccessMode::ReadOnly),
            ..Default::default()
        },
        _ => TransactionOptions::default(),
    };
    Ok(db.begin_with_options(options).await?)
}

/// What a read found, with the change-log position it reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsOf<T> {
    /// What was read.
    pub read: T,
    /// The tenant's latest relationship-change sequence in the snapshot
    /// the read saw (0 before its first change): the changes after it are
    /// exactly those the read does not reflect.
    pub sequence: i64,
}

/// One tenant's read snapshot: every read through [`Snapshot::db`] sees
/// the same state of the database, the one whose latest change is
/// [`Snapshot::sequence`].
pub struct Snapshot {
    tx: DatabaseTransaction,
    tenant: String,
    sequence: i64,
    records: RecordCache,
    /// Taken before the snapshot began (see [`Snapshot::fill`]).
    tickets: Tickets,
}

impl Store {
    /// Begins a read snapshot of `tenant`. Reads only: a tenant never
    /// written has no counter row, and its sequence is 0.
    pub async fn snapshot_of(&self, tenant: &str) -> AppResult<Snapshot> {
        let tickets = self.records().tickets();
        let tx = snapshot(self.db()).await?;
        // The first statement fixes the snapshot (PostgreSQL takes it then,
        // SQLite's read transaction starts then), so nothing it reads can
        // predate the tickets.
        let sequence = latest_sequence::<RelationshipLog>(&tx, tenant).await?;
        Ok(Snapshot {
            tx,
            tenant: tenant.to_owned(),
            sequence,
            records: self.records().clone(),
            tickets,
        })
    }
}

impl Snapshot {
    /// Where the snapshot's reads run.
    pub fn db(&self) -> &DatabaseTransaction {
        &self.tx
    }

    /// The tenant's latest relationship change in the snapshot.
    pub fn sequence(&self) -> i64 {
        self.sequence
    }

    /// The tenant's latest membership change in the snapshot (0 before its
    /// first): the membership changes after it are exactly those the
    /// snapshot's reads do not reflect, so a listing's
    /// `watch_from_sequence`. Read when asked, in the snapshot.
    pub async fn membership_sequence(&self) -> AppResult<i64> {
        latest_sequence::<MembershipLog>(&self.tx, &self.tenant).await
    }

    /// Fills the record cache with `record`, read in this snapshot, unless
    /// a write invalidated it since the snapshot began. Since then, not
    /// since the record was read: the snapshot may be older than a write
    /// whose invalidation came between the two, and a ticket taken after it
    /// would let that older record in.
    pub fn fill(&self, record: &CustomerRecord) {
        let ticket = self.records.ticket_in(&self.tickets, &record.row.id);
        self.records.fill(ticket, record);
    }

    /// Ends the snapshot; `read` is what was read in it.
    pub async fn end<T>(self, read: T) -> AppResult<AsOf<T>> {
        self.tx.commit().await?;
        Ok(AsOf {
            read,
            sequence: self.sequence,
        })
    }
}
