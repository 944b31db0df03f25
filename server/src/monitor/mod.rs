//! What the live monitor page (`/monitor`, with `[server] monitor_token`) shows, derived in one
//! place.
//!
//! How the parts fit: one [`Monitor`] per server, a plain struct fed with events and the time
//! (no clock, no I/O here; the shell passes `Instant`s):
//! - **the research record**: [`Monitor::observe`] takes each line the record writer has
//!   written (the writer calls it, like [`crate::metrics::Metrics::observe`], through
//!   [`crate::record::RecordWriter::spawn_observed`]). From the lines it keeps, per scene, who
//!   waits and since when (`server_rtt` enters the waitroom; `match_proposed` takes members
//!   out to be probed, `match_rejected` puts them back with their place; `game_created`,
//!   `waitroom_timeout`, `participant_left` and `participant_outcome` end the wait), the
//!   probes in flight (`probe_started` → `probe_result`), accepted and rejected probes by
//!   reason, the running games with each connection's type and quality level
//!   (`p2p_connection_type`, `p2p_quality`; `game_ended` ends them), waitroom timeouts, a
//!   histogram of decided probes' P2P RTTs and one of the waits that ended in a game, and the
//!   last [`RECENT_EVENTS`] lines;
//! - **live counts of the core**: [`Monitor::set_waiting`], called by the core task with the
//!   per-scene waiting counts it publishes for `/metrics` too.
//!
//! [`Monitor::snapshot`] turns it into the JSON the page renders ([`Snapshot`]).
//!
//! Participants' ids are personal data: unless the researcher opts in
//! (`[server] monitor_subject_ids = true`), every subject id is shown as an alias, `W-<n>`,
//! numbered in order of first appearance, in the state and in the recent lines alike (where the
//! recruiter's parameters are left out too). An alias is stable while its participant is in the
//! study and forgotten at their `participant_left` (a subject seen again later gets a new
//! number), so the monitor holds what is live, not everyone the run has seen.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use pairlab_shared::SubjectId;
use serde::Serialize;

use crate::core::capacity::ShrinkWhenSparse;
use crate::core::ResearchEvent;
use crate::metrics::{label, P2P_RTT_BUCKETS_S};

/// How many of the last record lines the page lists.
pub const RECENT_EVENTS: usize = 50;

/// How many waiting participants the page lists per scene (the longest waiting first); the
/// count covers all of them.
pub const WAITING_SHOWN: usize = 100;

/// Bucket upper bounds of the wait-time histogram, ms (a last, open bucket holds the rest).
pub const WAIT_BUCKETS_MS: [f64; 10] = [
    1_000.0, 2_000.0, 5_000.0, 10_000.0, 20_000.0, 30_000.0, 60_000.0, 120_000.0, 300_000.0,
    600_000.0,
];

/// Keys of a record line whose strings are subject ids (at any depth below them).
const ID_KEYS: [&str; 5] = [
    "subject_id",
    "peer_subject_id",
    "members",
    "players",
    "failed_pairs",
];

/// A histogram with fixed bounds: `counts[i]` values ≤ `bounds_ms[i]` (and above the bound
/// before), the last count above every bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// Upper bounds of the buckets, ms, ascending.
    pub bounds_ms: Vec<f64>,
    /// Values per bucket; one more than `bounds_ms` (the open last bucket).
    pub counts: Vec<u64>,
}

impl Histogram {
    fn new(bounds_ms: Vec<f64>) -> Self {
        let counts = vec![0; bounds_ms.len() + 1];
        Histogram { bounds_ms, counts }
    }

    fn add(&mut self, value_ms: f64) {
        let i = self
            .bounds_ms
            .iter()
            .position(|b| value_ms <= *b)
            .unwrap_or(self.bounds_ms.len());
        self.counts[i] += 1;
    }
}

/// Where a participant of a scene is, as far as the record says.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    /// In the waitroom since `since`.
    Waiting { since: Instant },
    /// Proposed in a group (being probed); waiting since `since`.
    Proposed { since: Instant },
}

/// One live probe.
#[derive(Debug, Clone)]
struct Probe {
    members: [String; 2],
    started: Instant,
}

/// One game connection, from a reporter to a peer.
#[derive(Debug, Clone, Default)]
struct Link {
    connection_type: Option<String>,
    quality: Option<String>,
    rtt_ms: Option<f64>,
}

/// One running game.
#[derive(Debug, Clone)]
struct Game {
    players: Vec<String>,
    started: Instant,
    /// By (reporter alias, peer alias).
    links: BTreeMap<(String, String), Link>,
}

/// One scene's state.
#[derive(Debug, Clone)]
struct SceneState {
    id: String,
    waiting_now: usize,
    places: HashMap<SubjectId, Place>,
    probes: BTreeMap<String, Probe>,
    games: BTreeMap<String, Game>,
    probes_accepted: u64,
    probes_rejected: BTreeMap<String, u64>,
    games_created: u64,
    games_ended: BTreeMap<String, u64>,
    waitroom_timeouts: u64,
    p2p_rtt: Histogram,
    wait: Histogram,
}

impl SceneState {
    fn new(id: &str) -> Self {
        SceneState {
            id: id.to_owned(),
            waiting_now: 0,
            places: HashMap::new(),
            probes: BTreeMap::new(),
            games: BTreeMap::new(),
            probes_accepted: 0,
            probes_rejected: BTreeMap::new(),
            games_created: 0,
            games_ended: BTreeMap::new(),
            waitroom_timeouts: 0,
            p2p_rtt: Histogram::new(P2P_RTT_BUCKETS_S.iter().map(|s| s * 1000.0).collect()),
            wait: Histogram::new(WAIT_BUCKETS_MS.to_vec()),
        }
    }
}

/// One record line as the page lists it.
#[derive(Debug, Clone)]
struct Recent {
    scene_id: String,
    at: Instant,
    line: serde_json::Value,
}

/// The monitor's state (see the module docs).
#[derive(Debug, Clone)]
pub struct Monitor {
    show_subject_ids: bool,
    /// Subject id → alias, for the participants in the study (see the module docs).
    aliases: HashMap<String, String>,
    /// The number of the last alias given (`W-<n>`).
    last_alias: u64,
    scenes: Vec<SceneState>,
    recent: VecDeque<Recent>,
}

/// What the page renders, as sent on the stream (one JSON object per update).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Whether names are subject ids (`true`) or aliases.
    pub subject_ids: bool,
    /// Per scene, in the config's order.
    pub scenes: Vec<SceneView>,
    /// The last record lines, newest first.
    pub recent: Vec<RecentView>,
}

/// One scene in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SceneView {
    /// The scene.
    pub scene_id: String,
    /// Participants waiting to be matched now, as the core counts them (connected and in the
    /// waitroom).
    pub waiting_now: usize,
    /// Participants waiting by the record (in the waitroom, not proposed in a group).
    pub waiting_count: usize,
    /// Up to [`WAITING_SHOWN`] of them, the longest waiting first.
    pub waiting: Vec<WaiterView>,
    /// Probes in flight, oldest first.
    pub probes: Vec<ProbeView>,
    /// Probes decided accepted.
    pub probes_accepted: u64,
    /// Probes decided rejected, by reason (`rtt_too_high`, `measurement_failed`, `timeout`,
    /// `disconnected`).
    pub probes_rejected: BTreeMap<String, u64>,
    /// Running games, oldest first.
    pub games: Vec<GameView>,
    /// Games started.
    pub games_created: u64,
    /// Games ended, by reason.
    pub games_ended: BTreeMap<String, u64>,
    /// Participants whose waitroom deadline passed.
    pub waitroom_timeouts: u64,
    /// The P2P RTTs decided probes were judged on (`probe_result` `rtt_ms`).
    pub p2p_rtt_histogram: Histogram,
    /// From entering the waitroom to `game_created`.
    pub wait_histogram: Histogram,
}

/// One waiting participant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaiterView {
    /// Alias (or subject id, when opted in).
    pub who: String,
    /// How long they have waited so far, ms.
    pub waited_ms: u64,
}

/// One probe in flight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeView {
    /// The probe's id.
    pub probe_session_id: String,
    /// Its two members (aliases).
    pub members: [String; 2],
    /// Since `probe_started`, ms.
    pub running_ms: u64,
}

/// One running game.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GameView {
    /// The game's id.
    pub game_id: String,
    /// Its players (aliases), in player order.
    pub players: Vec<String>,
    /// Since `game_created`, ms.
    pub running_ms: u64,
    /// The connections reported so far.
    pub links: Vec<LinkView>,
}

/// One game connection as its reporter last described it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkView {
    /// The reporter (alias).
    pub from: String,
    /// The peer (alias).
    pub to: String,
    /// `direct` or `relay` (the record's `connection_type`); `null` until reported.
    pub connection_type: Option<String>,
    /// The last quality level (`ok`, `warning`, `critical`); `null` before the first.
    pub quality: Option<String>,
    /// The RTT of the last quality change, ms.
    pub rtt_ms: Option<f64>,
}

/// One recent record line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentView {
    /// Its scene.
    pub scene_id: String,
    /// How long ago it was written, ms.
    pub ago_ms: u64,
    /// The line (without `ts` and `scene_id`), ids replaced by aliases unless opted in.
    pub line: serde_json::Value,
}

fn ms_between(earlier: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(earlier).as_millis()).unwrap_or(u64::MAX)
}

impl Monitor {
    /// A monitor for these scenes; `show_subject_ids`: `[server] monitor_subject_ids`.
    pub fn new<'a>(scene_ids: impl IntoIterator<Item = &'a str>, show_subject_ids: bool) -> Self {
        Monitor {
            show_subject_ids,
            aliases: HashMap::new(),
            last_alias: 0,
            scenes: scene_ids.into_iter().map(SceneState::new).collect(),
            recent: VecDeque::with_capacity(RECENT_EVENTS),
        }
    }

    /// The name the page shows for `subject_id`: itself when opted in, else its alias
    /// (assigned on first sight).
    fn name(&mut self, subject_id: &str) -> String {
        if self.show_subject_ids {
            return subject_id.to_owned();
        }
        if let Some(alias) = self.aliases.get(subject_id) {
            return alias.clone();
        }
        self.last_alias += 1;
        let alias = format!("W-{}", self.last_alias);
        self.aliases.insert(subject_id.to_owned(), alias.clone());
        alias
    }

    /// Sets the participants waiting in each scene, as the core counts them (`(scene_id,
    /// waiting)`).
    pub fn set_waiting<'a>(&mut self, waiting: impl IntoIterator<Item = (&'a str, usize)>) {
        for (scene_id, n) in waiting {
            if let Some(s) = self.scenes.iter_mut().find(|s| s.id == scene_id) {
                s.waiting_now = n;
            }
        }
    }

    /// Takes one research record line of `scene_id`, written at `now`.
    pub fn observe(&mut self, now: Instant, scene_id: &str, event: &ResearchEvent) {
        let line = self.public_line(event);
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(Recent {
            scene_id: scene_id.to_owned(),
            at: now,
            line,
        });
        let Some(i) = self.scenes.iter().position(|s| s.id == scene_id) else {
            return;
        };
        let names = |m: &mut Self, ids: &[SubjectId]| -> Vec<String> {
            ids.iter().map(|id| m.name(id.as_str())).collect()
        };
        match event {
            ResearchEvent::ServerRtt { subject_id, .. } => {
                let since = match self.scenes[i].places.get(subject_id) {
                    Some(Place::Waiting { since } | Place::Proposed { since }) => *since,
                    None => now,
                };
                self.scenes[i]
                    .places
                    .insert(subject_id.clone(), Place::Waiting { since });
            }
            ResearchEvent::MatchProposed { members, .. } => {
                for m in members {
                    if let Some(p) = self.scenes[i].places.get_mut(m) {
                        if let Place::Waiting { since } = *p {
                            *p = Place::Proposed { since };
                        }
                    }
                }
            }
            ResearchEvent::MatchRejected { members, .. } => {
                for m in members {
                    if let Some(p) = self.scenes[i].places.get_mut(m) {
                        if let Place::Proposed { since } = *p {
                            *p = Place::Waiting { since };
                        }
                    }
                }
            }
            ResearchEvent::ProbeStarted {
                probe_session_id,
                members,
                ..
            } => {
                let names = names(self, members);
                let members = [names[0].clone(), names[1].clone()];
                self.scenes[i].probes.insert(
                    probe_session_id.as_str().to_owned(),
                    Probe {
                        members,
                        started: now,
                    },
                );
            }
            ResearchEvent::ProbeResult {
                probe_session_id,
                accepted,
                reason,
                rtt_ms,
                ..
            } => {
                let s = &mut self.scenes[i];
                s.probes.remove(probe_session_id.as_str());
                if *accepted {
                    s.probes_accepted += 1;
                } else {
                    let reason = reason.as_ref().map_or_else(|| "unknown".to_owned(), label);
                    *s.probes_rejected.entry(reason).or_default() += 1;
                }
                if let Some(rtt_ms) = rtt_ms {
                    s.p2p_rtt.add(*rtt_ms);
                }
            }
            ResearchEvent::GameCreated {
                game_id, players, ..
            } => {
                let names = names(self, players);
                let s = &mut self.scenes[i];
                for p in players {
                    if let Some(Place::Waiting { since } | Place::Proposed { since }) =
                        s.places.remove(p)
                    {
                        s.wait.add(ms_between(since, now) as f64);
                    }
                }
                s.games_created += 1;
                s.games.insert(
                    game_id.as_str().to_owned(),
                    Game {
                        players: names,
                        started: now,
                        links: BTreeMap::new(),
                    },
                );
            }
            ResearchEvent::P2pConnectionType {
                game_id,
                subject_id,
                peer_subject_id,
                connection,
                ..
            } => {
                let key = (
                    self.name(subject_id.as_str()),
                    self.name(peer_subject_id.as_str()),
                );
                if let Some(g) = self.scenes[i].games.get_mut(game_id.as_str()) {
                    g.links.entry(key).or_default().connection_type =
                        Some(label(&connection.connection_type));
                }
            }
            ResearchEvent::P2pQuality {
                game_id,
                subject_id,
                peer_subject_id,
                level,
                rtt_ms,
            } => {
                let key = (
                    self.name(subject_id.as_str()),
                    self.name(peer_subject_id.as_str()),
                );
                if let Some(g) = self.scenes[i].games.get_mut(game_id.as_str()) {
                    let link = g.links.entry(key).or_default();
                    link.quality = Some(label(level));
                    link.rtt_ms = *rtt_ms;
                }
            }
            ResearchEvent::GameEnded {
                game_id, reason, ..
            } => {
                let s = &mut self.scenes[i];
                s.games.remove(game_id.as_str());
                *s.games_ended.entry(label(reason)).or_default() += 1;
            }
            ResearchEvent::WaitroomTimeout { subject_id, .. } => {
                let s = &mut self.scenes[i];
                s.waitroom_timeouts += 1;
                s.places.remove(subject_id);
            }
            ResearchEvent::ParticipantLeft { subject_id, .. } => {
                self.scenes[i].places.remove(subject_id);
                // Their last line: the alias goes with them (the module docs).
                self.aliases.remove(subject_id.as_str());
                self.aliases.shrink_when_sparse();
            }
            ResearchEvent::ParticipantOutcome { subject_id, .. } => {
                self.scenes[i].places.remove(subject_id);
            }
            _ => {}
        }
    }

    /// The line as the page may show it: ids replaced by aliases and the recruiter's
    /// parameters left out, unless opted in.
    fn public_line(&mut self, event: &ResearchEvent) -> serde_json::Value {
        let mut line = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
        if !self.show_subject_ids {
            if let Some(object) = line.as_object_mut() {
                object.remove("recruiter");
            }
            self.hide_ids(&mut line, false);
        }
        line
    }

    /// Replaces subject ids in `value` by aliases: every string below an [`ID_KEYS`] key
    /// (`ids`), and elsewhere any string that is an id seen before.
    fn hide_ids(&mut self, value: &mut serde_json::Value, ids: bool) {
        match value {
            serde_json::Value::String(s) => {
                if ids {
                    *s = self.name(s);
                } else if let Some(alias) = self.aliases.get(s.as_str()) {
                    s.clone_from(alias);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    self.hide_ids(item, ids);
                }
            }
            serde_json::Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    let below = ids || ID_KEYS.contains(&key.as_str());
                    self.hide_ids(item, below);
                }
            }
            _ => {}
        }
    }

    /// What the page shows at `now`.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let scenes = self
            .scenes
            .iter()
            .map(|s| {
                let mut waiting: Vec<(Instant, &SubjectId)> = s
                    .places
                    .iter()
                    .filter_map(|(id, p)| match p {
                        Place::Waiting { since } => Some((*since, id)),
                        Place::Proposed { .. } => None,
                    })
                    .collect();
                let waiting_count = waiting.len();
                waiting.sort_unstable();
                waiting.truncate(WAITING_SHOWN);
                let mut probes: Vec<ProbeView> = s
                    .probes
                    .iter()
                    .map(|(id, p)| ProbeView {
                        probe_session_id: id.clone(),
                        members: p.members.clone(),
                        running_ms: ms_between(p.started, now),
                    })
                    .collect();
                probes.sort_by_key(|p| std::cmp::Reverse(p.running_ms));
                let mut games: Vec<GameView> = s
                    .games
                    .iter()
                    .map(|(id, g)| GameView {
                        game_id: id.clone(),
                        players: g.players.clone(),
                        running_ms: ms_between(g.started, now),
                        links: g
                            .links
                            .iter()
                            .map(|((from, to), l)| LinkView {
                                from: from.clone(),
                                to: to.clone(),
                                connection_type: l.connection_type.clone(),
                                quality: l.quality.clone(),
                                rtt_ms: l.rtt_ms,
                            })
                            .collect(),
                    })
                    .collect();
                games.sort_by_key(|g| std::cmp::Reverse(g.running_ms));
                SceneView {
                    scene_id: s.id.clone(),
                    waiting_now: s.waiting_now,
                    waiting_count,
                    waiting: waiting
                        .into_iter()
                        .map(|(since, id)| WaiterView {
                            who: self.shown(id.as_str()),
                            waited_ms: ms_between(since, now),
                        })
                        .collect(),
                    probes,
                    probes_accepted: s.probes_accepted,
                    probes_rejected: s.probes_rejected.clone(),
                    games,
                    games_created: s.games_created,
                    games_ended: s.games_ended.clone(),
                    waitroom_timeouts: s.waitroom_timeouts,
                    p2p_rtt_histogram: s.p2p_rtt.clone(),
                    wait_histogram: s.wait.clone(),
                }
            })
            .collect();
        let recent = self
            .recent
            .iter()
            .rev()
            .map(|r| RecentView {
                scene_id: r.scene_id.clone(),
                ago_ms: ms_between(r.at, now),
                line: r.line.clone(),
            })
            .collect();
        Snapshot {
            subject_ids: self.show_subject_ids,
            scenes,
            recent,
        }
    }

    /// The name shown for an id already seen (its alias), without assigning one.
    fn shown(&self, subject_id: &str) -> String {
        if self.show_subject_ids {
            return subject_id.to_owned();
        }
        self.aliases
            .get(subject_id)
            .cloned()
            .unwrap_or_else(|| "W-?".to_owned())
    }
}

#[cfg(test)]
mod tests;
