//! The database underneath the store: connecting and migrating
//! ([`connection`]), the write transactions and their rules
//! ([`transaction`]), read snapshots and the change-log position they
//! reflect ([`snapshot`]), what replicas sharing a PostgreSQL database tell
//! each other ([`replicas`]), and the planner statistics SQLite is given
//! ([`planner_statistics`]).

pub mod connection;
pub mod planner_statistics;
pub mod replicas;
pub mod snapshot;
pub mod transaction;
