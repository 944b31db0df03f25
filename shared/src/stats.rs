//! Small statistics both ends must compute the same way.
//!
//! The server's RTT window, the browser's probe samples, the benchmarks and the load generator
//! all summarise RTT samples with [`median`]; one definition keeps their numbers comparable.

/// The median of the finite values in `values`, in their unit (ms for RTTs): the middle value
/// of an odd count, the mean of the two middle values of an even count.
///
/// Non-finite values (NaN, ±∞) are skipped, never sorted in: a browser's `performance.now()`
/// difference or a parse can produce them, and one must not move the result. Returns `None`
/// when no finite value is left.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn odd_even_empty() {
        assert_eq!(median([]), None);
        assert_eq!(median([3.0]), Some(3.0));
        assert_eq!(median([5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([0.5, 0.4, 9.0, 0.6, 0.5]), Some(0.5));
    }

    #[test]
    fn non_finite_values_are_skipped() {
        assert_eq!(median([f64::NAN, 1.0, f64::INFINITY, 3.0]), Some(2.0));
        assert_eq!(median([f64::NAN]), None);
        assert_eq!(median([f64::NEG_INFINITY, 7.0]), Some(7.0));
    }
}
