//! Micro-benchmarks of the wire codec (BENCHMARKS.md, section 3 "Micro-benchmarks"): JSON
//! decode and encode of the hot messages, i.e. those sent most often per participant
//! (`ping`/`pong`, every few seconds for everyone) or largest in bulk (`probe_signal`: trickled
//! ICE candidates and the SDP offer and answer of every probe).
//!
//! - decode: the client's frame through [`ClientMessage::decode`], what the shell runs on
//!   every text frame (serde plus the protocol's extra checks);
//! - encode: the server's frame through [`ServerMessage::to_json`], what the shell sends.
//!
//! Throughput is reported in bytes of the frame (`Throughput::Bytes`).
//!
//! Run: `cargo bench -p pairlab-server --bench codec`; `cargo test -p pairlab-server --benches`
//! runs each case once as a smoke test.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pairlab_shared::{
    ClientMessage, Ping, ProbeSessionId, ProbeSignalIn, ProbeSignalOut, ServerMessage,
    SignalPayload, SignalType,
};

const PROBE: &str = "6f1c2a7e-93d4-4b8e-a5f0-2c9d81e3b4a7";

/// A server-reflexive candidate as Chromium trickles it (`RTCIceCandidate.candidate`).
const CANDIDATE: &str = "candidate:3362034548 1 udp 1686052607 203.0.113.47 53421 typ srflx \
raddr 192.168.1.23 rport 53421 generation 0 ufrag x9Qb network-id 1 network-cost 10";

/// A Chromium-style DataChannel offer that carries its gathered candidates (host, srflx and
/// relay on five interfaces, IPv4 and IPv6, UDP and TCP), as an offer created after gathering does: about 3 KB,
/// the size of the largest `probe_signal` a probe sends. Lines end in CRLF (RFC 8866).
fn sdp_offer() -> String {
    let mut lines = vec![
        "v=0".to_owned(),
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1".to_owned(),
        "s=-".to_owned(),
        "t=0 0".to_owned(),
        "a=group:BUNDLE 0".to_owned(),
        "a=extmap-allow-mixed".to_owned(),
        "a=msid-semantic: WMS".to_owned(),
        "m=application 53421 UDP/DTLS/SCTP webrtc-datachannel".to_owned(),
        "c=IN IP4 203.0.113.47".to_owned(),
    ];
    let candidates = [
        "1 1 udp 2122260223 192.168.1.23 53421 typ host generation 0 network-id 1 network-cost 10",
        "2 1 udp 2122197247 2001:db8:85a3::8a2e:370:7334 41822 typ host generation 0 network-id 2 network-cost 10",
        "3 1 udp 2122129151 10.8.0.6 60311 typ host generation 0 network-id 3 network-cost 50",
        "4 1 tcp 1518280447 192.168.1.23 9 typ host tcptype active generation 0 network-id 1 network-cost 10",
        "5 1 tcp 1518217471 2001:db8:85a3::8a2e:370:7334 9 typ host tcptype active generation 0 network-id 2 network-cost 10",
        "6 1 tcp 1518149375 10.8.0.6 9 typ host tcptype active generation 0 network-id 3 network-cost 50",
        "7 1 udp 1686052607 203.0.113.47 53421 typ srflx raddr 192.168.1.23 rport 53421 generation 0 network-id 1 network-cost 10",
        "8 1 udp 1685987071 2001:db8:85a3::8a2e:370:7334 41822 typ srflx raddr 2001:db8:85a3::8a2e:370:7334 rport 41822 generation 0 network-id 2 network-cost 10",
        "9 1 udp 41885439 198.51.100.12 61205 typ relay raddr 203.0.113.47 rport 53421 generation 0 network-id 1 network-cost 10",
        "10 1 udp 25108223 198.51.100.12 57334 typ relay raddr 203.0.113.47 rport 40112 generation 0 network-id 1 network-cost 10",
        "11 1 udp 41819903 198.51.100.12 49880 typ relay raddr 10.8.0.6 rport 60311 generation 0 network-id 3 network-cost 50",
        "12 1 tcp 8331007 198.51.100.12 61988 typ relay raddr 203.0.113.47 rport 40113 generation 0 network-id 1 network-cost 10",
        "13 1 udp 2122063615 172.17.0.1 38920 typ host generation 0 network-id 4 network-cost 50",
        "14 1 tcp 1518083839 172.17.0.1 9 typ host tcptype active generation 0 network-id 4 network-cost 50",
        "15 1 udp 2122000639 2001:db8:85a3::4c1d:2e0f:91aa:7b3c 50744 typ host generation 0 network-id 5 network-cost 10",
        "16 1 tcp 1518020863 2001:db8:85a3::4c1d:2e0f:91aa:7b3c 9 typ host tcptype active generation 0 network-id 5 network-cost 10",
        "17 1 udp 1685921535 2001:db8:85a3::4c1d:2e0f:91aa:7b3c 50744 typ srflx raddr 2001:db8:85a3::4c1d:2e0f:91aa:7b3c rport 50744 generation 0 network-id 5 network-cost 10",
    ];
    for (i, c) in candidates.iter().enumerate() {
        lines.push(format!("a=candidate:{}{c}", 1_000_000_000 + 97 * i as u64));
    }
    lines.extend(
        [
            "a=ice-ufrag:x9Qb",
            "a=ice-pwd:3Ju7BwN1kPz0Yt5hQm8Gr2Lc",
            "a=ice-options:trickle",
            "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08",
            "a=setup:actpass",
            "a=mid:0",
            "a=sctp-port:5000",
            "a=max-message-size:262144",
        ]
        .map(str::to_owned),
    );
    let mut sdp = lines.join("\r\n");
    sdp.push_str("\r\n");
    sdp
}

/// One hot message: the client's frame, and the server's form of the same message.
struct Case {
    name: &'static str,
    client_json: String,
    server_msg: ServerMessage,
}

fn probe_signal_case(name: &'static str, signal_type: SignalType, payload: SignalPayload) -> Case {
    let probe_session_id = ProbeSessionId::from_string(PROBE);
    let out = ClientMessage::ProbeSignal(ProbeSignalOut {
        probe_session_id: probe_session_id.clone(),
        target_index: 1,
        signal_type,
        payload: Some(payload.clone()),
    });
    Case {
        name,
        client_json: out.to_json(),
        server_msg: ServerMessage::ProbeSignal(ProbeSignalIn {
            probe_session_id,
            from_index: 0,
            signal_type,
            payload: Some(payload),
        }),
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "pong_ping",
            client_json: r#"{"type":"pong","seq":123456}"#.to_owned(),
            server_msg: ServerMessage::Ping(Ping { seq: 123_457 }),
        },
        probe_signal_case(
            "probe_signal_candidate",
            SignalType::IceCandidate,
            SignalPayload::Candidate {
                candidate: CANDIDATE.to_owned(),
                sdp_mid: Some("0".to_owned()),
                sdp_m_line_index: Some(0),
            },
        ),
        probe_signal_case(
            "probe_signal_offer_3kb",
            SignalType::Offer,
            SignalPayload::Description { sdp: sdp_offer() },
        ),
    ]
}

fn bench_codec(c: &mut Criterion) {
    for case in cases() {
        // The case is what it claims: the client's frame decodes, and the server's frame
        // round-trips through serde unchanged.
        let decoded = ClientMessage::decode(&case.client_json);
        assert!(decoded.is_ok(), "{}: {decoded:?}", case.name);
        let server_json = case.server_msg.to_json();
        let back: ServerMessage = match serde_json::from_str(&server_json) {
            Ok(m) => m,
            Err(e) => panic!("{}: server frame does not parse back: {e}", case.name),
        };
        assert_eq!(back, case.server_msg, "{}", case.name);
        if case.name == "probe_signal_offer_3kb" {
            let len = case.client_json.len();
            assert!((2_500..=3_500).contains(&len), "offer frame is {len} B");
        }

        let mut g = c.benchmark_group(format!("codec/{}", case.name));
        g.throughput(Throughput::Bytes(case.client_json.len() as u64));
        g.bench_function("decode_client", |b| {
            b.iter(|| ClientMessage::decode(black_box(&case.client_json)))
        });
        g.throughput(Throughput::Bytes(server_json.len() as u64));
        g.bench_function("encode_server", |b| {
            b.iter(|| black_box(&case.server_msg).to_json())
        });
        g.finish();
    }
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
