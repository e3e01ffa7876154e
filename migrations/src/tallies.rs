//! How the daily tallies of the change log are keyed, shared by the
//! migration that fills them from a stored log and by the service that
//! keeps them: the UTC day of a change, and the bucket of a stay's length.
//!
//! Stay lengths (microseconds) are bucketed like floating-point numbers
//! with a two-bit mantissa: four buckets per doubling, so a bucket's upper
//! bound is at most 25 % above its lower one. Bucket 0 holds every length
//! below one microsecond, buckets 1 to 7 the lengths 1 to 7, and bucket
//! `8 + 4 (e - 3) + m` the lengths whose highest bit is `e` (3 or more)
//! and whose next two bits are `m`.

/// Microseconds in a day.
pub const DAY: i64 = 86_400_000_000;

/// The day (days since the Unix epoch, UTC) of a time in microseconds.
pub fn day_of(time: i64) -> i64 {
    time.div_euclid(DAY)
}

/// [`day_of`] of the column `time` in SQL, alike on SQLite and PostgreSQL
/// (whose integer division truncates toward zero).
pub fn day_sql(time: &str) -> String {
    format!("(CASE WHEN {time} >= 0 THEN {time} / {DAY} ELSE -((-{time} - 1) / {DAY}) - 1 END)")
}

/// The bucket of a stay of `held` microseconds.
pub fn stay_bucket(held: i64) -> i32 {
    if held < 8 {
        return held.max(0) as i32;
    }
    let top = 63 - held.leading_zeros() as i32;
    let next_two = ((held >> (top - 2)) & 3) as i32;
    8 + 4 * (top - 3) + next_two
}

/// The highest bucket: lengths from `7 << 60` up to `i64::MAX`.
pub const LAST_BUCKET: i32 = 8 + 4 * (62 - 3) + 3;

/// The first length of bucket `bucket` (1 to [`LAST_BUCKET`]).
fn lower(bucket: i32) -> i64 {
    if bucket < 8 {
        return i64::from(bucket);
    }
    let (top, next_two) = (3 + (bucket - 8) / 4, i64::from((bucket - 8) % 4));
    (4 + next_two) << (top - 2)
}

/// The lengths of bucket `bucket`: `[lower, upper)`, where `lower` is
/// `None` for bucket 0 (every length below one) and `upper` `None` for the
/// last bucket.
pub fn stay_bounds(bucket: i32) -> (Option<i64>, Option<i64>) {
    let bucket = bucket.clamp(0, LAST_BUCKET);
    (
        (bucket > 0).then(|| lower(bucket)),
        (bucket < LAST_BUCKET).then(|| lower(bucket + 1)),
    )
}

/// [`stay_bucket`] of the SQL expression `held` (not NULL), as one `CASE`.
pub fn stay_bucket_sql(held: &str) -> String {
    let mut sql = String::from("(CASE");
    for bucket in 0..LAST_BUCKET {
        let upper = lower(bucket + 1);
        sql.push_str(&format!(" WHEN {held} < {upper} THEN {bucket}"));
    }
    sql.push_str(&format!(" ELSE {LAST_BUCKET} END)"));
    sql
}

/// The `previous_day` of an arrival in `arrival_tallies` that is the
/// first of its customer into its relationship with its owner: below the
/// day of every time an `i64` of microseconds can hold.
pub const NO_PREVIOUS_DAY: i64 = i64::MIN / 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_lies_within_its_buckets_bounds() {
        let mut lengths: Vec<i64> = vec![i64::MIN, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, i64::MAX];
        for shift in 0..63 {
            let power = 1i64 << shift;
            lengths.extend([power - 1, power, power + 1, power + power / 3]);
        }
        for held in lengths {
            let bucket = stay_bucket(held);
            let (lower, upper) = stay_bounds(bucket);
            assert!(lower.is_none_or(|l| l <= held), "{held} in {bucket}");
            assert!(upper.is_none_or(|u| held < u), "{held} in {bucket}");
            assert!((0..=LAST_BUCKET).contains(&bucket));
        }
    }

    #[test]
    fn buckets_rise_with_the_length_and_stay_narrow() {
        let mut last = 0;
        for held in (0..100_000).chain((1..2000).map(|k| k * 1_000_003_211)) {
            let bucket = stay_bucket(held);
            assert!(bucket >= last, "{held}");
            last = bucket;
        }
        for bucket in 1..LAST_BUCKET {
            let (lower, upper) = stay_bounds(bucket);
            let (lower, upper) = (lower.unwrap(), upper.unwrap());
            assert!(lower < upper, "bucket {bucket} is not empty");
            assert_eq!(stay_bucket(lower), bucket);
            assert_eq!(stay_bucket(upper - 1), bucket);
            assert_eq!(stay_bounds(bucket + 1).0, Some(upper), "contiguous");
            assert!(bucket < 8 || upper - lower <= lower / 4, "{lower}..{upper}");
        }
        assert_eq!(stay_bounds(0), (None, Some(1)));
        assert_eq!(stay_bounds(LAST_BUCKET).1, None);
    }

    #[test]
    fn days_are_utc_days_of_the_epoch() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY - 1), 0);
        assert_eq!(day_of(DAY), 1);
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(-DAY), -1);
        assert_eq!(day_of(-DAY - 1), -2);
    }
}
