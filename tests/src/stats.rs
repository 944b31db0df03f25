//! The benchmarks' percentiles: loadgen's latency columns (p50, p99) and bench-probe's p95,
//! all by one method, [`nearest_rank`]. Medians are `pairlab_shared::stats::median`, shared with
//! the server and the browser.

/// The `q` quantile (a fraction, 0 to 1) of `sorted` (ascending) by the nearest-rank method:
/// the value at rank ⌈q·n⌉, at least the first; `None` when `sorted` is empty.
pub fn nearest_rank<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(nearest_rank(&v, 0.50), Some(50));
        assert_eq!(nearest_rank(&v, 0.99), Some(99));
        assert_eq!(nearest_rank(&v, 1.0), Some(100));
        assert_eq!(nearest_rank(&v, 0.0), Some(1));
        assert_eq!(nearest_rank::<u32>(&[], 0.5), None);
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(nearest_rank(&xs, 0.95), Some(5.0));
        assert_eq!(nearest_rank(&xs, 0.2), Some(1.0));
    }
}
