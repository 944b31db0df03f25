//! The sans-IO heart of the server: waitroom, matchmaking and probing as one state machine.
//!
//! No sockets, no tokio, no wall clock. The shell (the `net` module) turns WebSocket frames into
//! [`Event`]s, calls [`Core::handle`] with the time the event happened, and carries out the
//! [`Action`]s it gets back: frames to send, sockets to close, lines for the research record.
//! Between events it sleeps until [`Core::next_deadline`] and then calls [`Core::handle`] with
//! [`Event::Tick`]. Timeouts are therefore tested by passing a later `now`, with no sleeping.
//!
//! - [`matchmaker`]: the `Matchmaker` trait, `FifoMatchmaker` and `LatencyFifoMatchmaker`.
//! - [`probe`]: the `ProbeCoordinator`: probe sessions, ready/start/signal/result, deadlines.
//! - [`rtt`]: server-RTT samples → median; the per-connection ping schedule.
//! - [`lobby`]: sessions, waitrooms, deadlines, failed pairs, groups, games: the [`Core`].
//! - [`research`]: what the research record holds.

pub mod connection;
pub mod lobby;
pub mod matchmaker;
pub mod probe;
pub mod ratelimit;
pub mod research;
pub mod rtt;

#[cfg(test)]
mod tests;

use pairlab_shared::{ClientMessage, DecodeError, ServerMessage};

pub use lobby::Core;
pub use research::ResearchEvent;

/// Identifies one WebSocket connection for the life of the server process. Minted by the shell,
/// never reused.
pub type ConnId = u64;

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
