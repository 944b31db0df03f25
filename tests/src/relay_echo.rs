//! The relayed path's round trip, measured without a browser: a TURN client (RFC 5766) just big
//! enough for two allocations on one coturn that send datagrams to each other, so a datagram
//! takes exactly the hops a relayed WebRTC packet takes:
//!
//! ```text
//!  A ──▶ proxy ──▶ coturn (A's allocation) ──▶ relay port A ──▶ relay port B
//!        ──▶ coturn (B's allocation) ──▶ proxy ──▶ B      (and back the same way)
//! ```
//!
//! With both clients' TURN server being the [`crate::delay_proxy::DelayProxy`], the echo's RTT
//! is the path's RTT with nothing of the browsers in it (no SCTP, no DTLS, no renderer): the
//! benchmarks' truth of a relayed setting, fed by neither the probe nor the game.
//!
//! Messages: Allocate (with the long-term credential mechanism of RFC 5389 §10.2: the first
//! request is answered 401 with `REALM` and `NONCE`, the second carries `USERNAME`, `REALM`,
//! `NONCE` and `MESSAGE-INTEGRITY` keyed with `MD5(user:realm:pass)`), CreatePermission for the
//! other's relayed address, then Send indications out and Data indications in (RFC 5766 §9,
//! §10), and a Refresh with `LIFETIME` 0 at the end (§7): the allocation is released at once,
//! so a later client that the kernel gives the same local port (the same 5-tuple through the
//! proxy) is not refused with 437 Allocation Mismatch. Only IPv4, only what coturn on loopback
//! answers.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use tokio::net::UdpSocket;

use crate::error::io;
use crate::turn::transaction_id;
use crate::{HarnessError, Result};

const MAGIC_COOKIE: u32 = 0x2112_A442;

// Message types (RFC 5766 §13).
const ALLOCATE: u16 = 0x0003;
const ALLOCATE_OK: u16 = 0x0103;
const ALLOCATE_ERR: u16 = 0x0113;
const REFRESH: u16 = 0x0004;
const CREATE_PERMISSION: u16 = 0x0008;
const CREATE_PERMISSION_OK: u16 = 0x0108;
const SEND_INDICATION: u16 = 0x0016;
const DATA_INDICATION: u16 = 0x0017;

// Attributes (RFC 5389 §18.2, RFC 5766 §14).
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const ERROR_CODE: u16 = 0x0009;
const REALM: u16 = 0x0014;
const NONCE: u16 = 0x0015;
const LIFETIME: u16 = 0x000D;
const XOR_PEER_ADDRESS: u16 = 0x0012;
const DATA: u16 = 0x0013;
const XOR_RELAYED_ADDRESS: u16 = 0x0016;
const REQUESTED_TRANSPORT: u16 = 0x0019;

/// How long one request waits for its answer.
const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// A STUN message being built: header, then attributes.
struct Message {
    bytes: Vec<u8>,
}

impl Message {
    fn new(kind: u16, id: [u8; 12]) -> Message {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&kind.to_be_bytes());
        bytes.extend_from_slice(&0u16.to_be_bytes());
        bytes.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        bytes.extend_from_slice(&id);
        Message { bytes }
    }

    fn set_len(&mut self, len: usize) {
        let len = u16::try_from(len).unwrap_or(u16::MAX);
        self.bytes[2..4].copy_from_slice(&len.to_be_bytes());
    }

    fn attr(mut self, kind: u16, value: &[u8]) -> Message {
        self.bytes.extend_from_slice(&kind.to_be_bytes());
        let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(value);
        while self.bytes.len() % 4 != 0 {
            self.bytes.push(0);
        }
        let body = self.bytes.len() - 20;
        self.set_len(body);
        self
    }

    /// `MESSAGE-INTEGRITY` (RFC 5389 §15.4): HMAC-SHA1 over the message so far, with the
    /// header's length already counting the attribute.
    fn integrity(mut self, key: &[u8]) -> Message {
        let body = self.bytes.len() - 20 + 24;
        self.set_len(body);
        let mac = match Hmac::<Sha1>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(&self.bytes);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => vec![0; 20],
        };
        self.attr(MESSAGE_INTEGRITY, &mac)
    }
}

/// `XOR-*-ADDRESS` value of an IPv4 address (RFC 5389 §15.2).
fn xor_address(addr: SocketAddrV4) -> [u8; 8] {
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = u32::from(*addr.ip()) ^ MAGIC_COOKIE;
    let mut v = [0u8; 8];
    v[1] = 0x01;
    v[2..4].copy_from_slice(&port.to_be_bytes());
    v[4..8].copy_from_slice(&ip.to_be_bytes());
    v
}

fn parse_xor_address(v: &[u8]) -> Option<SocketAddrV4> {
    if v.len() < 8 || v[1] != 0x01 {
        return None;
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) ^ MAGIC_COOKIE;
    Some(SocketAddrV4::new(Ipv4Addr::from(ip), port))
}

/// A received message: type, transaction id, attributes.
struct Parsed<'a> {
    kind: u16,
    id: &'a [u8],
    attrs: Vec<(u16, &'a [u8])>,
}

impl<'a> Parsed<'a> {
    fn parse(msg: &'a [u8]) -> Option<Parsed<'a>> {
        if msg.len() < 20 || msg[4..8] != MAGIC_COOKIE.to_be_bytes() {
            return None;
        }
        let kind = u16::from_be_bytes([msg[0], msg[1]]);
        let len = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
        let body = msg.get(20..20 + len)?;
        let mut attrs = Vec::new();
        let mut at = 0;
        while at + 4 <= body.len() {
            let t = u16::from_be_bytes([body[at], body[at + 1]]);
            let l = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
            let v = body.get(at + 4..at + 4 + l)?;
            attrs.push((t, v));
            at += 4 + l.div_ceil(4) * 4;
        }
        Some(Parsed {
            kind,
            id: &msg[8..20],
            attrs,
        })
    }

    fn get(&self, kind: u16) -> Option<&'a [u8]> {
        self.attrs.iter().find(|(t, _)| *t == kind).map(|(_, v)| *v)
    }
}

/// `ERROR-CODE` (RFC 5389 §15.6): class · 100 + number, e.g. 437.
fn error_code(p: &Parsed<'_>) -> Option<u16> {
    let v = p.get(ERROR_CODE)?;
    (v.len() >= 4).then(|| u16::from(v[2] & 0x07) * 100 + u16::from(v[3]))
}

fn turn_error(what: impl Into<String>) -> HarnessError {
    HarnessError::Io {
        what: what.into(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    }
}

/// One TURN client with an allocation.
struct Client {
    socket: UdpSocket,
    server: SocketAddr,
    user: String,
    realm: Vec<u8>,
    nonce: Vec<u8>,
    key: Vec<u8>,
    relayed: SocketAddrV4,
}

/// Sends `msg` and waits for the answer to its transaction id.
async fn transact(socket: &UdpSocket, server: SocketAddr, msg: &Message) -> Result<Vec<u8>> {
    socket
        .send_to(&msg.bytes, server)
        .await
        .map_err(io(format!("send a TURN request to {server}")))?;
    let id = msg.bytes[8..20].to_vec();
    let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
    let mut buf = vec![0u8; 2048];
    loop {
        match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
            Err(_) => {
                return Err(turn_error(format!(
                    "no TURN answer from {server} within {ANSWER_WAIT:?}"
                )))
            }
            Ok(Err(_)) => continue,
            Ok(Ok((n, _))) => {
                if Parsed::parse(&buf[..n]).is_some_and(|p| p.id == id.as_slice()) {
                    return Ok(buf[..n].to_vec());
                }
            }
        }
    }
}

impl Client {
    /// Allocates a UDP relay on `server` with the long-term credentials `user`/`pass`; a
    /// refused attempt is tried again from a fresh socket (up to 3 in all).
    async fn allocate(server: SocketAddr, user: &str, pass: &str) -> Result<Client> {
        let mut last = None;
        for _ in 0..3 {
            let socket = UdpSocket::bind(("127.0.0.1", 0))
                .await
                .map_err(io("bind 127.0.0.1:0 for the TURN echo"))?;
            match Client::allocate_on(socket, server, user, pass).await {
                Ok(client) => return Ok(client),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| turn_error("no allocation attempt")))
    }

    async fn allocate_on(
        socket: UdpSocket,
        server: SocketAddr,
        user: &str,
        pass: &str,
    ) -> Result<Client> {
        let transport = [17u8, 0, 0, 0];
        let first = Message::new(ALLOCATE, transaction_id()).attr(REQUESTED_TRANSPORT, &transport);
        let answer = transact(&socket, server, &first).await?;
        let p = Parsed::parse(&answer).ok_or_else(|| turn_error("unparsable Allocate answer"))?;
        let (realm, nonce) = match (p.kind, p.get(REALM), p.get(NONCE)) {
            (ALLOCATE_ERR, Some(r), Some(n)) => (r.to_vec(), n.to_vec()),
            _ => {
                return Err(turn_error(format!(
                    "Allocate was not answered 401 with a realm and nonce (type {:#06x})",
                    p.kind
                )))
            }
        };
        let mut md5 = Md5::new();
        md5.update(format!("{user}:").as_bytes());
        md5.update(&realm);
        md5.update(format!(":{pass}").as_bytes());
        let key = md5.finalize().to_vec();
        let second = Message::new(ALLOCATE, transaction_id())
            .attr(REQUESTED_TRANSPORT, &transport)
            .attr(USERNAME, user.as_bytes())
            .attr(REALM, &realm)
            .attr(NONCE, &nonce)
            .integrity(&key);
        let answer = transact(&socket, server, &second).await?;
        let p = Parsed::parse(&answer).ok_or_else(|| turn_error("unparsable Allocate answer"))?;
        let relayed = match (
            p.kind,
            p.get(XOR_RELAYED_ADDRESS).and_then(parse_xor_address),
        ) {
            (ALLOCATE_OK, Some(a)) => a,
            _ => {
                return Err(turn_error(format!(
                    "Allocate failed (type {:#06x}, error {:?})",
                    p.kind,
                    error_code(&p)
                )))
            }
        };
        Ok(Client {
            socket,
            server,
            user: user.to_owned(),
            realm,
            nonce,
            key,
            relayed,
        })
    }

    /// Releases the allocation (Refresh with `LIFETIME` 0, RFC 5766 §7); best effort.
    async fn release(self) {
        let msg = Message::new(REFRESH, transaction_id())
            .attr(LIFETIME, &0u32.to_be_bytes())
            .attr(USERNAME, self.user.as_bytes())
            .attr(REALM, &self.realm)
            .attr(NONCE, &self.nonce)
            .integrity(&self.key);
        let _ = transact(&self.socket, self.server, &msg).await;
    }

    /// Lets `peer` (a relayed address) send to this allocation.
    async fn permit(&self, peer: SocketAddrV4) -> Result<()> {
        let msg = Message::new(CREATE_PERMISSION, transaction_id())
            .attr(XOR_PEER_ADDRESS, &xor_address(peer))
            .attr(USERNAME, self.user.as_bytes())
            .attr(REALM, &self.realm)
            .attr(NONCE, &self.nonce)
            .integrity(&self.key);
        let answer = transact(&self.socket, self.server, &msg).await?;
        match Parsed::parse(&answer) {
            Some(p) if p.kind == CREATE_PERMISSION_OK => Ok(()),
            _ => Err(turn_error(format!("CreatePermission for {peer} failed"))),
        }
    }

    /// Sends `data` from this allocation's relay to `peer`.
    async fn send(&self, peer: SocketAddrV4, data: &[u8]) -> Result<()> {
        let msg = Message::new(SEND_INDICATION, transaction_id())
            .attr(XOR_PEER_ADDRESS, &xor_address(peer))
            .attr(DATA, data);
        self.socket
            .send_to(&msg.bytes, self.server)
            .await
            .map_err(io("send a TURN Send indication"))?;
        Ok(())
    }

    /// The next Data indication's payload equal to `want`, within `wait`: whether it came.
    async fn receive(&self, want: &[u8], wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        let mut buf = vec![0u8; 2048];
        loop {
            match tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)).await {
                Err(_) => return false,
                Ok(Err(_)) => continue,
                Ok(Ok((n, _))) => {
                    let got = Parsed::parse(&buf[..n])
                        .filter(|p| p.kind == DATA_INDICATION)
                        .and_then(|p| p.get(DATA).map(<[u8]>::to_vec));
                    if got.as_deref() == Some(want) {
                        return true;
                    }
                }
            }
        }
    }
}

/// The RTTs (ms) of `count` echoes, one at a time, between two allocations on the TURN server
/// at `server` (a proxy in front of coturn, or coturn itself), long-term credentials
/// `user`/`pass`: A sends through its relay to B's, B sends each back through its relay. A
/// lost echo is left out.
///
/// # Errors
/// [`HarnessError::Io`] when a socket fails or the server refuses an allocation or permission.
pub async fn relay_echo_rtts_ms(
    server: SocketAddr,
    user: &str,
    pass: &str,
    count: usize,
) -> Result<Vec<f64>> {
    let a = Client::allocate(server, user, pass).await?;
    let b = match Client::allocate(server, user, pass).await {
        Ok(b) => b,
        Err(e) => {
            a.release().await;
            return Err(e);
        }
    };
    let outcome = echoes(&a, &b, count).await;
    a.release().await;
    b.release().await;
    outcome
}

/// `count` echoes A → B → A, one at a time.
async fn echoes(a: &Client, b: &Client, count: usize) -> Result<Vec<f64>> {
    a.permit(b.relayed).await?;
    b.permit(a.relayed).await?;
    let mut rtts = Vec::with_capacity(count);
    for i in 0..count {
        let payload = format!("echo-{i}");
        let start = Instant::now();
        a.send(b.relayed, payload.as_bytes()).await?;
        if !b.receive(payload.as_bytes(), ANSWER_WAIT).await {
            continue;
        }
        b.send(a.relayed, payload.as_bytes()).await?;
        if a.receive(payload.as_bytes(), ANSWER_WAIT).await {
            rtts.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(rtts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_addresses_round_trip() {
        let a = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 49_152);
        assert_eq!(parse_xor_address(&xor_address(a)), Some(a));
    }

    #[test]
    fn attributes_are_padded_and_counted_and_parse_back() {
        let m = Message::new(SEND_INDICATION, [7; 12])
            .attr(DATA, b"abcde")
            .attr(USERNAME, b"u");
        // 20-byte header, DATA 4 + 8 (5 padded), USERNAME 4 + 4.
        assert_eq!(m.bytes.len(), 40);
        assert_eq!(u16::from_be_bytes([m.bytes[2], m.bytes[3]]), 20);
        let p = Parsed::parse(&m.bytes).expect("parses");
        assert_eq!(p.kind, SEND_INDICATION);
        assert_eq!(p.get(DATA), Some(&b"abcde"[..]));
        assert_eq!(p.get(USERNAME), Some(&b"u"[..]));
    }

    #[test]
    fn integrity_counts_itself_in_the_length() {
        let m = Message::new(ALLOCATE, [1; 12])
            .attr(REQUESTED_TRANSPORT, &[17, 0, 0, 0])
            .integrity(b"key");
        assert_eq!(m.bytes.len(), 20 + 8 + 24);
        assert_eq!(
            usize::from(u16::from_be_bytes([m.bytes[2], m.bytes[3]])),
            32
        );
    }
}
