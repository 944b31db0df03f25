//! # pairlab-client: the participant's browser client
//!
//! pairlab matches participants of real-time browser experiments by measured latency. This
//! crate is everything that runs in the participant's browser, compiled to WebAssembly and
//! loaded by `www/pairlab.js`, the public JavaScript API (docs/CLIENT_API.md) that the
//! built-in page (`www/index.html`, `www/app.js`, `www/demo.js`) and a researcher's own page
//! both use. It speaks the wire protocol of `pairlab-shared` (PROTOCOL.md) over one
//! WebSocket, opens WebRTC DataChannels to other participants to measure peer-to-peer
//! round-trip times before a game is created, and then the game's own connection, over which
//! the page exchanges messages and the built-in lockstep loop runs.
//!
//! How the parts fit, from the bottom up:
//! - [`util`]: the page clock (`performance.now()`), console lines, JavaScript errors as text.
//! - [`signaling`]: the WebSocket to the server (`/ws`). Typed send of `ClientMessage`,
//!   receive of `ServerMessage` as a stream of events; answers every server `ping` with
//!   `pong` synchronously inside `onmessage`, so the server's RTT measurement is not inflated
//!   by this page's scheduling. Its [`signaling::Outbox`] (a function of one `ClientMessage`)
//!   is how probes and game connections send, to the socket or to a test.
//! - [`peer`]: the one wrapper of an `RTCPeerConnection`, used by probes and games alike:
//!   several DataChannels ([`peer::channel`]; text and binary messages), trickle ICE with
//!   buffering of early remote candidates, offer/answer and the ICE restart offer,
//!   `connectionState` and `iceConnectionState`, and `getStats()` → the selected candidate
//!   pair, its candidate types and its `currentRoundTripTime` in ms ([`peer::stats`]). Every
//!   browser listener is owned by the Rust struct and fed into async Rust through
//!   `futures::channel::mpsc`; dropping it closes everything.
//! - [`probe`]: [`probe::ProbeManager`] runs one [`probe::ProbeConnection`] (a [`peer::Peer`])
//!   per `probe_session_id` (several at once for groups larger than two): `probe_prepare` →
//!   `probe_ready`, `probe_start` → offer/answer/candidates as `probe_signal`, DataChannel
//!   ping/pong timed with `performance.now()` → `probe_result`, then close — or, for a probe
//!   kept for the game (`keep_ms`), park the connection with the game's channels open. The
//!   pure parts (message format, ping pacing and lost-ping replacement, median, client
//!   deadline) are in [`probe::wire`].
//! - [`handover`]: what passes from a probe to the game when the server hands the probe's
//!   connection over (the game channels' labels and ids, the parked connection, how each
//!   peer's game connection is set up), so that `probe` and `game` need not know each other.
//! - [`game`]: after `game_start`, the game. [`game::WebRtcManager`] is the game connection
//!   to one peer (the handed-over probe connection, or a fresh [`peer::Peer`] with ICE
//!   servers and `force_relay` from `game_start`, an
//!   unordered `inputs` and a reliable `control` DataChannel, `p2p_connection_type`, the
//!   quality monitor with `p2p_quality`, ICE restarts with `p2p_ice_restart` /
//!   `p2p_connection_failed`), timed by the pure [`game::policy::ConnectionPolicy`].
//!   [`game::Game`] holds the connections to every peer, reports what happens to them, sends
//!   the researcher's strings and bytes ([`game::framing`] keeps them apart from pairlab's own
//!   packets), and runs the built-in loop ([`game::Game::play`]: frames, redundant inputs
//!   with an input delay, episodes with their `episode_summary`) for a [`game::GameLogic`].
//!   The loop's pure parts are in [`game::logic`]. `game` and `probe` do not depend on each
//!   other (both use [`handover`]).
//! - [`session`]: a participant's session, the API's engine: who the participant is
//!   ([`session::identity`]), `hello` (with the resume token, the recruiter's URL parameters
//!   and the browser check), reconnects, the page's visibility (`attention`), the probes and
//!   the game, each step reported as a [`session::events::SessionEvent`]; the client-side
//!   rules of `record` and `finish` are in [`session::rules`].
//!   [`session::api::WasmSession`] is the class `www/pairlab.js` wraps.
//!
//! No closure is ever forgotten (leaked): probes are built and torn down again and again, so
//! every browser listener is a `gloo_events::EventListener` with an owner; dropping it removes
//! the listener and frees its closure.
//!
//! Build the page's module with (from the workspace root)
//! `wasm-pack build --target web --release --mode no-install client-wasm --out-dir ../www/pkg --no-typescript`
//! (`.cargo/config.toml` optimises every crate of it for size);
//! test the browser parts with `wasm-pack test --headless --chrome --mode no-install client-wasm --test probe`
//! (and `--test handover`, `--test session`, and `--test game`, which needs `eval "$(scripts/coturn-test.sh start)"` first for its
//! relay test),
//! and the pure parts natively with `cargo test -p pairlab-client`.

#![warn(missing_docs)]

pub mod game;
pub mod handover;
pub mod peer;
pub mod probe;
pub mod session;
pub mod signaling;
pub mod util;

pub use session::api::WasmSession;
