//! The sans-IO heart of the server: waitroom, matchmaking, probing and games as one state
//! machine.
//!
//! No sockets, no tokio, no clock, no randomness of its own. The shell (the `net` module) builds
//! the [`Core`] with a [`CoreClock`] (which Unix time its monotonic origin stands for) and an
//! [`IdSource`] ([`RandomIds`] in the server, [`SeededIds`] for reproducible runs), turns
//! WebSocket frames into [`Event`]s, calls [`Core::handle`] with the time the event happened, and
//! carries out the [`Action`]s it gets back: frames to send, sockets to close, lines for the
//! research record. Between events it sleeps until [`Core::next_deadline`] and then calls
//! [`Core::handle`] with [`Event::Tick`]. Timeouts are therefore tested by passing a later `now`,
//! with no sleeping; the same events with the same seed give the same actions.
//!
//! Components, one job each:
//! - [`router`]: the [`Core`]: connections, participants and timers; routes each event to the
//!   component whose job it is and acts on what it decides. Its `sessions` submodule holds
//!   the participant's session (hello, resume, server RTT, leave, drop, grace), its `matching`
//!   submodule the way from the waitroom to a game (proposals, and acting on verdicts).
//! - [`waitroom`]: one scene's waitroom: each participant's place (FIFO position, deadline),
//!   the waiting set, coalesced counts, sessions by subject, the done set, the failed pairs;
//!   runs the scene's matchmaker.
//! - [`matchmaker`]: the `Matchmaker` trait, `FifoMatchmaker` and `LatencyFifoMatchmaker`: who
//!   may be grouped, by server RTT.
//! - [`probe`]: the `ProbeCoordinator`: probe sessions (ready/start/signal/result, deadlines),
//!   one probe round per proposed group, and the group's verdict against `max_p2p_rtt_ms`.
//! - [`games`]: started games: signal relay, report validation, bounds and recording, end of a
//!   game; ended games are forgotten a minute later.
//! - [`remembered`]: what each scene's done set and failed pairs hold (keyed fingerprints of
//!   subject ids and pairs, their caps) and their rebuilding from the research record at start
//!   ([`DoneState`], [`Core::restore`]).
//! - [`fingerprint_set`]: the compact, bounded set both are kept in (Elias–Fano eras of 43-bit
//!   prefixes, a stated false-positive rate).
//! - [`outcomes`]: what each outcome says (`outcome`: code, filled URL, message) and which
//!   ones `finish` may claim; the router's `study` submodule decides who gets which, and
//!   also holds `record`, `attention` and the attention rule, and the entry rules.
//! - [`ice`]: the ICE servers per participant and TURN REST credential minting.
//! - [`link`]: signed participant links (`[server] link_secret`): sign, verify.
//! - [`capacity`]: giving back the spare room of maps and queues after a burst (ended games,
//!   probe tombstones, connections, sessions), so a server's memory does not keep its busiest
//!   minute.
//! - [`ids`]: the handles [`ConnId`], [`Pid`], [`GroupId`] and the [`IdSource`]s.
//! - [`rtt`]: server-RTT samples → median; the per-connection ping schedule.
//! - [`ratelimit`]: the per-connection frame rate limit.
//! - [`research`]: what the research record holds.
//!
//! Components never call back into the router: they return what to send and record
//! ([`Effect`]s, or their own result types) and the router carries it out. How a `probe_result`
//! flows, in one direction only:
//! 1. `router/mod.rs` gets [`Event::Message`] with it and hands it to
//!    [`probe::ProbeCoordinator::handle_result`];
//! 2. `probe.rs` stores the report; with both reports in, it ends the probe, judges the pair
//!    ([`probe::judge_pair`]: a failure, or the larger RTT against `max_p2p_rtt_ms`) and folds
//!    it into the group's round, which yields a [`probe::Verdict`] once every pair is judged
//!    (or at once when a member disconnected); it returns a [`probe::PairJudged`];
//! 3. `router/matching.rs` writes its `probe_result` line and acts on the verdict: `Accepted`
//!    → `games/` starts the game; `Rejected` → `waitroom.rs` remembers the failed pairs and
//!    the members return to waiting (and are matched again).
//!
//! Probe deadlines (`Event::Tick` → [`probe::ProbeCoordinator::expire`]) and disconnects
//! ([`probe::ProbeCoordinator::fail_member`]) take the same path from step 2.

pub mod candidates;
pub mod capacity;
pub mod connection;
pub mod fingerprint_set;
pub mod games;
pub mod ice;
pub mod ids;
pub mod link;
pub mod matchmaker;
pub mod matrix;
pub mod outcomes;
pub mod probe;
pub mod ratelimit;
pub mod remembered;
pub mod research;
pub mod router;
pub mod rtt;
pub mod waitroom;

#[cfg(test)]
mod tests;

use std::time::Instant;

use pairlab_shared::{ClientMessage, DecodeError, ServerMessage};

pub use ids::{ConnId, GroupId, IdSource, Pid, RandomIds, SeededIds};
pub use remembered::DoneState;
pub use research::ResearchEvent;
pub use router::{Core, CoreStats, MemoryStats};

/// The core's only link to the wall clock, fixed when it is built: the monotonic `origin` and
/// the Unix time, s, it stands for. The core dates minted TURN credentials with it
/// (`origin_unix_s + (now − origin)`); it never reads a clock itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreClock {
    /// A monotonic instant, normally the server's start.
    pub origin: Instant,
    /// The Unix time at `origin`, s.
    pub origin_unix_s: u64,
}

impl CoreClock {
    /// The Unix time, s (whole seconds, rounded down), at `now`.
    pub fn unix_s_at(&self, now: Instant) -> u64 {
        self.origin_unix_s + now.saturating_duration_since(self.origin).as_secs()
    }
}

/// What a component asks the router to do, addressed by participant and scene; the router
/// turns each into an [`Action`] at once, in order (a send to a participant without a
/// connection is dropped).
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send one message to a participant.
    Send(Pid, ServerMessage),
    /// Append one line to the research record of a scene (index into the config's scenes).
    Record(usize, ResearchEvent),
}

/// Something that happened, for [`Core::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A WebSocket opened. Nothing is sent until the client's `hello`.
    Connected {
        /// The new connection.
        conn: ConnId,
    },
    /// A frame that decoded into a message. `pong` is answered by the shell's ping schedule
    /// after `welcome` and reaches the core as [`Event::RttSample`]; a `pong` here (before
    /// `hello`) is a protocol error.
    Message {
        /// From whom.
        conn: ConnId,
        /// What.
        msg: ClientMessage,
    },
    /// A frame that did not decode.
    Malformed {
        /// From whom.
        conn: ConnId,
        /// Why it did not decode.
        error: DecodeError,
    },
    /// One server-RTT measurement: the time from writing a `ping` to reading its `pong`, on the
    /// shell's monotonic clock, ms.
    RttSample {
        /// Whose.
        conn: ConnId,
        /// The round trip, ms.
        rtt_ms: f64,
    },
    /// The WebSocket closed (by the peer, by an error, or after an [`Action::Close`]).
    Disconnected {
        /// Which.
        conn: ConnId,
    },
    /// Time passed: fire every deadline at or before `now`.
    Tick,
    /// The server is shutting down. The core records, per scene, `server_stopping` and then a
    /// `participant_left` with reason `server_shutdown` for every live session (connected or in
    /// its grace), and from then on ignores every event and has no deadline: the disconnects
    /// of the shutdown are not recorded as drops. The shell sends it before it closes the
    /// sockets.
    Shutdown,
}

/// Something for the shell to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send one message on a connection.
    Send {
        /// To whom.
        conn: ConnId,
        /// What.
        msg: ServerMessage,
    },
    /// Close a connection (normal closure, 1000) after the sends queued before this. The shell
    /// answers with [`Event::Disconnected`] once it is closed; the core ignores that event for
    /// connections it closed itself.
    Close {
        /// Which.
        conn: ConnId,
    },
    /// Append one line to the research record of a scene.
    Record {
        /// The scene's id: the record lives in `<data-dir>/<scene_id>/events.jsonl`.
        scene_id: String,
        /// The event.
        event: ResearchEvent,
    },
}
