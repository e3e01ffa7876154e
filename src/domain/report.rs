//! What the reports share: a period of time, and the order statistics
//! (median, 90th percentile) of durations.

use crate::error::{AppError, AppResult};

/// A half-open period `[from, to)` in microseconds; either bound may be
/// open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    /// The first microsecond inside, if bounded.
    pub from: Option<i64>,
    /// The first microsecond after, if bounded.
    pub to: Option<i64>,
}

impl Period {
    /// The period between two optional bounds, named `fields` (lower,
    /// upper) in the request: INVALID_ARGUMENT on the upper one when it
    /// comes before the lower one.
    pub fn new(from: Option<i64>, to: Option<i64>, fields: (&str, &str)) -> AppResult<Self> {
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(AppError::invalid(
                fields.1,
                format!("is before {}: the period is inverted", fields.0),
            ));
        }
        Ok(Self { from, to })
    }

    /// Whether neither bound is set.
    pub fn is_unbounded(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// Whether `time` lies inside.
    pub fn contains(&self, time: i64) -> bool {
        self.from.is_none_or(|from| time >= from) && self.to.is_none_or(|to| time < to)
    }
}

/// The `p`-th percentile (0 < p ≤ 100) of `sorted` (ascending) by nearest
/// rank: the ⌈p·n/100⌉-th smallest value. `None` when empty.
pub fn nearest_rank(sorted: &[i64], p: u32) -> Option<i64> {
    sorted.get(rank_of(sorted.len(), p)? - 1).copied()
}

/// The rank (from 1) of the `p`-th percentile among `n` values by nearest
/// rank: ⌈p·n/100⌉, at least 1. `None` when `n` is 0.
pub fn rank_of(n: usize, p: u32) -> Option<usize> {
    (n > 0).then(|| (n * p as usize).div_ceil(100).max(1))
}

/// A revenue as the tallies sum it: its high 32 bits (signed) and its low
/// 32 bits, summed apart so that neither sum can overflow (SQL's
/// `revenue >> 32` and `revenue & 4294967295`).
pub fn revenue_halves(revenue: i64) -> (i64, i64) {
    (revenue >> 32, revenue & 0xFFFF_FFFF)
}

/// The exact total of the revenues whose halves summed to `high` and `low`.
pub fn revenue_from_halves(high: i64, low: i64) -> i128 {
    (i128::from(high) << 32) + i128::from(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revenue_halves_sum_back_to_the_exact_total() {
        let revenues = [0, 1, -1, 7_777_777_777, -(5 << 32) - 3, i64::MAX, i64::MIN];
        let (mut high, mut low) = (0, 0);
        for &revenue in &revenues {
            let (h, l) = revenue_halves(revenue);
            assert_eq!(revenue_from_halves(h, l), i128::from(revenue));
            high += h;
            low += l;
        }
        let total: i128 = revenues.iter().map(|&r| i128::from(r)).sum();
        assert_eq!(revenue_from_halves(high, low), total);
    }

    #[test]
    fn nearest_rank_takes_the_ceiling_rank() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7], 50), Some(7));
        assert_eq!(nearest_rank(&[1, 2], 50), Some(1));
        assert_eq!(nearest_rank(&[1, 2, 3], 50), Some(2));
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 50), Some(2));
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(nearest_rank(&ten, 90), Some(9));
        let eleven: Vec<i64> = (1..=11).collect();
        assert_eq!(nearest_rank(&eleven, 90), Some(10));
        assert_eq!(nearest_rank(&ten, 100), Some(10));
        assert_eq!(rank_of(0, 50), None);
        assert_eq!(rank_of(1, 90), Some(1));
        assert_eq!(rank_of(11, 90), Some(10));
    }

    #[test]
    fn periods_are_half_open_and_refuse_inversion() {
        let p = Period::new(Some(10), Some(20), ("from", "to")).unwrap();
        assert!(p.contains(10) && p.contains(19) && !p.contains(20) && !p.contains(9));
        assert!(Period::new(Some(10), Some(10), ("from", "to")).is_ok());
        let err = Period::new(Some(11), Some(10), ("from", "to")).unwrap_err();
        assert!(matches!(err, AppError::InvalidArgument(v) if v[0].field == "to"));
        assert!(Period::default().is_unbounded() && Period::default().contains(i64::MIN));
    }
}
