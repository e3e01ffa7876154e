//! SeaORM entities, one per table. Times are microseconds since the Unix
//! epoch (UTC); see the migrations crate.

pub mod customer_group;
pub mod customer_source;
pub mod idempotency_key;
pub mod relationship;
pub mod tenant;
