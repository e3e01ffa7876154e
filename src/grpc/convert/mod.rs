//! Conversions between protobuf messages and the service's types: fallible
//! and validating on the way in, infallible on the way out. Incoming messages
//! are destructured field by field, so a field added to a proto is a compile
//! error here until it is handled.

pub mod catalog;
pub mod customer;
pub mod import;
pub mod report;

use prost_types::Timestamp;

use crate::{
    domain::{catalog::Target, ids},
    error::{AppError, AppResult, FieldViolation},
};

/// A stored time as a protobuf timestamp.
pub fn timestamp(micros: i64) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// Collects the violations of several fields, so one reply names them all.
#[derive(Default)]
pub struct Checks(Vec<FieldViolation>);

impl Checks {
    /// The value, or `T::default()` after recording why it is invalid.
    pub fn take<T: Default>(&mut self, result: AppResult<T>) -> T {
        match result {
            Ok(value) => value,
            Err(AppError::InvalidArgument(mut violations)) => {
                self.0.append(&mut violations);
                T::default()
            }
            Err(other) => {
                self.0.push(FieldViolation::new("", other.to_string()));
                T::default()
            }
        }
    }

    pub fn finish(self) -> AppResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AppError::InvalidArgument(self.0))
        }
    }
}

pub fn required<T>(message: Option<T>, field: &str) -> AppResult<T> {
    message.ok_or_else(|| AppError::invalid(field, "is required"))
}

/// Names of the fields that hold a non-default value.
pub fn populated(fields: &[(&'static str, bool)]) -> Vec<&'static str> {
    fields
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect()
}

/// The id and etag of an Update, validated.
pub fn target(checks: &mut Checks, field: &str, id: &str, etag: String) -> Target {
    Target {
        id: checks.take(ids::parse(field, id)),
        etag,
    }
}

/// A protobuf timestamp as a stored time (microseconds since the epoch).
pub fn micros(field: &str, ts: &Timestamp) -> AppResult<i64> {
    let valid = (0..1_000_000_000).contains(&ts.nanos)
        && (-62_135_596_800..=253_402_300_799).contains(&ts.seconds);
    if !valid {
        return Err(AppError::invalid(field, "is not a valid timestamp"));
    }
    Ok(ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_microseconds_and_handle_times_before_1970() {
        assert_eq!(
            timestamp(1_500_000),
            Timestamp {
                seconds: 1,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            timestamp(-1),
            Timestamp {
                seconds: -1,
                nanos: 999_999_000
            }
        );
    }

    #[test]
    fn timestamps_out_of_range_are_invalid() {
        let bad = Timestamp {
            seconds: 1,
            nanos: -1,
        };
        assert!(micros("t", &bad).is_err());
        assert_eq!(micros("t", &timestamp(1_234_567)).unwrap(), 1_234_567);
    }
}
