//! SeaORM entities, one per table. Times are microseconds since the Unix
//! epoch (UTC); see the migrations crate.

pub mod arrival_tally;
pub mod change_counter;
pub mod contact;
pub mod customer;
pub mod customer_group;
pub mod customer_source;
pub mod first_move;
pub mod flow_tally;
pub mod group_exclusion;
pub mod group_member;
pub mod group_relationship_count;
pub mod group_tally;
pub mod idempotency_key;
pub mod imported_row;
pub mod membership_change;
pub mod membership_counter;
pub mod owner_count;
pub mod reception_tally;
pub mod relationship;
pub mod relationship_change;
pub mod relationship_count;
pub mod relationship_member;
pub mod stay_tally;
pub mod tenant;
