//! Prometheus metrics, served at `/metrics` when `[server] metrics_token` (or
//! `pairlab serve --metrics-token`) is set.
//!
//! How the parts fit: one [`Metrics`] per server, owning its own [`Registry`] (no process-wide
//! state, so servers in one process keep apart). Its values come from three places, each read
//! once:
//! - **the research record**: [`Metrics::observe`] counts each line the record writer has
//!   written (the writer calls it, [`crate::record::RecordWriter::spawn_observed`]), so the
//!   research counters equal the record's lines: joins, probes started, accepted and rejected
//!   by reason, the probe duration and P2P RTT histograms, games created and ended by reason,
//!   waitroom timeouts, departures, connection types, ICE restarts, and every line by kind;
//! - **the shell's own events**: connections refused at the connection caps (by reason) and
//!   connections closed for exceeding the rate limit ([`Metrics::refused`],
//!   [`Metrics::rate_limited`], called where the shell decides them);
//! - **live state, read at scrape time** ([`Metrics::render`] with a [`Live`]): open
//!   WebSockets, sessions, participants waiting per scene, probes in flight, and the record
//!   writer's written/lost/overflowed counts.
//!
//! Names follow Prometheus' conventions: a `pairlab_` prefix, `_total` on counters, base units
//! (`_seconds`) on histograms.

use std::sync::{Mutex, PoisonError};

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use serde::Serialize;

use crate::core::ResearchEvent;
use crate::record::RecordStatus;

/// `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket bounds of the probe duration histogram, seconds (probes take a few hundred ms to
/// their deadline, 10 s by default).
pub const PROBE_DURATION_BUCKETS_S: [f64; 10] =
    [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0];

/// Bucket bounds of the P2P RTT histogram, seconds (around the usual `max_p2p_rtt_ms` of
/// 100–200 ms).
pub const P2P_RTT_BUCKETS_S: [f64; 12] = [
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0,
];

/// Why metrics could not be set up or rendered (a bug: names and labels are fixed here).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// The live state a scrape reports alongside the counters.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Open WebSockets.
    pub websocket_connections: usize,
    /// Sessions (connected or in their reconnect grace).
    pub participants: usize,
    /// Live probes.
    pub probes: usize,
    /// Proposed groups being probed.
    pub groups: usize,
    /// HTTP connections evicted by the full total cap since start.
    pub evicted_connections: u64,
    /// The record writer's counts.
    pub record: Option<RecordStatus>,
}

/// Counters that mirror a monotonic count kept elsewhere, brought up to it at each scrape.
struct Mirrored {
    record_lines_written: IntCounter,
    record_lines_lost: IntCounter,
    record_queue_overflows: IntCounter,
    evicted_connections: IntCounter,
}

/// One server's metrics (see the module docs).
pub struct Metrics {
    registry: Registry,
    websocket_connections: IntGauge,
    participants: IntGauge,
    waiting: IntGaugeVec,
    probes_in_flight: IntGauge,
    groups_probing: IntGauge,
    record_events: IntCounterVec,
    joined: IntCounterVec,
    probes_started: IntCounterVec,
    probes_accepted: IntCounterVec,
    probes_rejected: IntCounterVec,
    probe_duration: HistogramVec,
    p2p_rtt: HistogramVec,
    games_created: IntCounterVec,
    games_ended: IntCounterVec,
    waitroom_timeouts: IntCounterVec,
    participants_left: IntCounterVec,
    connection_types: IntCounterVec,
    ice_restarts: IntCounterVec,
    connection_failures: IntCounterVec,
    rate_limited: IntCounter,
    refused: IntCounterVec,
    /// Brought up to date one scrape at a time.
    mirrored: Mutex<Mirrored>,
}

/// The serde name of an enum value (`peer_left`, `rtt_too_high`, …), as the record writes it.
pub(crate) fn label<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_owned(),
    }
}

impl Metrics {
    /// Metrics for a server with these scenes (their per-scene series start at 0).
    ///
    /// # Errors
    /// [`MetricsError`] if a metric cannot be registered (a duplicate name: a bug).
    pub fn new<'a>(scene_ids: impl IntoIterator<Item = &'a str>) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> Result<IntCounter, MetricsError> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, MetricsError> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counters =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, MetricsError> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram =
            |name: &str, help: &str, buckets: &[f64]| -> Result<HistogramVec, MetricsError> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                    &["scene"],
                )?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let waiting = IntGaugeVec::new(
            Opts::new(
                "pairlab_waiting_participants",
                "Participants waiting to be matched, per scene.",
            ),
            &["scene"],
        )?;
        registry.register(Box::new(waiting.clone()))?;
        let metrics = Metrics {
            websocket_connections: gauge("pairlab_websocket_connections", "Open WebSockets.")?,
            participants: gauge(
                "pairlab_participants",
                "Sessions, connected or in their reconnect grace.",
            )?,
            waiting,
            probes_in_flight: gauge("pairlab_probes_in_flight", "Live probes.")?,
            groups_probing: gauge("pairlab_groups_probing", "Proposed groups being probed.")?,
            record_events: counters(
                "pairlab_record_events_total",
                "Research record lines written, per scene and event.",
                &["scene", "event"],
            )?,
            joined: counters(
                "pairlab_participants_joined_total",
                "participant_joined lines: accepted hellos (resumed: took a session back).",
                &["scene", "resumed"],
            )?,
            probes_started: counters(
                "pairlab_probes_started_total",
                "Probes started (probe_started).",
                &["scene"],
            )?,
            probes_accepted: counters(
                "pairlab_probes_accepted_total",
                "Probes decided accepted (probe_result, accepted).",
                &["scene"],
            )?,
            probes_rejected: counters(
                "pairlab_probes_rejected_total",
                "Probes decided rejected, by reason (probe_result, not accepted).",
                &["scene", "reason"],
            )?,
            probe_duration: histogram(
                "pairlab_probe_duration_seconds",
                "From probe_prepare to the decision (probe_result duration_ms).",
                &PROBE_DURATION_BUCKETS_S,
            )?,
            p2p_rtt: histogram(
                "pairlab_p2p_rtt_seconds",
                "The P2P RTT each decided probe was judged on (probe_result rtt_ms).",
                &P2P_RTT_BUCKETS_S,
            )?,
            games_created: counters(
                "pairlab_games_created_total",
                "Games started (game_created).",
                &["scene"],
            )?,
            games_ended: counters(
                "pairlab_games_ended_total",
                "Games the server ended, by reason (game_ended).",
                &["scene", "reason"],
            )?,
            waitroom_timeouts: counters(
                "pairlab_waitroom_timeouts_total",
                "Participants whose waitroom deadline passed (waitroom_timeout).",
                &["scene"],
            )?,
            participants_left: counters(
                "pairlab_participants_left_total",
                "Participants gone for good, by reason (participant_left).",
                &["scene", "reason"],
            )?,
            connection_types: counters(
                "pairlab_p2p_connections_total",
                "Game connections up, by connection type (p2p_connection_type).",
                &["scene", "connection_type"],
            )?,
            ice_restarts: counters(
                "pairlab_ice_restarts_total",
                "ICE restart reports, by outcome (p2p_ice_restart).",
                &["scene", "outcome"],
            )?,
            connection_failures: counters(
                "pairlab_p2p_connection_failures_total",
                "Game connections failed for good (p2p_connection_failed).",
                &["scene"],
            )?,
            rate_limited: counter(
                "pairlab_rate_limited_connections_total",
                "WebSockets closed for sending faster than the rate limit.",
            )?,
            refused: counters(
                "pairlab_refused_connections_total",
                "HTTP connections or requests refused at a connection cap (total: 503, per_ip: 429).",
                &["reason"],
            )?,
            mirrored: Mutex::new(Mirrored {
                record_lines_written: counter(
                    "pairlab_record_lines_written_total",
                    "Research record lines written since start.",
                )?,
                record_lines_lost: counter(
                    "pairlab_record_lines_lost_total",
                    "Research record lines lost (failed writes) since start.",
                )?,
                record_queue_overflows: counter(
                    "pairlab_record_queue_overflows_total",
                    "Research events dropped because the record queue was full.",
                )?,
                evicted_connections: counter(
                    "pairlab_evicted_connections_total",
                    "HTTP connections closed to make room under a full max_http_connections.",
                )?,
            }),
            registry,
        };
        for scene in scene_ids {
            metrics.waiting.with_label_values(&[scene]).set(0);
            for vec in [
                &metrics.probes_started,
                &metrics.probes_accepted,
                &metrics.games_created,
                &metrics.waitroom_timeouts,
                &metrics.connection_failures,
            ] {
                vec.with_label_values(&[scene]);
            }
        }
        for reason in ["total", "per_ip"] {
            metrics.refused.with_label_values(&[reason]);
        }
        Ok(metrics)
    }

    /// Counts one research record line of `scene_id`, once it is written.
    pub fn observe(&self, scene_id: &str, event: &ResearchEvent) {
        let scene = scene_id;
        self.record_events
            .with_label_values(&[scene, event.kind().as_str()])
            .inc();
        match event {
            ResearchEvent::ParticipantJoined { resumed, .. } => self
                .joined
                .with_label_values(&[scene, if *resumed { "true" } else { "false" }])
                .inc(),
            ResearchEvent::ProbeStarted { .. } => {
                self.probes_started.with_label_values(&[scene]).inc();
            }
            ResearchEvent::ProbeResult {
                accepted,
                reason,
                rtt_ms,
                duration_ms,
                ..
            } => {
                if *accepted {
                    self.probes_accepted.with_label_values(&[scene]).inc();
                } else {
                    let reason = reason.as_ref().map_or_else(|| "unknown".to_owned(), label);
                    self.probes_rejected
                        .with_label_values(&[scene, reason.as_str()])
                        .inc();
                }
                self.probe_duration
                    .with_label_values(&[scene])
                    .observe(duration_ms / 1000.0);
                if let Some(rtt_ms) = rtt_ms {
                    self.p2p_rtt
                        .with_label_values(&[scene])
                        .observe(rtt_ms / 1000.0);
                }
            }
            ResearchEvent::GameCreated { .. } => {
                self.games_created.with_label_values(&[scene]).inc();
            }
            ResearchEvent::GameEnded { reason, .. } => self
                .games_ended
                .with_label_values(&[scene, label(reason).as_str()])
                .inc(),
            ResearchEvent::WaitroomTimeout { .. } => {
                self.waitroom_timeouts.with_label_values(&[scene]).inc();
            }
            ResearchEvent::ParticipantLeft { reason, .. } => self
                .participants_left
                .with_label_values(&[scene, label(reason).as_str()])
                .inc(),
            ResearchEvent::P2pConnectionType { connection, .. } => self
                .connection_types
                .with_label_values(&[scene, label(&connection.connection_type).as_str()])
                .inc(),
            ResearchEvent::P2pIceRestart { outcome, .. } => self
                .ice_restarts
                .with_label_values(&[scene, label(outcome).as_str()])
                .inc(),
            ResearchEvent::P2pConnectionFailed { .. } => {
                self.connection_failures.with_label_values(&[scene]).inc();
            }
            // Counted by kind in `pairlab_record_events_total` only.
            _ => {}
        }
    }

    /// A connection or request refused at a connection cap: `per_ip` (429) or `total` (503).
    pub fn refused(&self, per_ip: bool) {
        self.refused
            .with_label_values(&[if per_ip { "per_ip" } else { "total" }])
            .inc();
    }

    /// A WebSocket closed for exceeding the rate limit.
    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// Sets the participants waiting in each scene (`(scene_id, waiting)`).
    pub fn set_waiting<'a>(&self, waiting: impl IntoIterator<Item = (&'a str, usize)>) {
        for (scene, n) in waiting {
            self.waiting
                .with_label_values(&[scene])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The text exposition of every metric, with the live values of `live`.
    ///
    /// # Errors
    /// [`MetricsError`] if the text cannot be encoded (a bug).
    pub fn render(&self, live: &Live) -> Result<String, MetricsError> {
        let gauge = |g: &IntGauge, n: usize| g.set(i64::try_from(n).unwrap_or(i64::MAX));
        gauge(&self.websocket_connections, live.websocket_connections);
        gauge(&self.participants, live.participants);
        gauge(&self.probes_in_flight, live.probes);
        gauge(&self.groups_probing, live.groups);
        {
            let mirrored = self.mirrored.lock().unwrap_or_else(PoisonError::into_inner);
            let catch_up = |c: &IntCounter, n: u64| c.inc_by(n.saturating_sub(c.get()));
            catch_up(&mirrored.evicted_connections, live.evicted_connections);
            if let Some(record) = &live.record {
                catch_up(&mirrored.record_lines_written, record.lines_written);
                catch_up(&mirrored.record_lines_lost, record.lines_lost);
                catch_up(&mirrored.record_queue_overflows, record.queue_overflows);
            }
        }
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text)?;
        String::from_utf8(text).map_err(|e| MetricsError(prometheus::Error::Msg(e.to_string())))
    }

    /// Whether `authorization` (the request's `Authorization` header) is `Bearer <token>`
    /// ([`token_matches`]).
    pub fn authorized(token: &str, authorization: Option<&str>) -> bool {
        let Some(given) = authorization.and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        }) else {
            return false;
        };
        token_matches(token, given)
    }
}

/// Whether `given` is `token`. Compares SHA-256 digests, so the time taken says nothing about
/// how much of the token matched (`/metrics` and `/monitor`).
pub fn token_matches(token: &str, given: &str) -> bool {
    use sha2::Digest as _;
    sha2::Sha256::digest(given.as_bytes()) == sha2::Sha256::digest(token.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::research::{LeaveReason, ProbeFailure};
    use pairlab_shared::{ProbeSessionId, SubjectId};

    fn sid(s: &str) -> SubjectId {
        SubjectId::parse(s).unwrap()
    }

    #[test]
    fn bearer_token_is_required_exactly() {
        let t = "0123456789abcdef";
        assert!(Metrics::authorized(t, Some("Bearer 0123456789abcdef")));
        assert!(Metrics::authorized(t, Some("bearer  0123456789abcdef ")));
        assert!(!Metrics::authorized(t, Some("Bearer 0123456789abcde")));
        assert!(!Metrics::authorized(t, Some("Basic 0123456789abcdef")));
        assert!(!Metrics::authorized(t, Some("0123456789abcdef")));
        assert!(!Metrics::authorized(t, None));
    }

    #[test]
    fn research_lines_become_counters_and_histograms() {
        let m = Metrics::new(["s"]).unwrap();
        let members = [sid("a"), sid("b")];
        m.observe(
            "s",
            &ResearchEvent::ProbeResult {
                probe_session_id: ProbeSessionId::from_string("p"),
                members: members.clone(),
                reports: [None, None],
                accepted: false,
                rtt_ms: Some(300.0),
                max_p2p_rtt_ms: 150.0,
                reason: Some(ProbeFailure::RttTooHigh),
                ready_ms: None,
                duration_ms: 1_200.0,
            },
        );
        m.observe(
            "s",
            &ResearchEvent::ParticipantLeft {
                subject_id: sid("a"),
                reason: LeaveReason::GraceExpired,
            },
        );
        m.refused(true);
        m.rate_limited();
        let text = m
            .render(&Live {
                websocket_connections: 3,
                record: Some(RecordStatus {
                    lines_written: 7,
                    lines_lost: 1,
                    queue_overflows: 0,
                    writing_fails: false,
                    last_error: None,
                    degraded: None,
                }),
                ..Live::default()
            })
            .unwrap();
        for line in [
            "pairlab_probes_rejected_total{reason=\"rtt_too_high\",scene=\"s\"} 1",
            "pairlab_probes_accepted_total{scene=\"s\"} 0",
            "pairlab_probe_duration_seconds_bucket{scene=\"s\",le=\"1.5\"} 1",
            "pairlab_probe_duration_seconds_bucket{scene=\"s\",le=\"1\"} 0",
            "pairlab_p2p_rtt_seconds_sum{scene=\"s\"} 0.3",
            "pairlab_participants_left_total{reason=\"grace_expired\",scene=\"s\"} 1",
            "pairlab_record_events_total{event=\"probe_result\",scene=\"s\"} 1",
            "pairlab_refused_connections_total{reason=\"per_ip\"} 1",
            "pairlab_refused_connections_total{reason=\"total\"} 0",
            "pairlab_rate_limited_connections_total 1",
            "pairlab_websocket_connections 3",
            "pairlab_waiting_participants{scene=\"s\"} 0",
            "pairlab_record_lines_written_total 7",
            "pairlab_record_lines_lost_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // A second scrape does not count the mirrored totals twice.
        let again = m.render(&Live::default()).unwrap();
        assert!(again.contains("pairlab_record_lines_written_total 7\n"));
    }
}
