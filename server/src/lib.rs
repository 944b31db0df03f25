//! # pairlab-server
//!
//! The server of pairlab: it serves the participants' page and the wasm client, measures each
//! participant's server RTT, keeps them in a per-scene waitroom, proposes groups with a
//! latency-aware matchmaker, verifies each pair with a real WebRTC probe between their
//! browsers, starts games, and writes every decision to the research record.
//!
//! - [`config`]: the researcher's TOML (scenes, ICE servers) → validated [`config::Config`].
//! - [`core`]: the sans-IO state machine (waitroom, matchmakers, probe coordinator). All the
//!   rules live here; it is driven by events and a clock passed in.
//! - [`net`]: the warp/tokio shell: static assets, `/healthz`, `/ws`, one task per connection,
//!   one task owning the core.
//! - [`record`]: the research record writer (`<data-dir>/<scene_id>/events.jsonl`): whole lines
//!   only, synced within a second, its health shown by `/healthz`.
//! - [`assets`]: the page and wasm client embedded in the binary.
//! - [`export`]: `pairlab export`, the record as CSV tables and an offline HTML report.
//! - [`healthcheck`]: `pairlab healthcheck`, a container's HEALTHCHECK against `/healthz`.
//! - [`metrics`]: the Prometheus metrics `/metrics` serves (with `[server] metrics_token`).
//! - [`monitor`]: what the live monitor page `/monitor` shows (with `[server] monitor_token`).

pub mod assets;
pub mod config;
pub mod core;
pub mod export;
pub mod healthcheck;
pub mod metrics;
pub mod monitor;
pub mod net;
pub mod record;
