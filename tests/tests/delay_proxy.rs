//! The UDP delay proxy (`pairlab_tests::delay_proxy`) on loopback: a client socket sends through
//! the proxy to an echo upstream; an echo crosses the proxy once each way, so its RTT is
//! `up + down` plus the (sub-millisecond) loopback base. The tests assert behaviour: an echo
//! never comes back sooner than the configured delays (lower bounds are strict), a cut delay
//! takes effect, order, independence of flows, drops. How much the proxy adds above the
//! configured delay on a loaded machine is a number, not a rule: the tests print it, and
//! `bench-probe` reports it per setting (`proxy overhead`, BENCHMARKS.md §1). Waiting for "the
//! proxy has the datagram" is waiting on its counters (`up_queued`), never a sleep.

use std::net::SocketAddr;
use std::time::Duration;

use pairlab_tests::delay_proxy::{DelayProxy, ProxyCounters};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

/// How long the order test holds its burst each way, ms: long enough that the fast flow's echo
/// comes back while it is held however slow the machine is.
const HOLD_MS: u64 = 1000;

/// How long a test waits for an echo that should come.
const PATIENCE: Duration = Duration::from_secs(2);

/// How long a test waits to be sure a dropped echo does not come (longer than any delay used
/// while dropping, plus slack).
const SILENCE: Duration = Duration::from_millis(300);

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// An echo server on 127.0.0.1: sends every datagram back to its sender. Aborted on drop.
struct Echo {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Echo {
    async fn start() -> Echo {
        let socket = UdpSocket::bind(localhost()).await.expect("bind echo");
        let addr = socket.local_addr().expect("echo addr");
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let _ = socket.send_to(&buf[..n], from).await;
            }
        });
        Echo { addr, task }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn client_of(proxy: &DelayProxy) -> UdpSocket {
    let socket = UdpSocket::bind(localhost()).await.expect("bind client");
    socket
        .connect(proxy.local_addr())
        .await
        .expect("connect client to proxy");
    socket
}

/// Sends `payload` and waits up to `wait` for it to come back: the RTT, or `None`.
async fn echo(client: &UdpSocket, payload: &[u8], wait: Duration) -> Option<Duration> {
    let start = Instant::now();
    client.send(payload).await.expect("send");
    let mut buf = [0u8; 2048];
    let deadline = start + wait;
    loop {
        match tokio::time::timeout_at(deadline, client.recv(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(n)) if &buf[..n] == payload => return Some(start.elapsed()),
            // A late echo of an earlier payload, or a transient error: keep waiting.
            Ok(_) => continue,
        }
    }
}

/// The median RTT of `n` sequential echoes (each must come back).
async fn median_rtt(client: &UdpSocket, n: usize, tag: &str) -> Duration {
    let mut rtts = Vec::with_capacity(n);
    for i in 0..n {
        let payload = format!("{tag}-{i}");
        let rtt = echo(client, payload.as_bytes(), PATIENCE)
            .await
            .unwrap_or_else(|| panic!("echo {payload} did not come back"));
        rtts.push(rtt);
    }
    rtts.sort();
    rtts[n / 2]
}

/// The echo held at least the configured delays; prints what the proxy added above them.
fn assert_rtt(label: &str, rtt: Duration, up_ms: u64, down_ms: u64) {
    let expected = Duration::from_millis(up_ms + down_ms);
    eprintln!(
        "{label}: up {up_ms} ms + down {down_ms} ms → median RTT {rtt:?} (proxy and scheduling added {:?})",
        rtt.saturating_sub(expected)
    );
    assert!(
        rtt >= expected,
        "{label}: RTT {rtt:?} below the configured {expected:?}"
    );
}

/// Waits (polling the proxy's counters, at most [`PATIENCE`]) until `holds` is true of them.
async fn wait_counters(proxy: &DelayProxy, what: &str, holds: impl Fn(&ProxyCounters) -> bool) {
    let start = Instant::now();
    loop {
        let counters = proxy.counters();
        if holds(&counters) {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the proxy never got to {what}: {counters:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn echo_rtt_is_up_plus_down_and_a_delay_change_takes_effect_while_running() {
    let upstream = Echo::start().await;
    let proxy = DelayProxy::start(localhost(), upstream.addr)
        .await
        .expect("start proxy");
    let client = client_of(&proxy).await;

    let base = median_rtt(&client, 5, "base").await;
    assert_rtt("no delay", base, 0, 0);

    proxy.set_delay_ms(20, 20);
    assert_rtt("20/20", median_rtt(&client, 5, "a").await, 20, 20);

    proxy.set_delay_ms(60, 10);
    assert_eq!(proxy.delay_ms(), (60, 10));
    assert_rtt("60/10", median_rtt(&client, 5, "b").await, 60, 10);

    // Through another handle, and back down: the change applies to the next datagrams.
    let handle = proxy.handle();
    handle.set_delay_ms(5, 50);
    assert_rtt("5/50", median_rtt(&client, 5, "c").await, 5, 50);
    handle.set_delay_ms(0, 0);
    let cut = median_rtt(&client, 5, "d").await;
    assert_rtt("0/0 again", cut, 0, 0);
    // The cut took effect: below the 55 ms configured just before (a whole delay of margin).
    assert!(
        cut < Duration::from_millis(55),
        "after the delay was cut to 0/0 the RTT is still {cut:?}"
    );

    let counters = proxy.counters();
    assert_eq!(counters.up_forwarded, 25);
    assert_eq!(counters.down_forwarded, 25);
    assert_eq!(counters.dropped(), 0);
    assert_eq!(counters.clients, 1);
}

#[tokio::test]
async fn delayed_datagrams_keep_their_order_and_one_flow_does_not_block_another() {
    let upstream = Echo::start().await;
    let proxy = DelayProxy::start(localhost(), upstream.addr)
        .await
        .expect("start proxy");
    let slow = client_of(&proxy).await;
    let fast = client_of(&proxy).await;
    // Open both flows with no delay, then delay everything by 1 s each way.
    assert!(echo(&slow, b"open-slow", PATIENCE).await.is_some());
    assert!(echo(&fast, b"open-fast", PATIENCE).await.is_some());
    proxy.set_delay_ms(HOLD_MS, HOLD_MS);

    // A burst on the slow flow comes back complete and in order.
    let start = Instant::now();
    for i in 0..20u8 {
        slow.send(&[i]).await.expect("send burst");
    }
    // Once the proxy holds the whole burst, cut the delay: the fast flow's echo comes back while
    // the burst still waits (it is not queued behind the other flow's datagrams).
    wait_counters(&proxy, "hold the burst", |c| c.up_queued == 22).await;
    proxy.set_delay_ms(0, 0);
    let fast_rtt = echo(&fast, b"fast", PATIENCE)
        .await
        .expect("fast echo came back");
    let at_fast = proxy.counters();
    eprintln!(
        "fast echo {fast_rtt:?} after the cut, {:?} after the burst was sent",
        start.elapsed()
    );
    assert_eq!(
        at_fast.up_forwarded, 3,
        "the fast flow waited for the slow one: when its echo came back the proxy had sent on \
         more than the two openers and it ({at_fast:?}, fast RTT {fast_rtt:?})"
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 16];
    while got.len() < 20 {
        let n = timeout(PATIENCE, slow.recv(&mut buf))
            .await
            .expect("burst echo in time")
            .expect("recv burst");
        got.push(buf[..n].to_vec());
    }
    let burst_rtt = start.elapsed();
    let expected: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i]).collect();
    assert_eq!(got, expected, "the burst came back out of order");
    // Up, the burst keeps the delay it arrived with; down, it arrives after the cut.
    assert!(
        burst_rtt >= Duration::from_millis(HOLD_MS),
        "the burst lost the {HOLD_MS} ms up delay it arrived with: {burst_rtt:?}"
    );
}

#[tokio::test]
async fn pause_drops_everything_and_resume_forwards_again() {
    let upstream = Echo::start().await;
    let proxy = DelayProxy::start(localhost(), upstream.addr)
        .await
        .expect("start proxy");
    let client = client_of(&proxy).await;
    assert!(echo(&client, b"before", PATIENCE).await.is_some());

    proxy.pause(true);
    assert!(proxy.is_paused());
    for i in 0..5 {
        let payload = format!("paused-{i}");
        assert_eq!(
            echo(&client, payload.as_bytes(), SILENCE).await,
            None,
            "{payload} came through a paused proxy"
        );
    }
    assert_eq!(proxy.counters().up_dropped, 5);

    // Datagrams already queued when the pause begins are dropped too.
    proxy.pause(false);
    proxy.set_delay_ms(200, 0);
    client.send(b"queued").await.expect("send queued");
    wait_counters(&proxy, "hold `queued`", |c| c.up_queued == 2).await;
    proxy.pause(true);
    assert_eq!(echo(&client, b"during", SILENCE).await, None);
    assert_eq!(proxy.counters().up_dropped, 7, "{:?}", proxy.counters());

    proxy.pause(false);
    proxy.set_delay_ms(0, 0);
    assert!(
        echo(&client, b"after", PATIENCE).await.is_some(),
        "nothing came back after resume: {:?}",
        proxy.counters()
    );
    let counters = proxy.counters();
    assert_eq!(counters.up_forwarded, 2);
    assert_eq!(counters.down_forwarded, 2);
}

#[tokio::test]
async fn loss_one_drops_all_and_loss_zero_drops_none() {
    let upstream = Echo::start().await;
    let proxy = DelayProxy::start(localhost(), upstream.addr)
        .await
        .expect("start proxy");
    let client = client_of(&proxy).await;

    proxy.set_loss(1.0);
    for i in 0..10 {
        let payload = format!("lost-{i}");
        assert_eq!(echo(&client, payload.as_bytes(), SILENCE / 3).await, None);
    }
    assert_eq!(proxy.counters().up_dropped, 10);
    assert_eq!(proxy.counters().up_forwarded, 0);

    proxy.set_loss(0.0);
    for i in 0..50 {
        let payload = format!("kept-{i}");
        assert!(
            echo(&client, payload.as_bytes(), PATIENCE).await.is_some(),
            "{payload} was dropped at loss 0"
        );
    }
    let counters = proxy.counters();
    assert_eq!(counters.up_forwarded, 50);
    assert_eq!(counters.down_forwarded, 50);
    assert_eq!(counters.up_dropped, 10);
    assert_eq!(counters.down_dropped, 0);

    // In between, about that share is lost (each direction draws: P(echo) = (1 - p)²).
    proxy.set_loss(0.5);
    let mut back = 0;
    for i in 0..200 {
        if echo(&client, format!("half-{i}").as_bytes(), SILENCE / 6)
            .await
            .is_some()
        {
            back += 1;
        }
    }
    assert!(
        (20..=80).contains(&back),
        "{back} of 200 echoes came back at loss 0.5 (expected about 50)"
    );
}

#[tokio::test]
async fn two_clients_get_distinct_upstream_ports() {
    let upstream = UdpSocket::bind(localhost()).await.expect("bind upstream");
    let proxy = DelayProxy::start(localhost(), upstream.local_addr().expect("addr"))
        .await
        .expect("start proxy");
    let a = client_of(&proxy).await;
    let b = client_of(&proxy).await;
    a.send(b"from a").await.expect("send a");
    b.send(b"from b").await.expect("send b");

    let mut buf = [0u8; 64];
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (n, from) = timeout(PATIENCE, upstream.recv_from(&mut buf))
            .await
            .expect("upstream got a datagram")
            .expect("recv");
        seen.push((buf[..n].to_vec(), from));
    }
    seen.sort();
    let (from_a, from_b) = (seen[0].1, seen[1].1);
    assert_eq!(seen[0].0, b"from a");
    assert_eq!(seen[1].0, b"from b");
    assert_ne!(
        from_a.port(),
        from_b.port(),
        "both clients share one upstream port"
    );
    assert_ne!(from_a.port(), proxy.local_addr().port());
    let a_addr = a.local_addr().expect("a addr");
    let b_addr = b.local_addr().expect("b addr");
    assert_eq!(proxy.upstream_port_of(a_addr), Some(from_a.port()));
    assert_eq!(proxy.upstream_port_of(b_addr), Some(from_b.port()));
    assert_eq!(proxy.counters().clients, 2);

    // Answers go back to the right client.
    upstream.send_to(b"to a", from_a).await.expect("answer a");
    upstream.send_to(b"to b", from_b).await.expect("answer b");
    let n = timeout(PATIENCE, a.recv(&mut buf))
        .await
        .expect("a answered")
        .expect("recv a");
    assert_eq!(&buf[..n], b"to a");
    let n = timeout(PATIENCE, b.recv(&mut buf))
        .await
        .expect("b answered")
        .expect("recv b");
    assert_eq!(&buf[..n], b"to b");
}

#[tokio::test]
async fn stop_ends_forwarding() {
    let upstream = Echo::start().await;
    let proxy = DelayProxy::start(localhost(), upstream.addr)
        .await
        .expect("start proxy");
    let handle = proxy.handle();
    let client = client_of(&proxy).await;
    assert!(echo(&client, b"before", PATIENCE).await.is_some());
    proxy.stop();
    tokio::task::yield_now().await;
    assert_eq!(echo(&client, b"after stop", SILENCE).await, None);
    // The handle outlives the proxy and still reads the final counters.
    assert_eq!(handle.counters().up_forwarded, 1);
}

/// A STUN Binding request (RFC 8489 §5) carrying `USERNAME` = `user`, then a `SOFTWARE`
/// attribute after it (so the parser must step over the username's padding), with a
/// transaction id ending in `tag`.
fn stun_with_username(user: &str, tag: u8) -> Vec<u8> {
    let mut attrs = Vec::new();
    for (kind, value) in [
        (0x0006u16, user.as_bytes()),
        (0x8022, b"pairlab-test".as_slice()),
    ] {
        attrs.extend_from_slice(&kind.to_be_bytes());
        attrs.extend_from_slice(&u16::try_from(value.len()).expect("short").to_be_bytes());
        attrs.extend_from_slice(value);
        attrs.resize(attrs.len().div_ceil(4) * 4, 0);
    }
    let mut msg = vec![0x00, 0x01];
    msg.extend_from_slice(&u16::try_from(attrs.len()).expect("short").to_be_bytes());
    msg.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    msg.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, tag]);
    msg.extend_from_slice(&attrs);
    msg
}

#[test]
fn stun_username_reads_the_attribute_and_nothing_else() {
    use pairlab_tests::delay_proxy::stun_username;
    let msg = stun_with_username("1767225600:alice", 1);
    assert_eq!(stun_username(&msg), Some("1767225600:alice"));
    // A username whose length is not a multiple of 4 is padded; the next attribute still parses.
    assert_eq!(
        stun_username(&stun_with_username("1:bob", 2)),
        Some("1:bob")
    );
    // TURN ChannelData (RFC 8656 §12.4: first byte 0x40–0x7F), plain text, a short datagram.
    let mut channel_data = vec![0x40, 0x00, 0x00, 0x04];
    channel_data.extend_from_slice(b"ping");
    assert_eq!(stun_username(&channel_data), None);
    assert_eq!(stun_username(b"hello, this is not STUN at all"), None);
    assert_eq!(stun_username(&msg[..19]), None);
    // A length that runs past the datagram is not trusted.
    let mut truncated = msg.clone();
    truncated.truncate(msg.len() - 4);
    assert_eq!(stun_username(&truncated), None);
}

#[tokio::test]
async fn a_turn_users_flow_gets_its_own_delay_and_others_do_not() {
    let upstream = Echo::start().await;
    let proxy = DelayProxy::start(localhost(), upstream.addr)
        .await
        .expect("start proxy");
    proxy.set_user_delay_ms(":alice", 40);
    let (alice, bob) = (client_of(&proxy).await, client_of(&proxy).await);
    // Each flow names its user in a STUN request, as a browser's TURN Allocate does.
    let alice_stun = stun_with_username("1767225600:alice", 1);
    let bob_stun = stun_with_username("1767225600:bob", 2);
    let alice_first = echo(&alice, &alice_stun, PATIENCE)
        .await
        .expect("alice's STUN request echoed");
    echo(&bob, &bob_stun, PATIENCE)
        .await
        .expect("bob's STUN request echoed");
    // 40 ms added each way from the identifying datagram on, to every later datagram.
    assert!(
        alice_first >= Duration::from_millis(80),
        "the identifying datagram is delayed: {alice_first:?}"
    );
    let alice_rtt = median_rtt(&alice, 5, "alice").await;
    let bob_rtt = median_rtt(&bob, 5, "bob").await;
    eprintln!("alice (40 ms each way) {alice_rtt:?}, bob (none) {bob_rtt:?}");
    assert!(
        alice_rtt >= Duration::from_millis(80),
        "alice's later datagrams keep her delay: {alice_rtt:?}"
    );
    assert!(
        bob_rtt < Duration::from_millis(80),
        "bob's flow does not get alice's delay: {bob_rtt:?}"
    );
}
