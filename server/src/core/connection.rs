//! One WebSocket connection's protocol rules, sans-IO: the per-connection rate limit, the
//! frame size limit, decoding frames into [`Event`]s, the server-RTT ping schedule and the idle
//! timeout.
//!
//! Like the [`Core`](super::Core), a [`Connection`] never reads a clock and never touches a
//! socket: the shell hands it what happened with the time it happened, and reads back what to
//! do. Its shape follows str0m's:
//!
//! - **Inputs**: [`Connection::handle_frame`] (a text, binary or control frame arrived),
//!   [`Connection::handle_read_error`] (the socket refused a frame),
//!   [`Connection::handle_send`] (the core wants a message written on this connection),
//!   [`Connection::handle_timeout`] (time passed).
//! - **Outputs**: [`Connection::poll_output`] gives, in order, [`Output::Event`]s for the core,
//!   [`Output::Send`]s to write, and at most one [`Output::Close`], after which the connection
//!   takes no more input. [`Connection::poll_timeout`] says when to call
//!   [`Connection::handle_timeout`] next.
//!
//! The rules (PROTOCOL.md, Session and Limits):
//! - Every frame (data or control) takes a token of the [`RateLimiter`]; over the limit the
//!   client gets `error` `rate_limited`, then close [`Close::RATE_LIMITED`] (1008).
//! - A data frame over [`MAX_FRAME_BYTES`] closes with [`Close::TOO_BIG`] (1009, RFC 6455
//!   §7.4.1 "message too big"). The socket enforces the same limit while reading
//!   ([`ReadError::TooBig`]), so this is the rule and the socket's check its first line.
//! - A text frame is decoded with [`ClientMessage::decode`] into [`Event::Message`] or
//!   [`Event::Malformed`]; a binary frame is malformed (not JSON); control frames (WebSocket
//!   ping/pong, answered by the socket itself) reach the core as nothing.
//! - Once `welcome` is handed to [`Connection::handle_send`], the connection runs its
//!   [`PingSchedule`]: it sends `ping`s with unpredictable ids (from the [`PingIds`] it was
//!   opened with), turns the `pong` answering the outstanding one into an
//!   [`Event::RttSample`] on its own clock (so the core's queue is not in the timing), and
//!   forwards no `pong`. A `pong` for an id it did not send, or sooner than
//!   [`super::rtt::MIN_PLAUSIBLE_RTT`] after its ping, is ignored and counted
//!   ([`Connection::ignored_pongs`]; the shell logs the count when the connection ends).
//!   Before `welcome`, a `pong` goes to the core like any message (there, a protocol error).
//! - A connection that sends no frame at all for its idle timeout ([`IDLE_TIMEOUT`] by default)
//!   is closed with [`Close::IDLE`] (1008) as dead.
//! - A connection that has not been welcomed (no `welcome` handed to
//!   [`Connection::handle_send`], i.e. no accepted `hello`) within its hello timeout
//!   ([`HELLO_TIMEOUT`] by default) of opening is closed with [`Close::NO_HELLO`] (1008).
//!   Nothing resets this deadline: a client that only sends WebSocket pings keeps clear of the
//!   idle rule, not of this one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use pairlab_shared::{ClientMessage, DecodeError, ErrorCode, Ping, ServerMessage, MAX_FRAME_BYTES};

use super::ratelimit::RateLimiter;
use super::rtt::{IgnoredPongs, PingIds, PingSchedule, PongOutcome};
use super::{ConnId, Event};

/// A connection that sends no frame at all for this long is closed (1008) as dead: before
/// `hello` that is a client that never says who it is; after `welcome` the server pings every
/// few seconds ([`super::rtt::PERIODIC_PING_GAP`]) and an honest client answers each at once,
/// so silence this long means the network or the browser is gone. The close is a drop: the
/// participant's reconnect grace applies.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection must be welcomed (its `hello` accepted) this long after it opens, or it is
/// closed (1008). A browser says `hello` as soon as the socket opens; frames of any kind do
/// not extend it.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection's two timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Silence longer than this closes the connection ([`IDLE_TIMEOUT`] by default).
    pub idle: Duration,
    /// Not welcomed this long after opening closes the connection ([`HELLO_TIMEOUT`] by
    /// default).
    pub hello: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            idle: IDLE_TIMEOUT,
            hello: HELLO_TIMEOUT,
        }
    }
}

/// WebSocket close codes (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure: the core closed the connection (after `waitroom_timeout`, an error
    /// that closes, a session taken over).
    pub const NORMAL: u16 = 1000;
    /// Going away: the server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error: the client broke the WebSocket framing.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Policy violation: rate limited, too slow to read what it is sent, silent for
    /// [`super::IDLE_TIMEOUT`], or not welcomed within [`super::HELLO_TIMEOUT`].
    pub const POLICY: u16 = 1008;
    /// Message too big: a frame over `MAX_FRAME_BYTES`.
    pub const TOO_BIG: u16 = 1009;
}

/// A close frame the server sends: every way the server ends a connection, with its code
/// ([`close_code`]) and reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// The close code (RFC 6455 §7.4.1).
    pub code: u16,
    /// The reason, for people reading traces.
    pub reason: &'static str,
}

impl Close {
    const fn new(code: u16, reason: &'static str) -> Close {
        Close { code, reason }
    }

    /// The core closed the connection, after the messages it queued before.
    pub const NORMAL: Close = Close::new(close_code::NORMAL, "");
    /// The server is shutting down (or its core has stopped).
    pub const GOING_AWAY: Close = Close::new(close_code::GOING_AWAY, "server shutting down");
    /// The client broke the WebSocket framing.
    pub const PROTOCOL_ERROR: Close =
        Close::new(close_code::PROTOCOL_ERROR, "websocket protocol error");
    /// The client sent frames faster than the [`RateLimiter`] allows.
    pub const RATE_LIMITED: Close = Close::new(close_code::POLICY, "rate limited");
    /// The client did not read what it was sent fast enough (its outbound queue filled).
    pub const TOO_SLOW: Close = Close::new(close_code::POLICY, "too slow to read messages");
    /// The client sent no frame for the idle timeout.
    pub const IDLE: Close = Close::new(close_code::POLICY, "idle: no frames received");
    /// The client was not welcomed (said no accepted `hello`) within the hello timeout.
    pub const NO_HELLO: Close = Close::new(close_code::POLICY, "no hello in time");
    /// The client sent a frame over [`MAX_FRAME_BYTES`].
    pub const TOO_BIG: Close = Close::new(close_code::TOO_BIG, "frame larger than 65536 bytes");
}

/// A frame read from the socket (not a close frame: the peer closing ends the socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A text frame: the protocol's JSON.
    Text(&'a str),
    /// A binary frame, of this many bytes: never valid (the protocol is JSON in text frames).
    Binary {
        /// Its payload, bytes.
        len_bytes: usize,
    },
    /// A WebSocket ping or pong: counted, never forwarded.
    Control,
}

/// Why the socket could not read a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The frame or message is over [`MAX_FRAME_BYTES`] (the socket refused it unread).
    TooBig,
    /// Anything else wrong with the WebSocket framing.
    Protocol,
}

/// Something for the shell to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Hand this event to the core.
    Event(Event),
    /// Write this message on the socket.
    Send(ServerMessage),
    /// Close the socket with this frame; the connection takes no more input.
    Close(Close),
}

/// The protocol state of one WebSocket connection (see the module docs for the rules).
#[derive(Debug, Clone)]
pub struct Connection {
    /// Which connection, for the events it makes.
    conn: ConnId,
    /// Frames allowed from now on.
    limiter: RateLimiter,
    /// The server-RTT pings; `None` until `welcome` is sent.
    pings: Option<PingSchedule>,
    /// Where the pings' ids come from.
    ping_ids: PingIds,
    /// The `pong`s ignored so far.
    ignored_pongs: IgnoredPongs,
    /// Silence longer than this closes the connection.
    idle_timeout: Duration,
    /// When the last frame arrived (or the connection opened).
    last_frame_at: Instant,
    /// When the connection is closed unless welcomed first; `None` once `welcome` is sent.
    hello_deadline: Option<Instant>,
    /// Set once the connection has decided to close; then it takes no more input.
    closed: bool,
    /// What the shell has not polled yet.
    outputs: VecDeque<Output>,
}

impl Connection {
    /// A connection opened at `now`, with the standard rate limit
    /// ([`RateLimiter::standard`]), `timeouts` (normally [`Timeouts::default`]) and the source
    /// of its ping ids (the server's is seeded from the operating system, so a client cannot
    /// predict them; tests pass [`PingIds::seeded`]).
    pub fn new(conn: ConnId, now: Instant, timeouts: Timeouts, ping_ids: PingIds) -> Self {
        Connection {
            conn,
            limiter: RateLimiter::standard(now),
            pings: None,
            ping_ids,
            ignored_pongs: IgnoredPongs::default(),
            idle_timeout: timeouts.idle,
            last_frame_at: now,
            hello_deadline: Some(now + timeouts.hello),
            closed: false,
            outputs: VecDeque::new(),
        }
    }

    /// The connection's id.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// The `pong`s this connection ignored so far, by kind.
    pub fn ignored_pongs(&self) -> IgnoredPongs {
        self.ignored_pongs
    }

    /// A frame arrived at `now`.
    pub fn handle_frame(&mut self, now: Instant, frame: Frame<'_>) {
        if self.closed {
            return;
        }
        self.last_frame_at = now;
        if !self.limiter.allow(now) {
            self.outputs.push_back(Output::Send(ServerMessage::error(
                ErrorCode::RateLimited,
                "Too many messages in a short time; the connection is closed.",
            )));
            self.close(Close::RATE_LIMITED);
            return;
        }
        let len_bytes = match frame {
            Frame::Text(text) => text.len(),
            Frame::Binary { len_bytes } => len_bytes,
            Frame::Control => 0,
        };
        if len_bytes > MAX_FRAME_BYTES {
            self.close(Close::TOO_BIG);
            return;
        }
        let conn = self.conn;
        let event = match frame {
            Frame::Text(text) => match ClientMessage::decode(text) {
                Ok(ClientMessage::Pong(pong)) if self.pings.is_some() => {
                    self.on_pong(pong.seq, now)
                }
                Ok(msg) => Some(Event::Message { conn, msg }),
                Err(error) => Some(Event::Malformed { conn, error }),
            },
            Frame::Binary { .. } => Some(Event::Malformed {
                conn,
                error: DecodeError::NotJson("a binary frame; send JSON in text frames".to_owned()),
            }),
            Frame::Control => None,
        };
        if let Some(event) = event {
            self.outputs.push_back(Output::Event(event));
        }
    }

    /// The socket could not read a frame: close with the matching code.
    pub fn handle_read_error(&mut self, error: ReadError) {
        if self.closed {
            return;
        }
        self.close(match error {
            ReadError::TooBig => Close::TOO_BIG,
            ReadError::Protocol => Close::PROTOCOL_ERROR,
        });
    }

    /// The core wants `msg` written on this connection (at `now`). A `welcome` meets the
    /// hello deadline and starts the ping schedule: the first `ping` is due right after it.
    pub fn handle_send(&mut self, now: Instant, msg: ServerMessage) {
        if self.closed {
            return;
        }
        if matches!(msg, ServerMessage::Welcome(_)) && self.pings.is_none() {
            self.pings = Some(PingSchedule::new(now));
            self.hello_deadline = None;
        }
        self.outputs.push_back(Output::Send(msg));
    }

    /// Time passed: at or after [`Connection::poll_timeout`], close an idle or unwelcomed
    /// connection, or send the `ping` that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if self.hello_deadline.is_some_and(|d| now >= d) {
            self.close(Close::NO_HELLO);
            return;
        }
        if now >= self.idle_deadline() {
            self.close(Close::IDLE);
            return;
        }
        let ids = &mut self.ping_ids;
        if let Some(seq) = self.pings.as_mut().and_then(|p| p.poll(now, ids)) {
            self.outputs
                .push_back(Output::Send(ServerMessage::Ping(Ping { seq })));
        }
    }

    /// The next thing to do, oldest first; `None` when there is nothing.
    ///
    /// Once drained, the queue gives its buffer back: a held connection spends almost all its
    /// life with nothing queued, and the buffer (four [`Output`]s, ~0.4 KB) would otherwise stay
    /// allocated for each of thousands of them (BENCHMARKS.md §2, participants held).
    pub fn poll_output(&mut self) -> Option<Output> {
        let next = self.outputs.pop_front();
        if next.is_none() && self.outputs.capacity() > 0 {
            self.outputs = VecDeque::new();
        }
        next
    }

    /// When [`Connection::handle_timeout`] should be called next: the hello deadline, the
    /// idle deadline or the next `ping`, whichever is first; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        [
            Some(self.idle_deadline()),
            self.hello_deadline,
            self.pings.as_ref().map(PingSchedule::next_at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A `pong` carrying `id` at `now`, after `welcome`: the RTT sample it gives, if any; an
    /// ignored one is counted.
    fn on_pong(&mut self, id: u64, now: Instant) -> Option<Event> {
        let outcome = self.pings.as_mut()?.on_pong(id, now);
        self.ignored_pongs.count(outcome);
        match outcome {
            PongOutcome::Sample(rtt_ms) => Some(Event::RttSample {
                conn: self.conn,
                rtt_ms,
            }),
            PongOutcome::Late | PongOutcome::Unsent | PongOutcome::TooFast => None,
        }
    }

    fn idle_deadline(&self) -> Instant {
        self.last_frame_at + self.idle_timeout
    }

    fn close(&mut self, close: Close) {
        self.closed = true;
        self.outputs.push_back(Output::Close(close));
    }
}

#[cfg(test)]
mod tests {
    use super::super::ratelimit::RATE_LIMIT_BURST;
    use super::super::rtt::{ENTRY_PINGS, MIN_PLAUSIBLE_RTT, PERIODIC_PING_GAP, PING_TIMEOUT};
    use super::*;
    use pairlab_shared::{Hello, SubjectId, Welcome};

    const CONN: ConnId = ConnId::new(7);
    const SEED: u64 = 11;

    /// The ping ids the connections of these tests use.
    fn ids() -> PingIds {
        PingIds::seeded(SEED)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn outputs(c: &mut Connection) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn welcome() -> ServerMessage {
        ServerMessage::Welcome(Welcome {
            subject_id: SubjectId::parse("alice").unwrap(),
            scene_id: "s".to_owned(),
            resume_token: "token".to_owned(),
            group_size: 2,
            hide_lobby_count: false,
            waitroom_timeout_ms: 60_000,
            leave_button_after_ms: None,
        })
    }

    fn pong(seq: u64) -> String {
        ClientMessage::Pong(pairlab_shared::Pong { seq }).to_json()
    }

    /// A connection that has sent `welcome` at `t0` and drained its outputs.
    fn welcomed(t0: Instant) -> Connection {
        let mut c = Connection::new(CONN, t0, Timeouts::default(), ids());
        c.handle_send(t0, welcome());
        assert_eq!(outputs(&mut c), vec![Output::Send(welcome())]);
        c
    }

    #[test]
    fn text_frames_decode_into_messages_or_malformed() {
        let t0 = Instant::now();
        let mut c = Connection::new(CONN, t0, Timeouts::default(), ids());
        let hello = ClientMessage::Hello(Hello {
            subject_id: SubjectId::parse("alice").unwrap(),
            scene_id: None,
            resume_token: None,
            link_signature: None,
            recruiter: None,
            browser: None,
        });
        c.handle_frame(t0, Frame::Text(&hello.to_json()));
        c.handle_frame(t0, Frame::Text("[1]"));
        assert_eq!(
            outputs(&mut c),
            vec![
                Output::Event(Event::Message {
                    conn: CONN,
                    msg: hello
                }),
                Output::Event(Event::Malformed {
                    conn: CONN,
                    error: DecodeError::NotObject
                }),
            ]
        );
    }

    #[test]
    fn binary_frames_are_malformed_and_control_frames_are_not_forwarded() {
        let t0 = Instant::now();
        let mut c = Connection::new(CONN, t0, Timeouts::default(), ids());
        c.handle_frame(t0, Frame::Binary { len_bytes: 3 });
        c.handle_frame(t0, Frame::Control);
        assert_eq!(
            outputs(&mut c),
            vec![Output::Event(Event::Malformed {
                conn: CONN,
                error: DecodeError::NotJson("a binary frame; send JSON in text frames".to_owned()),
            })]
        );
    }

    #[test]
    fn a_flood_gets_rate_limited_then_1008_and_nothing_more() {
        let t0 = Instant::now();
        let mut c = Connection::new(CONN, t0, Timeouts::default(), ids());
        for _ in 0..RATE_LIMIT_BURST as usize {
            c.handle_frame(t0, Frame::Control);
        }
        assert_eq!(outputs(&mut c), vec![], "the burst passes");
        c.handle_frame(t0, Frame::Text("{}"));
        let out = outputs(&mut c);
        assert!(
            matches!(&out[..], [Output::Send(ServerMessage::Error(e)), Output::Close(Close::RATE_LIMITED)]
                if e.code == ErrorCode::RateLimited),
            "{out:?}"
        );
        assert_eq!(Close::RATE_LIMITED.code, 1008);
        c.handle_frame(t0 + ms(1000), Frame::Text("{}"));
        c.handle_timeout(t0 + IDLE_TIMEOUT);
        assert_eq!(outputs(&mut c), vec![], "closed: no more input");
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn frames_over_the_limit_close_with_1009() {
        let t0 = Instant::now();
        let mut c = Connection::new(CONN, t0, Timeouts::default(), ids());
        let at_limit = format!("\"{}\"", "x".repeat(MAX_FRAME_BYTES - 2));
        c.handle_frame(t0, Frame::Text(&at_limit));
        assert!(matches!(
            outputs(&mut c)[..],
            [Output::Event(Event::Malformed { .. })]
        ));
        c.handle_frame(t0, Frame::Text(&format!("{at_limit} ")));
        assert_eq!(outputs(&mut c), vec![Output::Close(Close::TOO_BIG)]);
        assert_eq!(Close::TOO_BIG.code, 1009);
        assert!(Close::TOO_BIG.reason.contains(&MAX_FRAME_BYTES.to_string()));

        let mut c = Connection::new(CONN, t0, Timeouts::default(), ids());
        c.handle_frame(
            t0,
            Frame::Binary {
                len_bytes: MAX_FRAME_BYTES + 1,
            },
        );
        assert_eq!(outputs(&mut c), vec![Output::Close(Close::TOO_BIG)]);
    }

    #[test]
    fn read_errors_close_with_their_codes() {
        let t0 = Instant::now();
        let mut c = Connection::new(CONN, t0, Timeouts::default(), ids());
        c.handle_read_error(ReadError::TooBig);
        assert_eq!(outputs(&mut c), vec![Output::Close(Close::TOO_BIG)]);
        let mut c = Connection::new(CONN, t0, Timeouts::default(), ids());
        c.handle_read_error(ReadError::Protocol);
        assert_eq!(outputs(&mut c), vec![Output::Close(Close::PROTOCOL_ERROR)]);
        assert_eq!(Close::PROTOCOL_ERROR.code, 1002);
    }

    #[test]
    fn a_pong_before_welcome_goes_to_the_core() {
        let t0 = Instant::now();
        let mut c = Connection::new(CONN, t0, Timeouts::default(), ids());
        c.handle_frame(t0, Frame::Text(&pong(1)));
        assert!(matches!(
            &outputs(&mut c)[..],
            [Output::Event(Event::Message {
                msg: ClientMessage::Pong(_),
                ..
            })]
        ));
    }

    /// Sends the ping due at `now` and returns its id.
    fn ping_at(c: &mut Connection, now: Instant) -> u64 {
        c.handle_timeout(now);
        match &outputs(c)[..] {
            [Output::Send(ServerMessage::Ping(Ping { seq }))] => *seq,
            other => panic!("expected one ping, got {other:?}"),
        }
    }

    #[test]
    fn welcome_starts_the_pings_and_pongs_become_rtt_samples() {
        let t0 = Instant::now();
        let mut c = welcomed(t0);
        let mut expected_ids = ids();
        assert_eq!(c.poll_timeout(), Some(t0), "the first ping is due at once");
        let mut first = None;
        for n in 1..=u64::from(ENTRY_PINGS) {
            let sent = t0 + ms(10 * n);
            let id = ping_at(&mut c, sent);
            assert_eq!(
                id,
                expected_ids.next_id(),
                "ids come from the PingIds given"
            );
            first.get_or_insert(id);
            c.handle_frame(sent + ms(4), Frame::Text(&pong(id)));
            assert_eq!(
                outputs(&mut c),
                vec![Output::Event(Event::RttSample {
                    conn: CONN,
                    rtt_ms: 4.0
                })],
                "the pong is answered here, not forwarded"
            );
        }
        // A late pong is dropped (not suspect); the next ping waits the periodic gap.
        c.handle_frame(t0 + ms(50), Frame::Text(&pong(first.unwrap_or_default())));
        assert_eq!(outputs(&mut c), vec![]);
        assert_eq!(c.ignored_pongs().late, 1);
        assert_eq!(c.ignored_pongs().suspect(), 0);
        let last_sent = t0 + ms(10 * u64::from(ENTRY_PINGS));
        assert_eq!(c.poll_timeout(), Some(last_sent + PERIODIC_PING_GAP));
        c.handle_timeout(last_sent + PERIODIC_PING_GAP - ms(1));
        assert_eq!(outputs(&mut c), vec![]);
    }

    #[test]
    fn pongs_for_guessed_ids_are_ignored_and_counted() {
        let t0 = Instant::now();
        let mut c = welcomed(t0);
        let id = ping_at(&mut c, t0);
        // What a client predicting a counter would send, before and after the real ping.
        for guess in [1, 2, 3, id.wrapping_add(1)] {
            c.handle_frame(t0 + ms(5), Frame::Text(&pong(guess)));
        }
        assert_eq!(outputs(&mut c), vec![], "no sample, nothing for the core");
        assert_eq!(c.ignored_pongs().unsent, 4);
        assert_eq!(c.poll_timeout(), Some(t0 + PING_TIMEOUT), "no next ping");
        c.handle_frame(t0 + ms(150), Frame::Text(&pong(id)));
        assert_eq!(
            outputs(&mut c),
            vec![Output::Event(Event::RttSample {
                conn: CONN,
                rtt_ms: 150.0
            })],
            "the real pong still counts"
        );
        assert_eq!(c.ignored_pongs().suspect(), 4);
    }

    #[test]
    fn a_pong_faster_than_plausible_is_ignored_and_counted() {
        let t0 = Instant::now();
        let mut c = welcomed(t0);
        let id = ping_at(&mut c, t0);
        c.handle_frame(t0, Frame::Text(&pong(id)));
        assert_eq!(outputs(&mut c), vec![]);
        assert_eq!(c.ignored_pongs().too_fast, 1);
        c.handle_frame(t0 + MIN_PLAUSIBLE_RTT, Frame::Text(&pong(id)));
        assert!(matches!(
            &outputs(&mut c)[..],
            [Output::Event(Event::RttSample { .. })]
        ));
    }

    #[test]
    fn only_the_first_welcome_starts_the_schedule() {
        let t0 = Instant::now();
        let mut c = welcomed(t0);
        ping_at(&mut c, t0);
        c.handle_send(t0 + ms(1), welcome());
        c.handle_timeout(t0 + ms(1));
        assert_eq!(
            outputs(&mut c),
            vec![Output::Send(welcome())],
            "the first ping is still outstanding"
        );
    }

    #[test]
    fn silence_for_the_idle_timeout_closes_with_1008() {
        let t0 = Instant::now();
        let idle = ms(300);
        let mut c = Connection::new(
            CONN,
            t0,
            Timeouts {
                idle,
                ..Timeouts::default()
            },
            ids(),
        );
        assert_eq!(c.poll_timeout(), Some(t0 + idle));
        c.handle_frame(t0 + ms(200), Frame::Control);
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + ms(200) + idle),
            "a frame resets it"
        );
        c.handle_timeout(t0 + idle);
        assert_eq!(outputs(&mut c), vec![]);
        c.handle_timeout(t0 + ms(200) + idle);
        assert_eq!(outputs(&mut c), vec![Output::Close(Close::IDLE)]);
        assert_eq!(Close::IDLE.code, 1008);
    }

    #[test]
    fn pings_do_not_keep_a_silent_client_alive() {
        let t0 = Instant::now();
        let mut c = welcomed(t0);
        let mut pings = 0;
        let now = loop {
            let now = c.poll_timeout().expect("open until closed");
            c.handle_timeout(now);
            match outputs(&mut c).pop() {
                Some(Output::Send(ServerMessage::Ping(_))) => pings += 1,
                Some(Output::Close(close)) => {
                    assert_eq!(close, Close::IDLE);
                    break now;
                }
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(now, t0 + IDLE_TIMEOUT);
        assert!(pings >= 2, "{pings}");
    }

    /// A client that never says `hello` but keeps the socket busy with WebSocket pings (which
    /// reset the idle rule) is closed at the hello deadline; one that is welcomed in time is
    /// not.
    #[test]
    fn pings_without_hello_are_closed_at_the_hello_deadline() {
        let t0 = Instant::now();
        let hello = ms(1000);
        let timeouts = Timeouts {
            idle: ms(300),
            hello,
        };
        let mut c = Connection::new(CONN, t0, timeouts, ids());
        let mut now = t0;
        while now + ms(100) < t0 + hello {
            now += ms(100);
            c.handle_frame(now, Frame::Control);
            assert_eq!(c.poll_timeout(), Some(now + ms(300)).min(Some(t0 + hello)));
            c.handle_timeout(now);
            assert_eq!(outputs(&mut c), vec![], "open at {:?}", now - t0);
        }
        c.handle_frame(t0 + hello - ms(1), Frame::Control);
        assert_eq!(c.poll_timeout(), Some(t0 + hello), "pings do not move it");
        c.handle_timeout(t0 + hello);
        assert_eq!(outputs(&mut c), vec![Output::Close(Close::NO_HELLO)]);
        assert_eq!(Close::NO_HELLO.code, 1008);

        let mut c = Connection::new(CONN, t0, timeouts, ids());
        c.handle_send(t0 + ms(50), welcome());
        outputs(&mut c);
        for step in 1..=20 {
            let now = t0 + ms(100 * step);
            c.handle_frame(now, Frame::Control);
            c.handle_timeout(now);
            assert!(
                !outputs(&mut c).contains(&Output::Close(Close::NO_HELLO)),
                "welcomed: no hello deadline"
            );
        }
    }
}
