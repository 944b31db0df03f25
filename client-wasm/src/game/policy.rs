//! When the game connection polls its quality, restarts ICE and gives up: a pure state
//! machine, driven by events and the time (`now_ms`, the page's `performance.now()`), tested
//! natively. [`super::connection`] feeds it what the browser reports and carries out the
//! [`Action`]s it returns (the messages, the restart offer).
//!
//! The rules:
//! - Quality: once both channels are open, the selected pair's `currentRoundTripTime` is
//!   sampled every [`ConnectionTuning::quality_interval_ms`]; each sample is classified by
//!   [`QualityThresholds`], and a change of level is reported (`p2p_quality`).
//! - ICE restart (RFC 8445 §2.4): on `iceConnectionState` `failed` at once, on `disconnected`
//!   once it lasted [`ConnectionTuning::disconnect_grace_ms`]; at most
//!   [`ConnectionTuning::max_restarts`] attempts in a row. An attempt succeeds once its new
//!   offer/answer exchange is complete on this side and ICE is `connected`/`completed` again;
//!   it fails after [`ConnectionTuning::restart_timeout_ms`], and the next one starts at
//!   once. Only the initiator offers (no glare); the answering side's attempt counts as
//!   negotiated from the start (it cannot negotiate by itself, and it may well have answered
//!   the initiator's restart offer before its own grace ran out). A success resets the count
//!   and re-reads the connection type (the pair may have changed).
//! - After the last failed attempt the connection gives up (`p2p_connection_failed`) and is
//!   done; so it is when ICE is `closed`. Once the peer closed the game on purpose, nothing
//!   more is attempted.
//! - An offer from the peer ([`on_offer`]): on a connection with a remote description
//!   (handed over, or negotiated), answered on it when its DTLS fingerprint is that
//!   description's (an ICE restart), else answered by a fresh connection that replaces it (the
//!   peer's new page: a reload); on a connection whose own first offer is unanswered, ignored
//!   by the initiator and answered by a fresh connection on the other side (W3C "perfect
//!   negotiation", the non-initiator polite), so two crossing offers cannot deadlock.

use pairlab_shared::{IceRestartOutcome, IceRestartTrigger, QualityLevel};

/// While an ICE restart runs, how often its state is checked, ms.
pub const RESTART_CHECK_MS: f64 = 100.0;

/// The connection's timings and thresholds; fields so tests (and the page's URL parameters)
/// can shorten them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionTuning {
    /// How often the quality monitor reads `getStats`, ms (default 2000).
    pub quality_interval_ms: u32,
    /// The quality levels' RTT thresholds (default 150 / 300 ms).
    pub thresholds: QualityThresholds,
    /// How long `iceConnectionState` may stay `disconnected` before an ICE restart, ms
    /// (default 5000).
    pub disconnect_grace_ms: u32,
    /// ICE restart attempts before giving up (default 3).
    pub max_restarts: u32,
    /// How long one restart attempt may take to reconnect, ms (default 10000).
    pub restart_timeout_ms: u32,
}

impl Default for ConnectionTuning {
    fn default() -> Self {
        Self {
            quality_interval_ms: 2000,
            thresholds: QualityThresholds::default(),
            disconnect_grace_ms: 5000,
            max_restarts: 3,
            restart_timeout_ms: 10_000,
        }
    }
}

/// RTT thresholds of the quality levels (by default `warning` above 150 ms, `critical` above
/// 300 ms), applied to the selected pair's `currentRoundTripTime`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityThresholds {
    /// Above this RTT (ms) the level is at least `warning`.
    pub warning_above_ms: f64,
    /// Above this RTT (ms) the level is `critical`.
    pub critical_above_ms: f64,
}

impl Default for QualityThresholds {
    fn default() -> Self {
        Self {
            warning_above_ms: 150.0,
            critical_above_ms: 300.0,
        }
    }
}

impl QualityThresholds {
    /// The level of one RTT sample (ms).
    pub fn classify(&self, rtt_ms: f64) -> QualityLevel {
        if rtt_ms > self.critical_above_ms {
            QualityLevel::Critical
        } else if rtt_ms > self.warning_above_ms {
            QualityLevel::Warning
        } else {
            QualityLevel::Ok
        }
    }
}

/// The current quality level; reports changes only. Starts at `ok` (not reported).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityTracker {
    /// The thresholds.
    pub thresholds: QualityThresholds,
    level: QualityLevel,
}

impl QualityTracker {
    /// A tracker at `ok`.
    pub fn new(thresholds: QualityThresholds) -> Self {
        Self {
            thresholds,
            level: QualityLevel::Ok,
        }
    }

    /// The current level.
    pub fn level(&self) -> QualityLevel {
        self.level
    }

    /// Takes one sample (ms); returns the new level when it differs from the previous one.
    pub fn observe(&mut self, rtt_ms: f64) -> Option<QualityLevel> {
        let level = self.thresholds.classify(rtt_ms);
        if level == self.level {
            return None;
        }
        self.level = level;
        Some(level)
    }
}

/// `iceConnectionState` (W3C WebRTC 1.0 §4.4.4), as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    /// `new` (or a state this client does not know).
    New,
    /// `checking`.
    Checking,
    /// `connected`.
    Connected,
    /// `completed`.
    Completed,
    /// `disconnected`: connectivity lost, ICE may find it again by itself.
    Disconnected,
    /// `failed`: only an ICE restart can bring the connection back.
    Failed,
    /// `closed`: the connection was closed.
    Closed,
}

impl IceState {
    /// `connected` or `completed`: the path works.
    pub fn is_up(self) -> bool {
        matches!(self, IceState::Connected | IceState::Completed)
    }
}

/// One ICE restart attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attempt {
    /// 1-based, counted since the last success.
    pub number: u32,
    /// What set it off.
    pub trigger: IceRestartTrigger,
    /// When it started, ms.
    pub started_at_ms: f64,
    /// The new offer/answer exchange is complete on this side.
    negotiated: bool,
}

/// What the connection must do now, in order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// An attempt started: report it (`p2p_ice_restart`, `started`); the initiator sends a
    /// restart offer.
    RestartStarted(Attempt),
    /// An attempt ended: report it with its duration.
    RestartEnded {
        /// The attempt.
        attempt: Attempt,
        /// `succeeded` or `failed`.
        outcome: IceRestartOutcome,
        /// From its start to now, ms.
        duration_ms: f64,
    },
    /// Every attempt failed: report `p2p_connection_failed`; the connection is done.
    GaveUp {
        /// Attempts made.
        attempts: u32,
    },
}

/// The game connection's restart and quality timing. See the module docs.
#[derive(Debug, Clone)]
pub struct ConnectionPolicy {
    tuning: ConnectionTuning,
    initiator: bool,
    quality: QualityTracker,
    /// When the quality monitor reads next (`None`: not running).
    next_poll_ms: Option<f64>,
    /// Since when ICE is `disconnected` without a restart running.
    disconnected_since_ms: Option<f64>,
    restart: Option<Attempt>,
    /// Attempts since the last success.
    attempts: u32,
    /// The connection type must be read again (after a successful restart).
    recheck_info: bool,
    peer_closed: bool,
    done: bool,
}

impl ConnectionPolicy {
    /// The policy of a connection in which this side is the `initiator` (the one that
    /// offers), or not.
    pub fn new(tuning: ConnectionTuning, initiator: bool) -> Self {
        Self {
            tuning,
            initiator,
            quality: QualityTracker::new(tuning.thresholds),
            next_poll_ms: None,
            disconnected_since_ms: None,
            restart: None,
            attempts: 0,
            recheck_info: false,
            peer_closed: false,
            done: false,
        }
    }

    /// Whether this side sends the (restart) offers.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// Whether the connection is over (gave up, or ICE closed).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the peer closed the game on purpose.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The running attempt, if any.
    pub fn restart(&self) -> Option<Attempt> {
        self.restart
    }

    /// The current quality level (`ok` before the first sample).
    pub fn level(&self) -> QualityLevel {
        self.quality.level()
    }

    /// Both channels opened (the first time): the quality monitor reads at once.
    pub fn on_open(&mut self, now_ms: f64) {
        self.next_poll_ms = Some(now_ms);
    }

    /// The peer closed the game on purpose: nothing more is attempted or polled. Returns
    /// whether this is news.
    pub fn on_peer_closed(&mut self) -> bool {
        if self.peer_closed {
            return false;
        }
        self.peer_closed = true;
        self.restart = None;
        self.disconnected_since_ms = None;
        self.next_poll_ms = None;
        true
    }

    /// `iceConnectionState` changed to `state`; `up_now` is whether it reads
    /// `connected`/`completed` now (it may have moved on since the event).
    pub fn on_ice_state(&mut self, state: IceState, up_now: bool, now_ms: f64) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.peer_closed {
            return actions;
        }
        match state {
            IceState::Connected | IceState::Completed => {
                self.disconnected_since_ms = None;
                self.check_success(up_now, now_ms, &mut actions);
            }
            IceState::Disconnected if self.disconnected_since_ms.is_none() => {
                self.disconnected_since_ms = Some(now_ms);
            }
            IceState::Failed if self.restart.is_none() => {
                self.begin_restart(IceRestartTrigger::Failed, up_now, now_ms, &mut actions);
            }
            IceState::Closed => self.done = true,
            _ => {}
        }
        actions
    }

    /// A restart is asked for from outside (tests); ignored while one runs.
    pub fn on_restart_requested(
        &mut self,
        trigger: IceRestartTrigger,
        up_now: bool,
        now_ms: f64,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.restart.is_none() {
            self.begin_restart(trigger, up_now, now_ms, &mut actions);
        }
        actions
    }

    /// This side completed an offer/answer exchange (it set the answer, or sent one).
    pub fn on_negotiated(&mut self, up_now: bool, now_ms: f64) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(a) = self.restart.as_mut() {
            a.negotiated = true;
        }
        self.check_success(up_now, now_ms, &mut actions);
        actions
    }

    /// When [`ConnectionPolicy::on_timer`] (or the quality poll) is due next, ms; `None`:
    /// nothing is timed.
    pub fn next_deadline_ms(&self, now_ms: f64) -> Option<f64> {
        let mut deadline = self.next_poll_ms;
        let mut earliest = |t: f64| deadline = Some(deadline.map_or(t, |d| d.min(t)));
        if let Some(a) = self.restart {
            earliest(a.started_at_ms + f64::from(self.tuning.restart_timeout_ms));
            earliest(now_ms + RESTART_CHECK_MS);
        } else if let Some(since) = self.disconnected_since_ms {
            earliest(since + f64::from(self.tuning.disconnect_grace_ms));
        }
        deadline
    }

    /// Whether the quality monitor reads now; if so, the next read is scheduled one interval
    /// later.
    pub fn take_poll_due(&mut self, now_ms: f64) -> bool {
        if !self.next_poll_ms.is_some_and(|t| t <= now_ms) {
            return false;
        }
        self.next_poll_ms = Some(now_ms + f64::from(self.tuning.quality_interval_ms));
        true
    }

    /// Whether the connection type must be read again (once per successful restart); asked
    /// after a quality read.
    pub fn take_recheck_info(&mut self) -> bool {
        std::mem::take(&mut self.recheck_info)
    }

    /// One RTT sample of the quality monitor (ms); returns the new level when it changed.
    pub fn on_rtt_sample(&mut self, rtt_ms: f64) -> Option<QualityLevel> {
        self.quality.observe(rtt_ms)
    }

    /// The timer fired: a restart that succeeded or timed out, or a `disconnected` that
    /// lasted its grace.
    pub fn on_timer(&mut self, up_now: bool, now_ms: f64) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(a) = self.restart {
            self.check_success(up_now, now_ms, &mut actions);
            if self.restart.is_some()
                && now_ms - a.started_at_ms >= f64::from(self.tuning.restart_timeout_ms)
            {
                self.end_attempt(IceRestartOutcome::Failed, now_ms, &mut actions);
                if self.attempts >= self.tuning.max_restarts {
                    self.give_up(&mut actions);
                } else {
                    self.begin_restart(a.trigger, up_now, now_ms, &mut actions);
                }
            }
        } else if self
            .disconnected_since_ms
            .is_some_and(|since| now_ms - since >= f64::from(self.tuning.disconnect_grace_ms))
        {
            self.disconnected_since_ms = None;
            self.begin_restart(
                IceRestartTrigger::Disconnected,
                up_now,
                now_ms,
                &mut actions,
            );
        }
        actions
    }

    fn begin_restart(
        &mut self,
        trigger: IceRestartTrigger,
        up_now: bool,
        now_ms: f64,
        actions: &mut Vec<Action>,
    ) {
        if self.peer_closed || self.done {
            return;
        }
        if self.attempts >= self.tuning.max_restarts {
            self.give_up(actions);
            return;
        }
        self.attempts += 1;
        let attempt = Attempt {
            number: self.attempts,
            trigger,
            started_at_ms: now_ms,
            negotiated: !self.initiator,
        };
        self.restart = Some(attempt);
        actions.push(Action::RestartStarted(attempt));
        self.check_success(up_now, now_ms, actions);
    }

    fn end_attempt(&mut self, outcome: IceRestartOutcome, now_ms: f64, actions: &mut Vec<Action>) {
        if let Some(attempt) = self.restart.take() {
            actions.push(Action::RestartEnded {
                attempt,
                outcome,
                duration_ms: now_ms - attempt.started_at_ms,
            });
        }
    }

    fn check_success(&mut self, up_now: bool, now_ms: f64, actions: &mut Vec<Action>) {
        let Some(a) = self.restart else {
            return;
        };
        if a.negotiated && up_now {
            self.end_attempt(IceRestartOutcome::Succeeded, now_ms, actions);
            self.attempts = 0;
            self.disconnected_since_ms = None;
            // The pair may have changed: the next timer turn re-reads it.
            self.next_poll_ms = Some(now_ms);
            self.recheck_info = true;
        }
    }

    fn give_up(&mut self, actions: &mut Vec<Action>) {
        actions.push(Action::GaveUp {
            attempts: self.attempts,
        });
        self.done = true;
    }
}

/// What a game connection does with an offer from its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferDecision {
    /// Answer it on the current connection.
    Answer,
    /// Ignore it: this side's own first offer stands.
    Ignore,
    /// Replace the connection by a fresh one (no channels, no offer), which answers it.
    ReplaceAndAnswer {
        /// Why, for the log.
        why: &'static str,
    },
}

/// The rule for an offer from the peer (see the module docs): `same_fingerprint` is whether
/// the offer's DTLS fingerprints are the current remote description's (`None`: no remote
/// description yet), `own_offer_pending` whether this side's first offer is out and
/// unanswered, `initiator` whether this side is the pair's initiator.
pub fn on_offer(
    same_fingerprint: Option<bool>,
    own_offer_pending: bool,
    initiator: bool,
) -> OfferDecision {
    match (same_fingerprint, own_offer_pending, initiator) {
        (Some(true), _, _) => OfferDecision::Answer,
        (Some(false), _, _) => OfferDecision::ReplaceAndAnswer {
            why: "the peer's offer has another DTLS fingerprint: a new page",
        },
        (None, true, true) => OfferDecision::Ignore,
        (None, true, false) => OfferDecision::ReplaceAndAnswer {
            why: "both sides offered; the initiator's offer wins",
        },
        (None, false, _) => OfferDecision::Answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_on_handed_over_and_crossing_fresh_connections() {
        use OfferDecision::{Answer, Ignore, ReplaceAndAnswer};
        // Negotiated (or handed over): a restart is answered in place, another page's offer
        // replaces the connection, whoever is the initiator.
        for initiator in [true, false] {
            assert_eq!(on_offer(Some(true), false, initiator), Answer);
            assert!(matches!(
                on_offer(Some(false), false, initiator),
                ReplaceAndAnswer { .. }
            ));
        }
        // Nothing negotiated, nothing pending: answered, whoever offers.
        assert_eq!(on_offer(None, false, true), Answer);
        assert_eq!(on_offer(None, false, false), Answer);
        // Crossing first offers: exactly one side gives way, so they cannot deadlock.
        assert_eq!(on_offer(None, true, true), Ignore);
        assert!(matches!(
            on_offer(None, true, false),
            ReplaceAndAnswer { .. }
        ));
    }

    fn tuning() -> ConnectionTuning {
        ConnectionTuning {
            quality_interval_ms: 1000,
            disconnect_grace_ms: 500,
            max_restarts: 3,
            restart_timeout_ms: 2000,
            ..ConnectionTuning::default()
        }
    }

    /// The reports of `actions`, as the connection sends them.
    fn reports(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::RestartStarted(a) => {
                    format!("restart {} {:?} started", a.number, a.trigger)
                }
                Action::RestartEnded {
                    attempt, outcome, ..
                } => format!("restart {} {outcome:?}", attempt.number),
                Action::GaveUp { attempts } => format!("gave up after {attempts}"),
            })
            .collect()
    }

    #[test]
    fn levels_and_changes() {
        let mut t = QualityTracker::new(QualityThresholds::default());
        assert_eq!(t.observe(20.0), None);
        assert_eq!(t.observe(150.0), None, "150 is not above 150");
        assert_eq!(t.observe(150.5), Some(QualityLevel::Warning));
        assert_eq!(t.observe(200.0), None);
        assert_eq!(t.observe(301.0), Some(QualityLevel::Critical));
        assert_eq!(t.observe(10.0), Some(QualityLevel::Ok));
        assert_eq!(t.level(), QualityLevel::Ok);
    }

    #[test]
    fn failed_restarts_at_once_and_succeeds_after_negotiation() {
        let mut p = ConnectionPolicy::new(tuning(), true);
        let a = p.on_ice_state(IceState::Failed, false, 100.0);
        assert_eq!(reports(&a), ["restart 1 Failed started"]);
        // Another `failed` while the attempt runs starts nothing.
        assert!(p.on_ice_state(IceState::Failed, false, 150.0).is_empty());
        // Up again, but the initiator's new exchange is not complete: not yet.
        assert!(p.on_ice_state(IceState::Connected, true, 200.0).is_empty());
        let a = p.on_negotiated(true, 250.0);
        assert_eq!(
            a,
            [Action::RestartEnded {
                attempt: Attempt {
                    number: 1,
                    trigger: IceRestartTrigger::Failed,
                    started_at_ms: 100.0,
                    negotiated: true,
                },
                outcome: IceRestartOutcome::Succeeded,
                duration_ms: 150.0,
            }]
        );
        assert!(p.restart().is_none());
        // The pair is read again at once.
        assert!(p.take_poll_due(250.0));
        assert!(p.take_recheck_info());
        assert!(!p.take_recheck_info(), "once per success");
    }

    #[test]
    fn the_answering_side_succeeds_once_ice_is_up() {
        let mut p = ConnectionPolicy::new(tuning(), false);
        let a = p.on_restart_requested(IceRestartTrigger::Disconnected, true, 0.0);
        assert_eq!(
            reports(&a),
            ["restart 1 Disconnected started", "restart 1 Succeeded"],
            "negotiated from the start, and ICE is up already"
        );
        let a = p.on_ice_state(IceState::Failed, false, 10.0);
        assert_eq!(
            reports(&a),
            ["restart 1 Failed started"],
            "the count was reset"
        );
        let a = p.on_ice_state(IceState::Completed, true, 40.0);
        assert_eq!(reports(&a), ["restart 1 Succeeded"]);
    }

    #[test]
    fn disconnected_waits_for_its_grace() {
        let mut p = ConnectionPolicy::new(tuning(), true);
        assert!(p
            .on_ice_state(IceState::Disconnected, false, 1000.0)
            .is_empty());
        // A second `disconnected` does not move the start of the grace.
        assert!(p
            .on_ice_state(IceState::Disconnected, false, 1200.0)
            .is_empty());
        assert_eq!(p.next_deadline_ms(1200.0), Some(1500.0));
        assert!(p.on_timer(false, 1499.0).is_empty());
        let a = p.on_timer(false, 1500.0);
        assert_eq!(reports(&a), ["restart 1 Disconnected started"]);

        // Back to connected within the grace: no restart.
        let mut p = ConnectionPolicy::new(tuning(), true);
        p.on_ice_state(IceState::Disconnected, false, 0.0);
        p.on_ice_state(IceState::Connected, true, 300.0);
        assert_eq!(p.next_deadline_ms(300.0), None);
        assert!(p.on_timer(true, 600.0).is_empty());
    }

    #[test]
    fn attempts_time_out_and_the_last_gives_up() {
        let mut p = ConnectionPolicy::new(tuning(), true);
        let mut all = p.on_ice_state(IceState::Failed, false, 0.0);
        // While an attempt runs, its state is checked every RESTART_CHECK_MS.
        assert_eq!(p.next_deadline_ms(0.0), Some(RESTART_CHECK_MS));
        assert_eq!(p.next_deadline_ms(1950.0), Some(2000.0));
        assert!(p.on_timer(false, 1999.0).is_empty());
        all.extend(p.on_timer(false, 2000.0));
        all.extend(p.on_timer(false, 4000.0));
        assert!(!p.is_done());
        let last = p.on_timer(false, 6000.0);
        assert_eq!(
            last.first(),
            Some(&Action::RestartEnded {
                attempt: Attempt {
                    number: 3,
                    trigger: IceRestartTrigger::Failed,
                    started_at_ms: 4000.0,
                    negotiated: false,
                },
                outcome: IceRestartOutcome::Failed,
                duration_ms: 2000.0,
            })
        );
        all.extend(last);
        assert_eq!(
            reports(&all),
            [
                "restart 1 Failed started",
                "restart 1 Failed",
                "restart 2 Failed started",
                "restart 2 Failed",
                "restart 3 Failed started",
                "restart 3 Failed",
                "gave up after 3",
            ]
        );
        assert!(p.is_done());
        assert!(p
            .on_restart_requested(IceRestartTrigger::Failed, false, 7000.0)
            .is_empty());
    }

    #[test]
    fn a_restart_asked_for_after_the_last_attempt_gives_up() {
        let mut p = ConnectionPolicy::new(
            ConnectionTuning {
                max_restarts: 0,
                ..tuning()
            },
            true,
        );
        let a = p.on_ice_state(IceState::Failed, false, 0.0);
        assert_eq!(reports(&a), ["gave up after 0"]);
        assert!(p.is_done());
    }

    #[test]
    fn the_peer_closing_stops_everything() {
        let mut p = ConnectionPolicy::new(tuning(), true);
        p.on_open(0.0);
        p.on_ice_state(IceState::Failed, false, 10.0);
        assert!(p.on_peer_closed());
        assert!(!p.on_peer_closed(), "news only once");
        assert!(p.restart().is_none());
        assert_eq!(p.next_deadline_ms(20.0), None);
        assert!(p.on_ice_state(IceState::Failed, false, 30.0).is_empty());
        assert!(p
            .on_ice_state(IceState::Disconnected, false, 30.0)
            .is_empty());
        assert!(p.on_timer(false, 10_000.0).is_empty());
        assert!(p
            .on_restart_requested(IceRestartTrigger::Failed, false, 40.0)
            .is_empty());
    }

    #[test]
    fn ice_closed_ends_the_connection() {
        let mut p = ConnectionPolicy::new(tuning(), false);
        assert!(p.on_ice_state(IceState::Closed, false, 0.0).is_empty());
        assert!(p.is_done());
    }

    #[test]
    fn quality_is_polled_every_interval_after_open() {
        let mut p = ConnectionPolicy::new(tuning(), true);
        assert_eq!(p.next_deadline_ms(0.0), None, "not before open");
        assert!(!p.take_poll_due(0.0));
        p.on_open(500.0);
        assert_eq!(p.next_deadline_ms(500.0), Some(500.0));
        assert!(p.take_poll_due(500.0));
        assert!(!p.take_poll_due(1499.0));
        assert_eq!(p.next_deadline_ms(1000.0), Some(1500.0));
        assert!(p.take_poll_due(1500.0));
        assert_eq!(p.on_rtt_sample(40.0), None);
        assert_eq!(p.on_rtt_sample(400.0), Some(QualityLevel::Critical));
        assert_eq!(p.level(), QualityLevel::Critical);
    }
}
