//! The accepted probe's connection handed to the game (PROTOCOL.md, "Handover: the probe's
//! connection becomes the game's"): what passes from [`crate::probe`] to [`crate::game`]
//! without either depending on the other.
//!
//! - [`GAME_CHANNELS`]: the game's two DataChannels, their labels, delivery and the fixed
//!   SCTP stream ids of `pairlab-shared` ([`GAME_INPUTS_CHANNEL_ID`],
//!   [`GAME_CONTROL_CHANNEL_ID`]). A probe prepared with `keep_ms` creates them on its
//!   connection as negotiated channels before any offer ([`create_negotiated_game_channels`]),
//!   so they open with the probe's SCTP association on both sides.
//! - [`ParkedPeer`]: a probe connection after its successful `probe_result`, kept (parked)
//!   by the [`crate::probe::ProbeManager`] with its events and the candidate pair the probe
//!   measured ([`MeasuredPath`]).
//! - [`GamePath`]: how `game_start` sets up the game connection to one peer: adopt a parked
//!   connection, or open a fresh one (with the probe's measured path, when known, to say
//!   whether the game's path is the same). The session asks the probe manager for these
//!   ([`crate::probe::ProbeManager::hand_over`]) and gives them to [`crate::game::Game::start`].

use std::collections::HashMap;

use futures::channel::mpsc;
use pairlab_shared::{
    ConnectionInfo, PlayerIndex, GAME_CONTROL_CHANNEL_ID, GAME_INPUTS_CHANNEL_ID,
};
use web_sys::RtcPeerConnectionState;

use crate::peer::{Delivery, Peer, PeerError, PeerEvent};

/// Label of the game's unordered, unreliable inputs channel.
pub const INPUTS_LABEL: &str = "inputs";
/// Label of the game's reliable, ordered control channel.
pub const CONTROL_LABEL: &str = "control";

/// The game's DataChannels: label, delivery, and the SCTP stream id they have when created
/// as negotiated channels on a probe connection (PROTOCOL.md `probe_prepare.keep_ms`).
/// `inputs`: unordered, `maxRetransmits: 0` (a late input is useless); `control`: reliable
/// and ordered.
pub const GAME_CHANNELS: [(&str, Delivery, u16); 2] = [
    (
        INPUTS_LABEL,
        Delivery::Unordered { max_retransmits: 0 },
        GAME_INPUTS_CHANNEL_ID,
    ),
    (CONTROL_LABEL, Delivery::Reliable, GAME_CONTROL_CHANNEL_ID),
];

/// Whether `label` is one of the game's channels.
pub fn is_game_channel(label: &str) -> bool {
    GAME_CHANNELS.iter().any(|(l, _, _)| *l == label)
}

/// Creates both game channels on `peer` as negotiated channels with their fixed ids.
///
/// # Errors
/// As [`Peer::create_negotiated_channel`].
pub fn create_negotiated_game_channels(peer: &mut Peer) -> Result<(), PeerError> {
    for (label, delivery, id) in GAME_CHANNELS {
        peer.create_negotiated_channel(label, delivery, id)?;
    }
    Ok(())
}

/// The path a probe measured: its selected candidate pair.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeasuredPath {
    /// The `candidate-pair` stats id (`transport.selectedCandidatePairId`).
    pub pair_id: Option<String>,
    /// The pair's candidate types and protocols.
    pub info: Option<ConnectionInfo>,
}

/// A probe connection kept for a game after its successful `probe_result`.
///
/// Its probe's own loop is gone; the echo of the peer's pings stays in the channels' hook
/// until the game replaces it (the peer may still be measuring when this side parks).
/// Events that arrive meanwhile (state changes, the game's first messages from a peer that
/// adopted first) wait in `events` for the game. Dropping it closes the connection.
pub struct ParkedPeer {
    /// The connection, its probe channel and the two game channels.
    pub peer: Peer,
    /// Its events since the probe's loop stopped.
    pub events: mpsc::UnboundedReceiver<PeerEvent>,
    /// What the probe measured.
    pub measured: MeasuredPath,
}

impl ParkedPeer {
    /// Whether the game can still adopt it: not closed or failed, both game channels open.
    pub fn is_usable(&self) -> bool {
        !self.peer.is_closed()
            && !matches!(
                self.peer.raw().connection_state(),
                RtcPeerConnectionState::Closed | RtcPeerConnectionState::Failed
            )
            && GAME_CHANNELS
                .iter()
                .all(|(label, _, _)| self.peer.is_channel_open(label))
    }
}

/// How `game_start` sets up the game connection to one peer.
pub enum GamePath {
    /// `probes[].handover` and the parked connection is usable: it becomes the game's.
    Adopt(ParkedPeer),
    /// A new connection.
    Fresh {
        /// This page does not have the pair's probe connection although the peer may hold
        /// its side: `probes[].handover` was true but the connection is gone or unusable
        /// (an expiry, a close), or this page never ran the named probe (a reload, a new
        /// signalling connection: the server then says `handover: false`). It sends the offer
        /// itself, whatever the initiator rule, so that the peer replaces its side.
        offer_anyway: bool,
        /// The path the pair's probe measured, when this side knows it.
        probe: Option<ConnectionInfo>,
    },
}

/// [`GamePath`] per peer by player index; a peer not in it gets a fresh connection with the
/// usual initiator rule.
pub type GamePaths = HashMap<PlayerIndex, GamePath>;

/// The DTLS certificate fingerprints (`a=fingerprint:` lines, RFC 8122 §5) of an SDP, without
/// the attribute name, sorted and each once (session or media level alike). Two descriptions with different fingerprints come from
/// different `RTCPeerConnection`s (each has its own certificate): an offer on a handed-over
/// connection whose fingerprints differ from the remote description's is a new page's.
pub fn dtls_fingerprints(sdp: &str) -> Vec<&str> {
    let mut found: Vec<&str> = sdp
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=fingerprint:"))
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_connections_apart() {
        let a = "v=0\r\na=fingerprint:sha-256 AA:BB\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=fingerprint:sha-256 AA:BB\r\n";
        let restart = "v=0\r\na=ice-ufrag:new\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=fingerprint:sha-256 AA:BB\r\na=fingerprint:sha-256 AA:BB\r\n";
        let other = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=fingerprint:sha-256 CC:DD\r\n";
        assert_eq!(dtls_fingerprints(a), vec!["sha-256 AA:BB"]);
        assert_eq!(dtls_fingerprints(a), dtls_fingerprints(restart));
        assert_ne!(dtls_fingerprints(a), dtls_fingerprints(other));
        assert!(dtls_fingerprints("v=0\r\n").is_empty());
    }

    #[test]
    fn the_game_channels_have_the_protocol_ids() {
        assert_eq!(
            GAME_CHANNELS[0],
            (INPUTS_LABEL, Delivery::Unordered { max_retransmits: 0 }, 1)
        );
        assert_eq!(GAME_CHANNELS[1], (CONTROL_LABEL, Delivery::Reliable, 2));
        assert!(is_game_channel("inputs") && is_game_channel("control"));
        assert!(!is_game_channel("pairlab-probe"));
    }
}
