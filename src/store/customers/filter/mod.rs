//! Filters ([`crate::domain::filter`]) on stored customers: what a filter's
//! names mean in a tenant ([`meaning`]: codes, `in_group` subtrees, the
//! time), the filter as an SQL condition ([`sql`]) and a stored record as
//! the subject of the in-memory evaluator ([`subject`]). The SQL condition
//! and the in-memory evaluator select exactly the same customers; a
//! differential test holds them to it.

pub mod meaning;
pub mod sql;
pub mod subject;

pub use meaning::meaning_of;
pub use sql::{Scope, condition};
pub use subject::FilterSubject;
