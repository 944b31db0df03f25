//! One probe: a WebRTC connection to one peer (a [`Peer`] with the channel
//! [`PROBE_CHANNEL_LABEL`], whose pings are echoed inside `onmessage`) that measures the
//! peer-to-peer RTT and reports it (PROTOCOL.md, Probe). Prepared with `keep_ms`, it also
//! carries the game's two negotiated channels from the start and, after a successful
//! result, is parked for the game instead of closed ([`crate::handover`]).

use std::rc::Rc;

use futures::channel::mpsc;
use futures::future::{self, Either};
use futures::stream::FuturesUnordered;
use futures::{pin_mut, FutureExt, StreamExt};
use gloo_timers::future::TimeoutFuture;
use pairlab_shared::{
    ClientMessage, ConnectionInfo, IceServer, PlayerIndex, ProbeResult, ProbeSessionId,
    ProbeSignalOut, SignalPayload, SignalType,
};
use web_sys::{RtcPeerConnection, RtcPeerConnectionState};

use super::wire::{
    client_deadline_ms, echo, path_rtt_ms, PingPacer, PongVerdict, ProbeWire, SAMPLE_COUNT,
};
use crate::handover::{create_negotiated_game_channels, MeasuredPath, ParkedPeer};
use crate::peer::{
    Announced, CandidateAdded, ChannelData, Delivery, Hooked, MessageHook, Peer, PeerConfig,
    PeerError, PeerEvent,
};
use crate::signaling::Outbox;
use crate::util::{now_ms, warn};

/// Label of the probe's DataChannel.
pub const PROBE_CHANNEL_LABEL: &str = "pairlab-probe";

/// How often, and how far apart, `getStats` is read again when the selected pair has no
/// `currentRoundTripTime` yet.
const STATS_ATTEMPTS: u32 = 5;
const STATS_RETRY_MS: u32 = 10;

/// What a probe is, from `probe_prepare`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The probe's id.
    pub probe_session_id: ProbeSessionId,
    /// The other member, by player index (PROTOCOL.md: peers never see each other's
    /// `subject_id`).
    pub peer_index: PlayerIndex,
    /// STUN/TURN servers.
    pub ice_servers: Vec<IceServer>,
    /// The server's deadline, ms after `probe_prepare`; the client stops a little earlier
    /// ([`client_deadline_ms`]).
    pub timeout_ms: u64,
    /// TURN relay only (`iceTransportPolicy: "relay"`): `probe_prepare.force_relay`, the
    /// scene's `force_relay`, so that the probe measures the path its game will use.
    pub relay_only: bool,
    /// `probe_prepare.keep_ms`: the connection carries the game's channels and, after a
    /// successful result, is parked for up to this long (ms) for the game to adopt.
    pub keep_ms: Option<u64>,
}

/// What the server tells a running probe.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeCommand {
    /// `probe_start`: both sides are ready; the initiator creates the DataChannel and offers.
    Start {
        /// Whether this side sends the offer.
        initiator: bool,
    },
    /// A `probe_signal` from the peer.
    Signal {
        /// What the payload is.
        signal_type: SignalType,
        /// The SDP or candidate; `None` ends the candidates.
        payload: Option<SignalPayload>,
    },
}

/// Why the event loop stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    /// Reported, and both sides are done (or the channel closed after our report).
    Done,
    /// Reported success with `keep_ms`: the connection is parked for the game.
    Park,
    /// Failed before a report, for this reason.
    Failed(String),
    /// The manager dropped the probe (the server ended it): close without a result.
    Cancelled,
    /// The client deadline passed first (described, then treated as a failure).
    Deadline,
}

/// How a probe ended, for logs and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutcome {
    /// The `probe_result` sent to the server.
    pub result: ProbeResult,
    /// Why it failed, when `result.success` is false.
    pub failure: Option<String>,
    /// Whether `result` was sent (not when the server ended the probe first).
    pub reported: bool,
    /// From the probe's creation (`probe_prepare`) to sending `probe_result`, ms.
    pub reported_after_ms: f64,
    /// From the probe's creation to closing (or parking) the connection, ms.
    pub closed_after_ms: f64,
    /// Whether the connection was parked for the game rather than closed.
    pub parked: bool,
}

/// One probe connection. Built at `probe_prepare`; [`ProbeConnection::run`] then drives it
/// to a `probe_result` and closes it.
///
/// The measurement (both sides alike, once the DataChannel is open): at least [`SAMPLE_COUNT`]
/// pings, more within the sampling window on a short path, paced by a [`PingPacer`] (back to
/// back on a fast path, overlapping on a slow one), timed
/// with `performance.now()`; `rtt_ms` is the smallest ([`path_rtt_ms`]); `stats_rtt_ms` the selected pair's
/// `currentRoundTripTime`. Then `probe_result` goes out and a
/// [`ProbeWire::Done`] goes to the peer; the connection closes once the peer's `done` arrived
/// too (so neither side cuts the other's measurement short), or the channel closed, or the
/// client deadline passed. A kept probe (`keep_ms`) with a successful result instead parks
/// its connection at once, after its `done` (see `ProbeConnection::parking`). A deadline or
/// failure before the result sends `success: false` with whatever samples were taken.
pub struct ProbeConnection {
    spec: ProbeSpec,
    peer: Peer,
    events: Option<mpsc::UnboundedReceiver<PeerEvent>>,
    created_at_ms: f64,
    samples: Vec<f64>,
    stats_rtt_ms: Option<f64>,
    /// The selected candidate pair the samples went over (`probe_result.connection`).
    connection: Option<ConnectionInfo>,
    /// That pair's stats id.
    pair_id: Option<String>,
    /// `addIceCandidate` calls made, whose outcomes are still to come.
    candidate_adds: FuturesUnordered<CandidateAdded>,
    pacer: PingPacer,
    opened: bool,
    reported: bool,
    reported_at_ms: f64,
    peer_done: bool,
}

impl ProbeConnection {
    /// Builds the `RTCPeerConnection` for `spec` (pings from the peer are echoed from here on).
    ///
    /// # Errors
    /// [`PeerError::Create`] when the browser refuses the ICE configuration.
    pub fn new(spec: ProbeSpec) -> Result<Self, PeerError> {
        let config = PeerConfig {
            ice_servers: spec.ice_servers.clone(),
            relay_only: spec.relay_only,
            // Gather now, while the server waits for both `probe_ready`s: the TURN allocation
            // (~1 RTT to the TURN server + ~70 ms measured relayed) leaves the critical path.
            ice_candidate_pool_size: 1,
            announced: Announced::Only(&[PROBE_CHANNEL_LABEL]),
        };
        // Pings are answered inside `onmessage`, everything else goes to the loop (or, once
        // parked, waits for the game: the game channels' messages are passed on untouched).
        let echo_pings: MessageHook = Rc::new(|label, data| match data {
            _ if label != PROBE_CHANNEL_LABEL => Hooked::PassOn(data),
            ChannelData::Text(text) => match echo(&text) {
                Some(pong) => Hooked::Reply(pong),
                None => Hooked::PassOn(ChannelData::Text(text)),
            },
            // Not part of the probe's exchange.
            ChannelData::Binary(_) => Hooked::Taken,
        });
        let (mut peer, events) = Peer::new(&config, Some(echo_pings))?;
        if spec.keep_ms.is_some() {
            // Before any offer, on both sides: they open with the probe's SCTP association.
            create_negotiated_game_channels(&mut peer)?;
        }
        Ok(Self {
            spec,
            peer,
            events: Some(events),
            created_at_ms: now_ms(),
            samples: Vec::with_capacity(SAMPLE_COUNT),
            stats_rtt_ms: None,
            connection: None,
            pair_id: None,
            candidate_adds: FuturesUnordered::new(),
            pacer: PingPacer::new(),
            opened: false,
            reported: false,
            reported_at_ms: 0.0,
            peer_done: false,
        })
    }

    /// The probe's id.
    pub fn id(&self) -> &ProbeSessionId {
        &self.spec.probe_session_id
    }

    /// The browser connection (a clone of the handle: tests check it is closed afterwards).
    pub fn raw(&self) -> RtcPeerConnection {
        self.peer.raw().clone()
    }

    /// Runs the probe: obeys `commands`, sends signals and exactly one `probe_result`
    /// through `out`, and closes the connection before returning — or, with `keep_ms` and a
    /// successful result, returns it parked for the game. Dropping the future instead (the
    /// server ended the probe) closes the connection too, without a result.
    pub async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<ProbeCommand>,
        out: Outbox,
    ) -> (ProbeOutcome, Option<ParkedPeer>) {
        let deadline_ms = client_deadline_ms(self.spec.timeout_ms);
        let left_ms = (deadline_ms as f64 - (now_ms() - self.created_at_ms)).max(0.0);
        let Some(mut events) = self.events.take() else {
            // `run` consumes self, so the receiver is always there.
            let (_, never) = mpsc::unbounded();
            return self.finish(Stop::Failed("the probe ran twice".into()), &out, never);
        };
        let timeout_ms = self.spec.timeout_ms;
        let stop = {
            let drive = self.drive(&mut commands, &mut events, &out);
            let timer = TimeoutFuture::new(left_ms.min(u32::MAX as f64) as u32);
            pin_mut!(drive);
            match future::select(drive, timer).await {
                Either::Left((stop, _)) => stop,
                Either::Right(((), _)) => Stop::Deadline,
            }
        };
        let stop = match stop {
            Stop::Deadline => Stop::Failed(format!(
                "no measurement within the client deadline of {deadline_ms} ms \
                 (server timeout {timeout_ms} ms; DataChannel {}; {} pings sent, {} found \
                 lost, {} answered)",
                if self.opened { "open" } else { "never open" },
                self.pacer.sent(),
                self.pacer.lost(),
                self.samples.len()
            )),
            other => other,
        };
        self.finish(stop, &out, events)
    }

    /// Sends the failure result if none was sent (unless the probe was cancelled), closes
    /// (or parks, after [`Stop::Park`]), and describes the outcome.
    fn finish(
        mut self,
        stop: Stop,
        out: &Outbox,
        events: mpsc::UnboundedReceiver<PeerEvent>,
    ) -> (ProbeOutcome, Option<ParkedPeer>) {
        let cancelled = stop == Stop::Cancelled;
        let park = stop == Stop::Park;
        let failure = match stop {
            Stop::Done | Stop::Park => None,
            Stop::Failed(why) => Some(why),
            Stop::Cancelled => Some("cancelled: the server ended the probe".to_owned()),
            Stop::Deadline => Some("the client deadline passed".to_owned()),
        };
        let result = self.result(!self.reported && failure.is_some());
        if !self.reported && !cancelled {
            self.reported = true;
            self.reported_at_ms = now_ms();
            out(ClientMessage::ProbeResult(result.clone()));
        }
        let end = now_ms();
        let outcome = ProbeOutcome {
            failure: if result.success { None } else { failure },
            reported: self.reported,
            result,
            reported_after_ms: self.reported_at_ms - self.created_at_ms,
            closed_after_ms: end - self.created_at_ms,
            parked: park,
        };
        if !park {
            self.peer.close();
            return (outcome, None);
        }
        // The loop and its state go; the connection, its channels and events stay.
        let parked = ParkedPeer {
            peer: self.peer,
            events,
            measured: MeasuredPath {
                pair_id: self.pair_id,
                info: self.connection,
            },
        };
        (outcome, Some(parked))
    }

    /// The `probe_result` for what was measured so far.
    fn result(&self, failed: bool) -> ProbeResult {
        let success = !failed && self.samples.len() >= SAMPLE_COUNT;
        ProbeResult {
            probe_session_id: self.spec.probe_session_id.clone(),
            success,
            rtt_ms: if success {
                path_rtt_ms(&self.samples)
            } else {
                None
            },
            samples_ms: self.samples.clone(),
            stats_rtt_ms: self.stats_rtt_ms,
            connection: self.connection,
        }
    }

    fn signal(&self, signal_type: SignalType, payload: Option<SignalPayload>) -> ClientMessage {
        ClientMessage::ProbeSignal(ProbeSignalOut {
            probe_session_id: self.spec.probe_session_id.clone(),
            target_index: self.spec.peer_index,
            signal_type,
            payload,
        })
    }

    /// Sends the next ping, if any remain.
    fn send_ping(&mut self) -> Result<(), String> {
        let sent_at_ms = now_ms();
        let Some(seq) = self.pacer.send(sent_at_ms) else {
            return Ok(());
        };
        let ping = ProbeWire::Ping { seq, sent_at_ms };
        self.peer
            .send(PROBE_CHANNEL_LABEL, &ping.encode())
            .map_err(|e| format!("could not send a ping: {e}"))
    }

    /// The spacing timer: resolves when the pacer's next ping is due; never while the channel
    /// is not open, after the report, or when no ping remains.
    fn pace_timer(&self) -> Either<TimeoutFuture, future::Pending<()>> {
        match self.pacer.next_due_ms(now_ms()) {
            Some(due_ms) if self.opened && !self.reported => {
                let wait_ms = (due_ms - now_ms()).clamp(0.0, f64::from(u32::MAX));
                Either::Left(TimeoutFuture::new(wait_ms.ceil() as u32))
            }
            _ => Either::Right(future::pending()),
        }
    }

    /// Reads the selected pair: its RTT and the path it is (candidate types, protocols),
    /// retrying briefly while either is not there yet. Stores both.
    async fn read_selected_pair(&mut self) {
        let pair = self
            .peer
            .selected_pair_where(STATS_ATTEMPTS, STATS_RETRY_MS, |p| {
                p.current_round_trip_time_ms.is_some() && p.connection_info().is_some()
            })
            .await;
        let pair = match pair {
            Ok(Some(pair)) => Some(pair),
            // Not complete within the attempts: take what one more read has.
            Ok(None) => self.peer.selected_pair().await.ok().flatten(),
            Err(e) => {
                warn(&format!("probe {}: {e}", self.spec.probe_session_id));
                None
            }
        };
        if let Some(pair) = pair {
            self.stats_rtt_ms = pair.current_round_trip_time_ms;
            self.connection = pair.connection_info();
            self.pair_id = Some(pair.pair_id);
        }
    }

    /// The event loop: runs until the probe is over, and says how.
    async fn drive(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<ProbeCommand>,
        events: &mut mpsc::UnboundedReceiver<PeerEvent>,
        out: &Outbox,
    ) -> Stop {
        enum Input {
            Command(Option<ProbeCommand>),
            Event(Option<PeerEvent>),
            PingDue,
            CandidateAdded(Result<(), PeerError>),
        }
        loop {
            let pace = self.pace_timer().fuse();
            pin_mut!(pace);
            let input = futures::select! {
                c = commands.next() => Input::Command(c),
                e = events.next() => Input::Event(e),
                () = pace => Input::PingDue,
                r = self.candidate_adds.select_next_some() => Input::CandidateAdded(r),
            };
            let step = match input {
                // The manager dropped the probe: the server ended it, no result is wanted.
                Input::Command(None) => return Stop::Cancelled,
                Input::Command(Some(cmd)) => self.on_command(cmd, out).await.map(|()| false),
                Input::Event(None) => Err("the connection's events ended".into()),
                Input::Event(Some(ev)) => self.on_peer_event(ev, out).await,
                Input::PingDue => match self.send_ping() {
                    // The window's end may be what was due: the side may be complete now.
                    Ok(()) => self.report_if_complete(out).await,
                    Err(e) => Err(e),
                },
                Input::CandidateAdded(outcome) => {
                    if let Err(e) = outcome {
                        warn(&format!("probe {}: {e}", self.spec.probe_session_id));
                    }
                    Ok(false)
                }
            };
            match step {
                Ok(false) => {}
                Ok(true) if self.parking() => return Stop::Park,
                Ok(true) => return Stop::Done,
                Err(why) => return Stop::Failed(why),
            }
        }
    }

    /// Whether the probe ends by parking its connection: kept for a game (`keep_ms`), and
    /// this side reported success. It parks at once, without waiting for the peer's `done`:
    /// a `game_start` may come first (it needs only the two results), and the peer's pings
    /// are still echoed from the channel's hook while parked.
    fn parking(&self) -> bool {
        self.spec.keep_ms.is_some() && self.reported && self.samples.len() >= SAMPLE_COUNT
    }

    async fn on_command(&mut self, cmd: ProbeCommand, out: &Outbox) -> Result<(), String> {
        match cmd {
            ProbeCommand::Start { initiator: false } => Ok(()),
            ProbeCommand::Start { initiator: true } => {
                self.peer
                    .create_data_channel(PROBE_CHANNEL_LABEL, Delivery::Reliable)
                    .map_err(|e| e.to_string())?;
                let sdp = self.peer.create_offer().await.map_err(|e| e.to_string())?;
                out(self.signal(SignalType::Offer, Some(SignalPayload::Description { sdp })));
                Ok(())
            }
            ProbeCommand::Signal {
                signal_type: SignalType::Offer,
                payload: Some(SignalPayload::Description { sdp }),
            } => {
                let answer = self
                    .peer
                    .accept_offer(&sdp)
                    .await
                    .map_err(|e| e.to_string())?;
                out(self.signal(
                    SignalType::Answer,
                    Some(SignalPayload::Description { sdp: answer }),
                ));
                Ok(())
            }
            ProbeCommand::Signal {
                signal_type: SignalType::Answer,
                payload: Some(SignalPayload::Description { sdp }),
            } => self
                .peer
                .accept_answer(&sdp)
                .await
                .map_err(|e| e.to_string()),
            ProbeCommand::Signal {
                signal_type: SignalType::IceCandidate,
                payload,
            } => {
                // Not awaited here: the loop polls the outcome alongside its other inputs.
                match self.peer.add_remote_candidate(payload.as_ref()) {
                    Ok(added) => self.candidate_adds.push(added),
                    // Other candidates may still connect; the deadline catches the rest.
                    Err(e) => warn(&format!("probe {}: {e}", self.spec.probe_session_id)),
                }
                Ok(())
            }
            ProbeCommand::Signal { signal_type, .. } => {
                warn(&format!(
                    "probe {}: ignored a {signal_type:?} signal without an SDP",
                    self.spec.probe_session_id
                ));
                Ok(())
            }
        }
    }

    /// Handles one connection event; `Ok(true)` when the probe is over.
    async fn on_peer_event(&mut self, ev: PeerEvent, out: &Outbox) -> Result<bool, String> {
        match ev {
            PeerEvent::LocalCandidate(payload) => {
                out(self.signal(SignalType::IceCandidate, payload));
                Ok(false)
            }
            PeerEvent::ConnectionState(state) => match state {
                RtcPeerConnectionState::Failed | RtcPeerConnectionState::Closed
                    if self.reported =>
                {
                    Ok(true)
                }
                RtcPeerConnectionState::Failed => Err("the WebRTC connection failed".into()),
                RtcPeerConnectionState::Closed => Err("the WebRTC connection closed".into()),
                _ => Ok(false),
            },
            // The game's channels (kept probes) are not the probe's business.
            PeerEvent::ChannelOpen { label }
            | PeerEvent::ChannelClosed { label }
            | PeerEvent::ChannelError { label, .. }
            | PeerEvent::ChannelMessage { label, .. }
                if label != PROBE_CHANNEL_LABEL =>
            {
                Ok(false)
            }
            PeerEvent::ChannelOpen { .. } => {
                if !self.opened {
                    self.opened = true;
                    self.send_ping()?;
                }
                Ok(false)
            }
            PeerEvent::ChannelClosed { .. } if self.reported => Ok(true),
            PeerEvent::ChannelClosed { .. } => {
                Err("the DataChannel closed before the measurement finished".into())
            }
            PeerEvent::ChannelError { .. } if self.reported => Ok(true),
            PeerEvent::ChannelError { detail, .. } => Err(format!("DataChannel error: {detail}")),
            // The probe follows `connectionState`; its hook takes binary messages.
            PeerEvent::IceConnectionState(_) | PeerEvent::ChannelBinary { .. } => Ok(false),
            PeerEvent::ChannelMessage {
                text,
                received_at_ms,
                ..
            } => {
                // A message proves the channel is open. Should its `open` never have reached
                // us (seen rarely on the answering side under load: it echoed every ping but
                // never sent its own), start measuring now rather than at the deadline.
                if !self.opened {
                    self.opened = true;
                    warn(&format!(
                        "probe {}: DataChannel open inferred from a message",
                        self.spec.probe_session_id
                    ));
                    self.send_ping()?;
                }
                self.on_channel_message(&text, received_at_ms, out).await
            }
        }
    }

    async fn on_channel_message(
        &mut self,
        text: &str,
        received_at_ms: f64,
        out: &Outbox,
    ) -> Result<bool, String> {
        match ProbeWire::decode(text) {
            Some(ProbeWire::Pong { seq, sent_at_ms }) => {
                if self.reported {
                    return Ok(false); // a ping still in flight when the side completed
                }
                let PongVerdict::Sample { send_next } = self.pacer.on_pong(seq, received_at_ms)
                else {
                    return Ok(false); // a pong we do not wait for
                };
                self.samples.push((received_at_ms - sent_at_ms).max(0.0));
                if send_next {
                    self.send_ping()?;
                }
                self.report_if_complete(out).await
            }
            Some(ProbeWire::Done) => {
                self.peer_done = true;
                Ok(self.reported)
            }
            // A ping, which the echo handler answered already, or junk.
            _ => Ok(false),
        }
    }

    /// Once this side's pacer is complete: reads the selected pair, sends `probe_result` and
    /// the peer's `done`. `Ok(true)` when the probe is over (see [`Self::parking`]).
    async fn report_if_complete(&mut self, out: &Outbox) -> Result<bool, String> {
        if self.reported || !self.pacer.complete(now_ms()) {
            return Ok(false);
        }
        self.read_selected_pair().await;
        let result = self.result(false);
        self.reported = true;
        self.reported_at_ms = now_ms();
        out(ClientMessage::ProbeResult(result));
        // A kept probe parks now (see `parking`), after its `done`.
        if let Err(e) = self
            .peer
            .send(PROBE_CHANNEL_LABEL, &ProbeWire::Done.encode())
        {
            // The peer will see the channel close instead.
            warn(&format!("probe {}: {e}", self.spec.probe_session_id));
            return Ok(true);
        }
        Ok(self.peer_done || self.parking())
    }
}
