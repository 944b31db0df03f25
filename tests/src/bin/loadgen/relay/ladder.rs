//! How a relay run walks through rates ([`Ladder`], [`LadderState`]): the given rates in
//! order, then a search up (or down) for the highest rate held.

use super::RelayRow;
use crate::Search;

/// How a relay run walks through rates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ladder {
    /// Stop the given rates at the first one not held (`compare`: a backlog would skew the
    /// next) and, with a search, refine between the last rate held and it (× the factor);
    /// `relay` runs them all.
    pub(crate) stop_at_fail: bool,
    /// When the first given rate is not held, search downward (÷ the search factor, down to
    /// [`MIN_SEARCH_RATE`]) for the highest rate held.
    pub(crate) down: bool,
    /// Run a rate once more when it was not held and the kernel dropped packets during it
    /// (see [`crate::system::NetCounters`]) or the generator was late by over [`GEN_LAG_RETRY_MS`].
    pub(crate) retry_lagged: bool,
}

/// The lowest rate a downward search tries, frames/s.
pub(crate) const MIN_SEARCH_RATE: f64 = 50.0;

/// A step not held whose generator lag exceeded this, ms, is run once more under
/// [`Ladder::retry_lagged`].
pub(crate) const GEN_LAG_RETRY_MS: f64 = 10.0;

/// Where one backend is on its ladder of rates.
pub(crate) struct LadderState {
    pub(crate) ladder: Ladder,
    pub(crate) search: Option<Search>,
    pub(crate) given: std::collections::VecDeque<f64>,
    pub(crate) last_held: Option<f64>,
    /// The lowest rate not held so far.
    pub(crate) ceiling: Option<f64>,
    pub(crate) going_down: bool,
    /// The rate last run was already a retry.
    pub(crate) retried: bool,
}

impl LadderState {
    pub(crate) fn new(rates: &[f64], search: Option<Search>, ladder: Ladder) -> Self {
        LadderState {
            ladder,
            search,
            given: rates.iter().copied().collect(),
            last_held: None,
            ceiling: None,
            going_down: false,
            retried: false,
        }
    }

    pub(crate) fn first(&mut self) -> Option<f64> {
        self.given.pop_front()
    }

    /// The rate after `row`, if any.
    pub(crate) fn next(&mut self, row: &RelayRow) -> Option<f64> {
        let (rate, held) = (row.rate, row.held());
        let disturbed = row.max_lag_us as f64 / 1000.0 > GEN_LAG_RETRY_MS
            || row.net.is_some_and(|n| n.drops > 0);
        if !held && self.ladder.retry_lagged && !self.retried && disturbed {
            self.retried = true;
            return Some(rate);
        }
        self.retried = false;
        if held {
            self.last_held = Some(self.last_held.map_or(rate, |h| h.max(rate)));
        } else {
            self.ceiling = Some(self.ceiling.map_or(rate, |c| c.min(rate)));
        }
        let factor = self.search.map(|s| s.factor);
        let below_ceiling = |r: f64, c: Option<f64>| c.is_none_or(|c| r < c);
        if self.going_down {
            return factor
                .map(|f| (rate / f).round())
                .filter(|&r| !held && r >= MIN_SEARCH_RATE);
        }
        if !held && self.last_held.is_none() && self.ladder.down {
            self.going_down = true;
            self.given.clear();
            return factor
                .map(|f| (rate / f).round())
                .filter(|&r| r >= MIN_SEARCH_RATE);
        }
        if self.ladder.stop_at_fail && self.ceiling.is_some() {
            // Refine upward from the highest held, below the lowest not held.
            self.given.clear();
            let from = if held { rate } else { self.last_held? };
            return factor
                .map(|f| (from * f).round())
                .filter(|&r| below_ceiling(r, self.ceiling));
        }
        self.given.pop_front().or_else(|| {
            let s = self.search?;
            let next = (rate * s.factor).round();
            (held && next <= s.max).then_some(next)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Latency;

    fn row(rate: f64, held: bool, lag_ms: u64) -> RelayRow {
        RelayRow {
            rate,
            sent: 100,
            received: if held { 100 } else { 99 },
            latency: Latency {
                p50_us: Some(100),
                p99_us: Some(1000),
                max_us: Some(2000),
            },
            max_lag_us: lag_ms * 1000,
            server_cpu: None,
            loadgen_cpu: None,
            net: None,
        }
    }

    const COMPARE: Ladder = Ladder {
        stop_at_fail: true,
        down: true,
        retry_lagged: true,
    };

    fn search() -> Option<Search> {
        Some(Search {
            factor: 1.25,
            max: 80_000.0,
        })
    }

    #[test]
    fn compare_ladder_refines_between_held_and_not_held() {
        let mut l = LadderState::new(&[1000.0, 5000.0, 20000.0], search(), COMPARE);
        assert_eq!(l.first(), Some(1000.0));
        assert_eq!(l.next(&row(1000.0, true, 1)), Some(5000.0));
        // 5000 fails: 20000 is not run; refine upward from 1000, below 5000.
        assert_eq!(l.next(&row(5000.0, false, 1)), Some(1250.0));
        assert_eq!(l.next(&row(1250.0, true, 1)), Some(1563.0));
        assert_eq!(l.next(&row(1563.0, false, 1)), None);
    }

    #[test]
    fn compare_ladder_searches_up_when_all_held_and_down_when_first_fails() {
        let mut l = LadderState::new(&[1000.0, 5000.0], search(), COMPARE);
        l.first();
        assert_eq!(l.next(&row(1000.0, true, 1)), Some(5000.0));
        assert_eq!(l.next(&row(5000.0, true, 1)), Some(6250.0));
        assert_eq!(
            l.next(&row(6250.0, false, 1)),
            None,
            "6250 × 1.25 is over it"
        );

        let mut l = LadderState::new(&[1000.0, 5000.0], search(), COMPARE);
        l.first();
        assert_eq!(l.next(&row(1000.0, false, 1)), Some(800.0));
        assert_eq!(l.next(&row(800.0, false, 1)), Some(640.0));
        assert_eq!(l.next(&row(640.0, true, 1)), None, "the first held ends it");
    }

    #[test]
    fn compare_ladder_retries_a_lagged_rate_once() {
        let mut l = LadderState::new(&[1000.0, 5000.0], search(), COMPARE);
        l.first();
        assert_eq!(l.next(&row(1000.0, false, 80)), Some(1000.0), "retried");
        assert_eq!(l.next(&row(1000.0, false, 80)), Some(800.0), "only once");
    }

    #[test]
    fn relay_ladder_runs_every_given_rate_then_searches_while_held() {
        let relay = Ladder {
            stop_at_fail: false,
            down: false,
            retry_lagged: false,
        };
        let mut l = LadderState::new(&[1000.0, 5000.0], search(), relay);
        l.first();
        assert_eq!(l.next(&row(1000.0, false, 80)), Some(5000.0));
        assert_eq!(l.next(&row(5000.0, true, 1)), Some(6250.0));
        assert_eq!(l.next(&row(6250.0, false, 1)), None);
        let mut l = LadderState::new(&[1000.0], None, relay);
        l.first();
        assert_eq!(l.next(&row(1000.0, true, 1)), None, "no search");
    }
}
