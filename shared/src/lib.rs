//! # pairlab-shared: the wire protocol
//!
//! pairlab pairs participants of browser experiments by measured latency. Server and browser
//! talk over one WebSocket per participant, in JSON text frames; this crate is that protocol as
//! Rust types, compiled into both the server (native) and the browser client (wasm32), so the
//! two cannot drift apart. It does no I/O.
//!
//! - [`ids`]: `subject_id` (validated; never sent to another participant), the
//!   [`PlayerIndex`] by which group members name each other, and the server-minted
//!   `probe_session_id` and `game_id`.
//! - [`messages`]: [`ClientMessage`] (browser → server) and [`ServerMessage`] (server →
//!   browser), one struct per message, and the [`ErrorCode`]s.
//! - [`stats`]: [`stats::median`], the one summary of RTT samples both ends use.
//! - [`decode`]: [`ClientMessage::decode`], which turns an untrusted frame into a message or a
//!   [`DecodeError`] that maps onto the protocol's error codes.
//!
//! The specification is `PROTOCOL.md` in the repository (kept beside the code, in the project's
//! `docs/`); every message there has a test in `tests/wire.rs` that pins its exact JSON.

pub mod decode;
pub mod ids;
pub mod messages;
pub mod stats;

pub use decode::{
    DecodeError, CLIENT_MESSAGE_TYPES, MAX_ICE_RESTART_ATTEMPTS, MAX_PEERS, MAX_PROBE_SAMPLES,
    MAX_QUALITY_CHANGES,
};
pub use ids::{
    is_initiator, GameId, InvalidSubjectId, PlayerIndex, ProbeSessionId, SubjectId,
    SUBJECT_ID_MAX_LEN,
};
pub use messages::*;

/// The protocol version this crate implements (PROTOCOL.md's title).
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest text frame either side may send, bytes. Larger frames close the connection with
/// WebSocket close code 1009 ("message too big", RFC 6455 §7.4.1).
pub const MAX_FRAME_BYTES: usize = 65_536;
