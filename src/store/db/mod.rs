//! The database underneath the store: connecting and migrating
//! ([`connection`]), the write transactions and their rules
//! ([`transaction`]), read snapshots and the change-log position they
//! reflect ([`snapshot`]), what replicas sharing a PostgreSQL database tell
//! each other ([`replicas`]), the planner statistics SQLite is given
//! ([`planner_statistics`]), and SQLite's statement time limit
//! ([`sqlite_deadline`]).

pub mod connection;
pub mod planner_statistics;
pub mod replicas;
pub mod snapshot;
pub mod sqlite_deadline;
pub mod transaction;
