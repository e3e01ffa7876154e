//! Validated inputs and business rules, free of transport (tonic) and
//! persistence (SeaORM) types: text and code rules, ids, tenants, paging,
//! and the validated inputs of each catalog.

pub mod catalog;
pub mod change;
pub mod customer;
pub mod filter;
pub mod ids;
pub mod import;
pub mod inactivity;
pub mod membership;
pub mod paging;
pub mod relationship;
pub mod report;
pub mod tenant;
pub mod text;
