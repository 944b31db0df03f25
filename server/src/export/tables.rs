//! Record lines → the export's tables.
//!
//! [`Tables::read`] takes one record line (parsed JSON) at a time, in record order. Lines that
//! are one row each (`server_rtt`, `episode_summary`, `p2p_connection_type`, `custom`, …) add
//! their row at once; lines about an entity (a participant, a probe, a game) update its one
//! row, found by key (scene and id). [`Tables::finish`] computes what needs every line
//! (waits, durations, how each participant's part ended), and [`Tables::write_csv`] writes one
//! CSV file per table, its header from the row type's field names.
//!
//! Each line is read into a small `Deserialize` shape of its own (the fields this export
//! uses; enums read as their names, so a newer value is kept, not refused). A line of a known
//! kind that does not fit its shape is counted as unreadable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ExportError;
use crate::core::research::ResearchEventKind as Kind;
use crate::record::kind_of;

/// What [`Tables::read`] did with a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// It went into the tables (or is a known kind with nothing to tabulate, such as
    /// `server_started`).
    Used,
    /// Its `event` is not a kind this export knows; skipped.
    Unknown(String),
    /// A known kind whose fields do not fit; skipped.
    Malformed,
}

// ---------------------------------------------------------------------------------------------
// Rows (the CSV columns, in order; docs/EXPORT.md documents each)
// ---------------------------------------------------------------------------------------------

/// `participants.csv`: one row per participant of a scene.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ParticipantRow {
    pub scene_id: String,
    pub subject_id: String,
    pub joined_ts: Option<String>,
    pub joins: u32,
    pub resumes: u32,
    pub drops: u32,
    pub server_rtt_median_ms: Option<f64>,
    pub probes: u32,
    pub probes_rejected: u32,
    pub game_id: Option<String>,
    pub player_index: Option<usize>,
    pub wait_to_game_ms: Option<f64>,
    pub waitroom_timeout: bool,
    pub waited_ms: Option<f64>,
    pub left_ts: Option<String>,
    pub left_reason: Option<String>,
    pub outcome: Option<String>,
    pub ending: String,
}

/// `server_rtts.csv`: one row per `server_rtt` line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerRttRow {
    pub ts: String,
    pub scene_id: String,
    pub subject_id: String,
    pub median_ms: f64,
    pub samples: usize,
    pub samples_ms: String,
}

/// `probes.csv`: one row per probe (its `probe_started` and `probe_result` lines).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProbeRow {
    pub scene_id: String,
    pub probe_session_id: String,
    pub started_ts: Option<String>,
    pub initiator_subject_id: String,
    pub responder_subject_id: String,
    pub timeout_ms: Option<u64>,
    pub decided_ts: Option<String>,
    pub accepted: Option<bool>,
    pub reason: Option<String>,
    pub rtt_ms: Option<f64>,
    pub max_p2p_rtt_ms: Option<f64>,
    pub ready_ms: Option<f64>,
    pub duration_ms: Option<f64>,
    pub initiator_reported: bool,
    pub initiator_success: Option<bool>,
    pub initiator_rtt_ms: Option<f64>,
    pub initiator_stats_rtt_ms: Option<f64>,
    pub initiator_samples: Option<usize>,
    pub initiator_received_ms: Option<f64>,
    pub initiator_connection_type: Option<String>,
    pub initiator_local_candidate_type: Option<String>,
    pub initiator_remote_candidate_type: Option<String>,
    pub initiator_protocol: Option<String>,
    pub initiator_relay_protocol: Option<String>,
    pub responder_reported: bool,
    pub responder_success: Option<bool>,
    pub responder_rtt_ms: Option<f64>,
    pub responder_stats_rtt_ms: Option<f64>,
    pub responder_samples: Option<usize>,
    pub responder_received_ms: Option<f64>,
    pub responder_connection_type: Option<String>,
    pub responder_local_candidate_type: Option<String>,
    pub responder_remote_candidate_type: Option<String>,
    pub responder_protocol: Option<String>,
    pub responder_relay_protocol: Option<String>,
}

/// `games.csv`: one row per game (`game_created`, `game_ended` and the lines naming it).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GameRow {
    pub scene_id: String,
    pub game_id: String,
    pub created_ts: String,
    pub group_size: usize,
    pub players: String,
    pub max_p2p_rtt_ms: Option<f64>,
    pub ended_ts: Option<String>,
    pub end_reason: Option<String>,
    pub ended_by_subject_id: Option<String>,
    pub duration_ms: Option<f64>,
    pub episode_summaries: u32,
    pub connection_failures: u32,
    pub handover_pairs: Option<usize>,
}

/// `game_players.csv`: one row per member of a game.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GamePlayerRow {
    pub scene_id: String,
    pub game_id: String,
    pub player_index: usize,
    pub subject_id: String,
}

/// `episodes.csv`: one row per `episode_summary` line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EpisodeRow {
    pub ts: String,
    pub scene_id: String,
    pub game_id: String,
    pub subject_id: String,
    pub episode: u32,
    pub frames: u32,
    pub inputs_sent: u64,
    pub peers: usize,
    pub hidden_count: Option<u32>,
    pub hidden_ms: Option<f64>,
}

/// `peer_metrics.csv`: one row per peer of each `episode_summary` line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PeerMetricsRow {
    pub ts: String,
    pub scene_id: String,
    pub game_id: String,
    pub subject_id: String,
    pub episode: u32,
    pub peer_subject_id: String,
    pub peer_index: Option<usize>,
    pub inputs_received: u64,
    pub connection_type: Option<String>,
    pub local_candidate_type: Option<String>,
    pub remote_candidate_type: Option<String>,
    pub protocol: Option<String>,
    pub relay_protocol: Option<String>,
    pub rtt_min_ms: Option<f64>,
    pub rtt_median_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    pub rtt_samples: Option<u32>,
    pub quality_changes: usize,
    pub quality_changes_json: String,
    pub ice_restarts: u32,
    pub setup: Option<String>,
    pub same_path_as_probe: Option<bool>,
}

/// `connections.csv`: one row per `p2p_connection_type` line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConnectionRow {
    pub ts: String,
    pub scene_id: String,
    pub game_id: String,
    pub subject_id: String,
    pub peer_subject_id: String,
    pub connection_type: String,
    pub local_candidate_type: String,
    pub remote_candidate_type: String,
    pub protocol: String,
    pub relay_protocol: Option<String>,
    pub connect_ms: Option<f64>,
    pub setup: Option<String>,
    pub same_path_as_probe: Option<bool>,
}

/// `connection_events.csv`: one row per `p2p_quality`, `p2p_ice_restart` or
/// `p2p_connection_failed` line (the columns of the other kinds left empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConnectionEventRow {
    pub ts: String,
    pub scene_id: String,
    pub event: String,
    pub game_id: String,
    pub subject_id: String,
    pub peer_subject_id: String,
    pub level: Option<String>,
    pub rtt_ms: Option<f64>,
    pub attempt: Option<u32>,
    pub trigger: Option<String>,
    pub outcome: Option<String>,
    pub duration_ms: Option<f64>,
    pub attempts: Option<u32>,
}

/// `custom.csv`: one row per `custom` line (a researcher's own event).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CustomRow {
    pub ts: String,
    pub scene_id: String,
    pub subject_id: String,
    pub game_id: Option<String>,
    pub player_index: Option<u64>,
    pub name: String,
    pub fields: String,
}

// ---------------------------------------------------------------------------------------------
// Line shapes
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Common {
    ts: String,
    scene_id: String,
}

#[derive(Deserialize)]
struct Joined {
    subject_id: String,
    #[serde(default)]
    resumed: bool,
}

#[derive(Deserialize)]
struct Subject {
    subject_id: String,
}

#[derive(Deserialize)]
struct ServerRtt {
    subject_id: String,
    median_ms: f64,
    #[serde(default)]
    samples_ms: Vec<f64>,
}

#[derive(Deserialize)]
struct ProbeStarted {
    probe_session_id: String,
    members: [String; 2],
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
struct ProbeReport {
    success: bool,
    rtt_ms: Option<f64>,
    #[serde(default)]
    samples_ms: Vec<f64>,
    stats_rtt_ms: Option<f64>,
    received_ms: Option<f64>,
    #[serde(default)]
    connection: Option<Connection>,
}

#[derive(Deserialize)]
struct ProbeResult {
    probe_session_id: String,
    members: [String; 2],
    reports: [Option<ProbeReport>; 2],
    accepted: bool,
    rtt_ms: Option<f64>,
    max_p2p_rtt_ms: Option<f64>,
    reason: Option<String>,
    ready_ms: Option<f64>,
    duration_ms: Option<f64>,
}

#[derive(Deserialize)]
struct PairRtt {
    rtt_ms: f64,
}

#[derive(Deserialize)]
struct PairProbe {
    handover: bool,
}

#[derive(Deserialize)]
struct GameCreated {
    game_id: String,
    players: Vec<String>,
    #[serde(default)]
    p2p_rtts_ms: Vec<PairRtt>,
    /// Absent from records of servers without the handover.
    #[serde(default)]
    probes: Option<Vec<PairProbe>>,
}

#[derive(Deserialize)]
struct GameEnded {
    game_id: String,
    reason: String,
    subject_id: Option<String>,
}

#[derive(Deserialize)]
struct WaitroomTimeout {
    subject_id: String,
    waited_ms: Option<f64>,
}

#[derive(Deserialize)]
struct Left {
    subject_id: String,
    reason: String,
}

#[derive(Deserialize)]
struct Connection {
    connection_type: String,
    local_candidate_type: String,
    remote_candidate_type: String,
    protocol: String,
    relay_protocol: Option<String>,
}

/// A probe report's measured path (`connection`) as the five columns of `probes.csv`, in
/// column order: connection type, local and remote candidate types, protocol, relay
/// protocol; all empty when the report did not say.
struct MeasuredPath([Option<String>; 5]);

impl MeasuredPath {
    fn of(report: &ProbeReport) -> Self {
        MeasuredPath(match &report.connection {
            None => Default::default(),
            Some(c) => [
                Some(c.connection_type.clone()),
                Some(c.local_candidate_type.clone()),
                Some(c.remote_candidate_type.clone()),
                Some(c.protocol.clone()),
                c.relay_protocol.clone(),
            ],
        })
    }
}

#[derive(Deserialize)]
struct ConnectionType {
    game_id: String,
    subject_id: String,
    peer_subject_id: String,
    #[serde(flatten)]
    connection: Connection,
    connect_ms: Option<f64>,
    #[serde(default)]
    setup: Option<String>,
    #[serde(default)]
    same_path_as_probe: Option<bool>,
}

#[derive(Deserialize)]
struct ConnectionEvent {
    game_id: String,
    subject_id: String,
    peer_subject_id: String,
    level: Option<String>,
    rtt_ms: Option<f64>,
    attempt: Option<u32>,
    trigger: Option<String>,
    outcome: Option<String>,
    duration_ms: Option<f64>,
    attempts: Option<u32>,
}

#[derive(Deserialize)]
struct RttSummary {
    min: f64,
    median: f64,
    max: f64,
    samples: u32,
}

#[derive(Deserialize)]
struct PeerReport {
    peer_subject_id: String,
    peer_index: Option<usize>,
    #[serde(default)]
    inputs_received: u64,
    connection: Option<Connection>,
    rtt_ms: Option<RttSummary>,
    #[serde(default)]
    quality_changes: Vec<Value>,
    #[serde(default)]
    ice_restarts: u32,
    #[serde(default)]
    setup: Option<String>,
    #[serde(default)]
    same_path_as_probe: Option<bool>,
}

#[derive(Deserialize)]
struct EpisodeSummary {
    game_id: String,
    subject_id: String,
    episode: u32,
    frames: u32,
    inputs_sent: u64,
    #[serde(default)]
    peers: Vec<PeerReport>,
    hidden_count: Option<u32>,
    hidden_ms: Option<f64>,
}

#[derive(Deserialize)]
struct Custom {
    subject_id: String,
    game_id: Option<String>,
    player_index: Option<u64>,
    name: String,
    #[serde(default)]
    fields: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct ParticipantOutcome {
    subject_id: String,
    outcome: String,
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

/// Rows kept in first-seen order, found again by key.
#[derive(Debug)]
struct Keyed<R> {
    rows: Vec<R>,
    index: HashMap<(String, String), usize>,
}

impl<R> Default for Keyed<R> {
    fn default() -> Self {
        Keyed {
            rows: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<R> Keyed<R> {
    /// The row of `(scene_id, id)`, made with `new` if there is none yet.
    fn entry(&mut self, scene_id: &str, id: &str, new: impl FnOnce() -> R) -> &mut R {
        let key = (scene_id.to_owned(), id.to_owned());
        let i = *self.index.entry(key).or_insert_with(|| {
            self.rows.push(new());
            self.rows.len() - 1
        });
        &mut self.rows[i]
    }
}

/// Every table of an export, filled by [`Tables::read`] line by line.
#[derive(Debug, Default)]
pub struct Tables {
    participants: Keyed<ParticipantRow>,
    /// `server_rtts.csv`.
    pub server_rtts: Vec<ServerRttRow>,
    probes: Keyed<ProbeRow>,
    games: Keyed<GameRow>,
    /// `game_players.csv`.
    pub game_players: Vec<GamePlayerRow>,
    /// `episodes.csv`.
    pub episodes: Vec<EpisodeRow>,
    /// `peer_metrics.csv`.
    pub peer_metrics: Vec<PeerMetricsRow>,
    /// `connections.csv`.
    pub connections: Vec<ConnectionRow>,
    /// `connection_events.csv`.
    pub connection_events: Vec<ConnectionEventRow>,
    /// `custom.csv`.
    pub custom: Vec<CustomRow>,
    /// Each participant's game-end reason, by (scene, subject), for [`ParticipantRow::ending`].
    game_end_of: HashMap<(String, String), String>,
}

fn parse<T: DeserializeOwned>(line: &Value) -> Option<T> {
    T::deserialize(line).ok()
}

fn participant(scene_id: &str, subject_id: &str) -> impl FnOnce() -> ParticipantRow {
    let (scene_id, subject_id) = (scene_id.to_owned(), subject_id.to_owned());
    move || ParticipantRow {
        scene_id,
        subject_id,
        ..ParticipantRow::default()
    }
}

/// Milliseconds from RFC 3339 time `from` to `to` (whole milliseconds, as the record's times
/// are; negative when `to` is earlier); `None` if either does not parse.
fn ms_between(from: &str, to: &str) -> Option<f64> {
    let t = |s: &str| humantime::parse_rfc3339(s).ok();
    let (from, to): (SystemTime, SystemTime) = (t(from)?, t(to)?);
    // Whole milliseconds: exact in an f64 for any span under 285,000 years.
    Some(match to.duration_since(from) {
        Ok(d) => d.as_millis() as f64,
        Err(e) => -(e.duration().as_millis() as f64),
    })
}

impl Tables {
    /// The participants, in the order they first appear.
    pub fn participants(&self) -> &[ParticipantRow] {
        &self.participants.rows
    }

    /// The probes, in the order they started.
    pub fn probes(&self) -> &[ProbeRow] {
        &self.probes.rows
    }

    /// The games, in the order they were created.
    pub fn games(&self) -> &[GameRow] {
        &self.games.rows
    }

    /// Takes one record line (a JSON object with an `event`).
    pub fn read(&mut self, line: &Value) -> Read {
        let Some(name) = line.get("event").and_then(Value::as_str) else {
            return Read::Malformed;
        };
        let Some(common) = parse::<Common>(line) else {
            return Read::Malformed;
        };
        let used = match kind_of(line) {
            Some(Kind::Custom) => self.custom(&common, line),
            Some(Kind::ParticipantOutcome) => self.outcome(&common, line),
            Some(kind) => self.known(kind, &common, line),
            None => return Read::Unknown(name.to_owned()),
        };
        if used.is_some() {
            Read::Used
        } else {
            Read::Malformed
        }
    }

    /// A line of a kind the server's [`Kind`] lists; `None` if its fields do not fit.
    fn known(&mut self, kind: Kind, c: &Common, line: &Value) -> Option<()> {
        let scene = c.scene_id.as_str();
        match kind {
            Kind::ParticipantJoined => {
                let j: Joined = parse(line)?;
                let p = self.participants.entry(
                    scene,
                    &j.subject_id,
                    participant(scene, &j.subject_id),
                );
                p.joined_ts.get_or_insert_with(|| c.ts.clone());
                p.joins += 1;
                p.resumes += u32::from(j.resumed);
            }
            Kind::ParticipantDropped => {
                let s: Subject = parse(line)?;
                self.participants
                    .entry(scene, &s.subject_id, participant(scene, &s.subject_id))
                    .drops += 1;
            }
            Kind::ServerRtt => {
                let r: ServerRtt = parse(line)?;
                self.participants
                    .entry(scene, &r.subject_id, participant(scene, &r.subject_id))
                    .server_rtt_median_ms = Some(r.median_ms);
                self.server_rtts.push(ServerRttRow {
                    ts: c.ts.clone(),
                    scene_id: c.scene_id.clone(),
                    subject_id: r.subject_id,
                    median_ms: r.median_ms,
                    samples: r.samples_ms.len(),
                    samples_ms: serde_json::to_string(&r.samples_ms).ok()?,
                });
            }
            Kind::ProbeStarted => {
                let s: ProbeStarted = parse(line)?;
                for member in &s.members {
                    self.participants
                        .entry(scene, member, participant(scene, member))
                        .probes += 1;
                }
                let row = self.probe_row(scene, &s.probe_session_id, &s.members);
                row.started_ts = Some(c.ts.clone());
                row.timeout_ms = s.timeout_ms;
            }
            Kind::ProbeResult => {
                let r: ProbeResult = parse(line)?;
                if !r.accepted {
                    for member in &r.members {
                        self.participants
                            .entry(scene, member, participant(scene, member))
                            .probes_rejected += 1;
                    }
                }
                let row = self.probe_row(scene, &r.probe_session_id, &r.members);
                row.decided_ts = Some(c.ts.clone());
                row.accepted = Some(r.accepted);
                row.reason = r.reason;
                row.rtt_ms = r.rtt_ms;
                row.max_p2p_rtt_ms = r.max_p2p_rtt_ms;
                row.ready_ms = r.ready_ms;
                row.duration_ms = r.duration_ms;
                let [initiator, responder] = r.reports;
                if let Some(rep) = initiator {
                    let path = MeasuredPath::of(&rep);
                    row.initiator_reported = true;
                    row.initiator_success = Some(rep.success);
                    row.initiator_rtt_ms = rep.rtt_ms;
                    row.initiator_stats_rtt_ms = rep.stats_rtt_ms;
                    row.initiator_samples = Some(rep.samples_ms.len());
                    row.initiator_received_ms = rep.received_ms;
                    [
                        row.initiator_connection_type,
                        row.initiator_local_candidate_type,
                        row.initiator_remote_candidate_type,
                        row.initiator_protocol,
                        row.initiator_relay_protocol,
                    ] = path.0;
                }
                if let Some(rep) = responder {
                    let path = MeasuredPath::of(&rep);
                    row.responder_reported = true;
                    row.responder_success = Some(rep.success);
                    row.responder_rtt_ms = rep.rtt_ms;
                    row.responder_stats_rtt_ms = rep.stats_rtt_ms;
                    row.responder_samples = Some(rep.samples_ms.len());
                    row.responder_received_ms = rep.received_ms;
                    [
                        row.responder_connection_type,
                        row.responder_local_candidate_type,
                        row.responder_remote_candidate_type,
                        row.responder_protocol,
                        row.responder_relay_protocol,
                    ] = path.0;
                }
            }
            Kind::GameCreated => {
                let g: GameCreated = parse(line)?;
                for (index, player) in g.players.iter().enumerate() {
                    let p = self
                        .participants
                        .entry(scene, player, participant(scene, player));
                    if p.game_id.is_none() {
                        p.game_id = Some(g.game_id.clone());
                        p.player_index = Some(index);
                        p.wait_to_game_ms =
                            p.joined_ts.as_deref().and_then(|j| ms_between(j, &c.ts));
                    }
                    self.game_players.push(GamePlayerRow {
                        scene_id: c.scene_id.clone(),
                        game_id: g.game_id.clone(),
                        player_index: index,
                        subject_id: player.clone(),
                    });
                }
                let max_p2p_rtt_ms = g.p2p_rtts_ms.iter().map(|p| p.rtt_ms).reduce(f64::max);
                let handover_pairs = g
                    .probes
                    .map(|probes| probes.iter().filter(|p| p.handover).count());
                let game = self.games.entry(scene, &g.game_id, GameRow::default);
                *game = GameRow {
                    scene_id: c.scene_id.clone(),
                    game_id: g.game_id,
                    created_ts: c.ts.clone(),
                    group_size: g.players.len(),
                    players: g.players.join(" "),
                    max_p2p_rtt_ms,
                    handover_pairs,
                    ..GameRow::default()
                };
            }
            Kind::GameEnded => {
                let e: GameEnded = parse(line)?;
                let game = self.games.entry(scene, &e.game_id, GameRow::default);
                if game.ended_ts.is_none() {
                    game.duration_ms = ms_between(&game.created_ts, &c.ts);
                    game.ended_ts = Some(c.ts.clone());
                    game.end_reason = Some(e.reason.clone());
                    game.ended_by_subject_id = e.subject_id;
                    for player in game.players.split(' ').filter(|p| !p.is_empty()) {
                        self.game_end_of
                            .entry((scene.to_owned(), player.to_owned()))
                            .or_insert_with(|| e.reason.clone());
                    }
                }
            }
            Kind::WaitroomTimeout => {
                let t: WaitroomTimeout = parse(line)?;
                let p = self.participants.entry(
                    scene,
                    &t.subject_id,
                    participant(scene, &t.subject_id),
                );
                p.waitroom_timeout = true;
                p.waited_ms = t.waited_ms;
            }
            Kind::ParticipantLeft => {
                let l: Left = parse(line)?;
                let p = self.participants.entry(
                    scene,
                    &l.subject_id,
                    participant(scene, &l.subject_id),
                );
                p.left_ts = Some(c.ts.clone());
                p.left_reason = Some(l.reason);
            }
            Kind::P2pConnectionType => {
                let t: ConnectionType = parse(line)?;
                self.connections.push(ConnectionRow {
                    ts: c.ts.clone(),
                    scene_id: c.scene_id.clone(),
                    game_id: t.game_id,
                    subject_id: t.subject_id,
                    peer_subject_id: t.peer_subject_id,
                    connection_type: t.connection.connection_type,
                    local_candidate_type: t.connection.local_candidate_type,
                    remote_candidate_type: t.connection.remote_candidate_type,
                    protocol: t.connection.protocol,
                    relay_protocol: t.connection.relay_protocol,
                    connect_ms: t.connect_ms,
                    setup: t.setup,
                    same_path_as_probe: t.same_path_as_probe,
                });
            }
            Kind::P2pQuality | Kind::P2pIceRestart | Kind::P2pConnectionFailed => {
                let e: ConnectionEvent = parse(line)?;
                if kind == Kind::P2pConnectionFailed {
                    self.games
                        .entry(scene, &e.game_id, GameRow::default)
                        .connection_failures += 1;
                }
                self.connection_events.push(ConnectionEventRow {
                    ts: c.ts.clone(),
                    scene_id: c.scene_id.clone(),
                    event: kind.as_str().to_owned(),
                    game_id: e.game_id,
                    subject_id: e.subject_id,
                    peer_subject_id: e.peer_subject_id,
                    level: e.level,
                    rtt_ms: e.rtt_ms,
                    attempt: e.attempt,
                    trigger: e.trigger,
                    outcome: e.outcome,
                    duration_ms: e.duration_ms,
                    attempts: e.attempts,
                });
            }
            Kind::EpisodeSummary => {
                let s: EpisodeSummary = parse(line)?;
                self.games
                    .entry(scene, &s.game_id, GameRow::default)
                    .episode_summaries += 1;
                self.episode(c, s);
            }
            // Known, with nothing of their own to tabulate: the group proposals and rejections
            // are in probes.csv (each probed pair), the server's start and stop in no table,
            // and kinds added later are read but not tabulated until a table takes them.
            _ => {}
        }
        Some(())
    }

    /// The probe row of `id`, with its members set.
    fn probe_row(&mut self, scene: &str, id: &str, members: &[String; 2]) -> &mut ProbeRow {
        let row = self.probes.entry(scene, id, || ProbeRow {
            scene_id: scene.to_owned(),
            probe_session_id: id.to_owned(),
            ..ProbeRow::default()
        });
        row.initiator_subject_id.clone_from(&members[0]);
        row.responder_subject_id.clone_from(&members[1]);
        row
    }

    fn episode(&mut self, c: &Common, s: EpisodeSummary) {
        for peer in s.peers.iter() {
            let conn = peer.connection.as_ref();
            let rtt = peer.rtt_ms.as_ref();
            self.peer_metrics.push(PeerMetricsRow {
                ts: c.ts.clone(),
                scene_id: c.scene_id.clone(),
                game_id: s.game_id.clone(),
                subject_id: s.subject_id.clone(),
                episode: s.episode,
                peer_subject_id: peer.peer_subject_id.clone(),
                peer_index: peer.peer_index,
                inputs_received: peer.inputs_received,
                connection_type: conn.map(|c| c.connection_type.clone()),
                local_candidate_type: conn.map(|c| c.local_candidate_type.clone()),
                remote_candidate_type: conn.map(|c| c.remote_candidate_type.clone()),
                protocol: conn.map(|c| c.protocol.clone()),
                relay_protocol: conn.and_then(|c| c.relay_protocol.clone()),
                rtt_min_ms: rtt.map(|r| r.min),
                rtt_median_ms: rtt.map(|r| r.median),
                rtt_max_ms: rtt.map(|r| r.max),
                rtt_samples: rtt.map(|r| r.samples),
                quality_changes: peer.quality_changes.len(),
                quality_changes_json: Value::from(peer.quality_changes.clone()).to_string(),
                ice_restarts: peer.ice_restarts,
                setup: peer.setup.clone(),
                same_path_as_probe: peer.same_path_as_probe,
            });
        }
        self.episodes.push(EpisodeRow {
            ts: c.ts.clone(),
            scene_id: c.scene_id.clone(),
            game_id: s.game_id,
            subject_id: s.subject_id,
            episode: s.episode,
            frames: s.frames,
            inputs_sent: s.inputs_sent,
            peers: s.peers.len(),
            hidden_count: s.hidden_count,
            hidden_ms: s.hidden_ms,
        });
    }

    fn custom(&mut self, c: &Common, line: &Value) -> Option<()> {
        let e: Custom = parse(line)?;
        self.custom.push(CustomRow {
            ts: c.ts.clone(),
            scene_id: c.scene_id.clone(),
            subject_id: e.subject_id,
            game_id: e.game_id,
            player_index: e.player_index,
            name: e.name,
            fields: Value::Object(e.fields).to_string(),
        });
        Some(())
    }

    fn outcome(&mut self, c: &Common, line: &Value) -> Option<()> {
        let o: ParticipantOutcome = parse(line)?;
        let scene = c.scene_id.as_str();
        self.participants
            .entry(scene, &o.subject_id, participant(scene, &o.subject_id))
            .outcome = Some(o.outcome);
        Some(())
    }

    /// Fills in what needs the whole record: each participant's [`ParticipantRow::ending`].
    pub fn finish(&mut self) {
        for p in &mut self.participants.rows {
            let game_end = self
                .game_end_of
                .get(&(p.scene_id.clone(), p.subject_id.clone()));
            p.ending = ending(p, game_end.map(String::as_str));
        }
    }

    /// Writes every table as `<name>.csv` into `dir`; returns each file with its row count.
    ///
    /// # Errors
    /// [`ExportError::Write`] with the file's path.
    pub fn write_csv(&self, dir: &Path) -> Result<Vec<(PathBuf, usize)>, ExportError> {
        let mut written = Vec::new();
        let mut put = |name: &str, result: Result<usize, csv::Error>| {
            let path = dir.join(format!("{name}.csv"));
            match result {
                Ok(rows) => {
                    written.push((path, rows));
                    Ok(())
                }
                Err(e) => Err(ExportError::Write {
                    path,
                    source: std::io::Error::other(e),
                }),
            }
        };
        put(
            "participants",
            write(dir, "participants", self.participants()),
        )?;
        put("server_rtts", write(dir, "server_rtts", &self.server_rtts))?;
        put("probes", write(dir, "probes", self.probes()))?;
        put("games", write(dir, "games", self.games()))?;
        put(
            "game_players",
            write(dir, "game_players", &self.game_players),
        )?;
        put("episodes", write(dir, "episodes", &self.episodes))?;
        put(
            "peer_metrics",
            write(dir, "peer_metrics", &self.peer_metrics),
        )?;
        put("connections", write(dir, "connections", &self.connections))?;
        put(
            "connection_events",
            write(dir, "connection_events", &self.connection_events),
        )?;
        put("custom", write(dir, "custom", &self.custom))?;
        Ok(written)
    }
}

/// How a participant's part ended, in one word (see docs/EXPORT.md, `ending`): the recorded
/// outcome when there is one; else a waitroom timeout; else the end of their game; else why
/// they left; else `unfinished`.
fn ending(p: &ParticipantRow, game_end: Option<&str>) -> String {
    if let Some(outcome) = &p.outcome {
        return outcome.clone();
    }
    if p.waitroom_timeout {
        return "waitroom_timeout".to_owned();
    }
    if p.game_id.is_some() {
        return match game_end {
            Some(reason) => format!("game_{reason}"),
            None => "game_not_ended".to_owned(),
        };
    }
    match &p.left_reason {
        Some(reason) => format!("left_{reason}"),
        None => "unfinished".to_owned(),
    }
}

/// Writes `rows` to `dir/<name>.csv` with a header row. The header is the row type's field
/// names, as serde gives them to `csv`; an empty table gets it from a default row.
fn write<R: Serialize + Default>(dir: &Path, name: &str, rows: &[R]) -> Result<usize, csv::Error> {
    let mut out = csv::Writer::from_path(dir.join(format!("{name}.csv")))?;
    if rows.is_empty() {
        let mut probe = csv::Writer::from_writer(Vec::new());
        probe.serialize(R::default())?;
        let bytes = probe
            .into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))?;
        let header = csv::Reader::from_reader(bytes.as_slice())
            .headers()?
            .clone();
        out.write_record(&header)?;
    }
    for row in rows {
        out.serialize(row)?;
    }
    out.flush()?;
    Ok(rows.len())
}
