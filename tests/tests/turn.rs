//! The coturn harness (`pairlab_tests::turn`): both credential modes start on 127.0.0.1, answer
//! a STUN Binding Request, and are gone (PID reaped) after stop/drop; coturn's REST credentials
//! match a vector computed independently (python3's hmac/hashlib/base64).

use std::path::Path;
use std::time::Duration;

use pairlab_tests::delay_proxy::DelayProxy;
use pairlab_tests::relay_echo::relay_echo_rtts_ms;
use pairlab_tests::turn::{
    binding_request, is_binding_success, rest_credentials, Coturn, TurnAuth,
};

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn rest_credentials_match_an_independent_vector() {
    // python3 -c 'import hmac,hashlib,base64; print(base64.b64encode(hmac.new(
    //   b"pairlab-secret", b"1700003600:subject-42", hashlib.sha1).digest()).decode())'
    let (username, credential) =
        rest_credentials("pairlab-secret", "subject-42", 3600, 1_700_000_000);
    assert_eq!(username, "1700003600:subject-42");
    assert_eq!(credential, "DoLkkL4OreOEcQRubrM6U6gkLU4=");
    // Same with a short secret and id: b"north", b"1000:A".
    let (username, credential) = rest_credentials("north", "A", 1000, 0);
    assert_eq!(username, "1000:A");
    assert_eq!(credential, "plJtal7b2FVPvsQLX1eqX5z/xes=");
}

#[test]
fn stun_binding_messages_have_the_rfc_5389_shape() {
    let id = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    let req = binding_request(id);
    assert_eq!(&req[0..4], &[0x00, 0x01, 0x00, 0x00]);
    assert_eq!(&req[4..8], &[0x21, 0x12, 0xA4, 0x42]);
    assert_eq!(&req[8..20], &id);
    let mut ok = req;
    ok[0] = 0x01; // 0x0101 Binding Success
    assert!(is_binding_success(&ok, &id));
    assert!(!is_binding_success(&req, &id), "a request is not a success");
    let mut other = ok;
    other[19] ^= 0xFF;
    assert!(!is_binding_success(&other, &id), "another transaction");
    assert!(!is_binding_success(&ok[..19], &id), "too short");
}

#[tokio::test]
async fn static_mode_starts_answers_stun_and_stops() {
    let turn = Coturn::start_static("alice", "wonderland")
        .await
        .unwrap_or_else(|e| panic!("coturn (static) did not start: {e}"));
    let pid = turn.pid();
    assert!(pid_alive(pid));
    assert!(
        turn.stun_ping(Duration::from_secs(2))
            .await
            .expect("probe socket"),
        "no STUN answer; log:\n{}",
        turn.log_tail(30)
    );
    let (min, max) = turn.relay_ports();
    assert!(min < max && min >= 1024, "relay range {min}..={max}");
    assert!(turn.dir().join("turn.log").is_file());
    assert_eq!(
        turn.auth(),
        &TurnAuth::Static {
            user: "alice".into(),
            pass: "wonderland".into()
        }
    );

    let ice = turn.ice_server();
    assert_eq!(
        ice.urls,
        vec![format!("turn:127.0.0.1:{}?transport=udp", turn.port())]
    );
    assert_eq!(ice.username.as_deref(), Some("alice"));
    assert_eq!(ice.credential.as_deref(), Some("wonderland"));

    let dir = turn.dir().to_path_buf();
    let status = turn.stop();
    assert!(status.is_some(), "turnserver was not reaped");
    assert!(!pid_alive(pid), "turnserver {pid} still runs after stop");
    assert!(!dir.exists(), "its temp dir {} is left", dir.display());
}

#[tokio::test]
async fn secret_mode_starts_answers_stun_through_a_proxy_and_stops_on_drop() {
    let turn = Coturn::start_secret("pairlab-secret")
        .await
        .unwrap_or_else(|e| panic!("coturn (secret) did not start: {e}"));
    let pid = turn.pid();
    assert!(turn
        .stun_ping(Duration::from_secs(2))
        .await
        .expect("probe socket"));
    assert!(
        !turn.log_tail(200).trim().is_empty(),
        "coturn logged nothing to {}",
        turn.log_path().display()
    );

    // REST credentials for a subject, expiring 600 s from now.
    let ice = turn.ice_server_for("subject-7", 600);
    let username = ice.username.clone().expect("username");
    let (expiry, subject) = username.split_once(':').expect("<expiry>:<id>");
    assert_eq!(subject, "subject-7");
    let expiry: u64 = expiry.parse().expect("expiry is unix seconds");
    let now = pairlab_tests::turn::unix_now();
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "expiry {expiry}, now {now}"
    );
    let (_, expected) = rest_credentials("pairlab-secret", "subject-7", expiry - now, now);
    assert_eq!(ice.credential.as_deref(), Some(expected.as_str()));

    // A STUN transaction through a delay proxy in front of coturn: the path the browsers take.
    let proxy = DelayProxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), turn.addr())
        .await
        .expect("proxy");
    proxy.set_delay_ms(30, 30);
    let via = turn.ice_server_via(proxy.local_addr(), "subject-7", 600);
    assert_eq!(
        via.urls,
        vec![format!("turn:{}?transport=udp", proxy.local_addr())]
    );
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let id = [7u8; 12];
    let start = tokio::time::Instant::now();
    socket
        .send_to(&binding_request(id), proxy.local_addr())
        .await
        .expect("send");
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
        .await
        .expect("STUN answer through the proxy in time")
        .expect("recv");
    let rtt = start.elapsed();
    assert!(is_binding_success(&buf[..n], &id));
    assert!(
        rtt >= Duration::from_millis(60),
        "STUN RTT via proxy {rtt:?}"
    );
    eprintln!("STUN binding through the proxy at 30/30 ms: {rtt:?}");

    drop(turn);
    assert!(!pid_alive(pid), "turnserver {pid} still runs after drop");
}

/// The relay echo (`pairlab_tests::relay_echo`) takes the relayed path: with coturn's
/// credentials it gets two allocations that echo through each other's relay; through the
/// delay proxy at D ms each way every echo crosses the proxy four times, so no RTT is below
/// 4·D; with a wrong password coturn refuses the allocation.
#[tokio::test]
async fn relay_echo_crosses_both_allocations_and_the_proxy_four_times() {
    let turn = Coturn::start_static("echo", "echo-pass")
        .await
        .expect("start coturn");
    let direct = relay_echo_rtts_ms(turn.addr(), "echo", "echo-pass", 5)
        .await
        .expect("relay echo straight to coturn");
    assert_eq!(
        direct.len(),
        5,
        "every echo comes back on loopback: {direct:?}"
    );

    let proxy = DelayProxy::start("127.0.0.1:0".parse().expect("addr"), turn.addr())
        .await
        .expect("start proxy");
    proxy.set_delay_ms(10, 10);
    let delayed = relay_echo_rtts_ms(proxy.local_addr(), "echo", "echo-pass", 5)
        .await
        .expect("relay echo through the proxy");
    eprintln!("relay echo RTTs, ms: direct {direct:?}; through the proxy at D = 10: {delayed:?}");
    assert_eq!(delayed.len(), 5, "{delayed:?}");
    assert!(
        delayed.iter().all(|rtt| *rtt >= 40.0),
        "an echo crosses the proxy four times (4·D = 40 ms): {delayed:?}"
    );
    // Two allocations per run, and the proxy saw both clients.
    assert_eq!(proxy.counters().clients, 2);

    assert!(
        relay_echo_rtts_ms(turn.addr(), "echo", "wrong", 1)
            .await
            .is_err(),
        "coturn must refuse an allocation with a wrong password"
    );
}
