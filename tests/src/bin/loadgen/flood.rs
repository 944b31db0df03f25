//! `flood`: one game member floods its game with large reports. A pair plays a game of a
//! `fifo` scene without probe; one member then sends `episode_summary` reports of about
//! `--report-kb` KB (the partner named once, with up to `MAX_QUALITY_CHANGES` quality changes,
//! episode numbers rising) at `--rate` per second (under the server's 200 frames/s per
//! connection) for `--seconds`; then its partner leaves, which ends the game, and the flood goes
//! on for `--after-seconds`. Reported per phase: reports sent, refused (`bad_message`),
//! `episode_summary` lines in the record, the record's growth (bytes/s of `events.jsonl`) and
//! the server's CPU.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pairlab_shared::{
    ClientMessage, ErrorCode, PlayerIndex, Pong, ServerMessage, MAX_QUALITY_CHANGES,
};
use pairlab_tests::record::{events_of, read_events, ResearchEventKind};
use pairlab_tests::WorkDir;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::churn::{fifo_scene, LONG_WAIT_MS};
use crate::client::{connect_scene, leave, pong, until_game, Ws, CONNECT_TIMEOUT};
use crate::server::{start_pairlab, PairlabExt};
use crate::system::{cpu_seconds, load_average, machine};
use crate::{LoadgenError, Result};

pub(crate) struct FloodArgs {
    pub(crate) bin: PathBuf,
    pub(crate) log: String,
    pub(crate) report_kb: usize,
    pub(crate) rate: f64,
    pub(crate) seconds: Duration,
    pub(crate) after: Duration,
}

/// An `episode_summary` of `game_id`'s `episode` naming `partner` (a player index), padded with quality changes
/// to about `bytes` bytes (at most [`MAX_QUALITY_CHANGES`] of them).
pub(crate) fn big_report(
    game_id: &str,
    partner: PlayerIndex,
    episode: u64,
    bytes: usize,
) -> String {
    // One change is about 32 bytes of JSON.
    let changes: Vec<_> = (0..(bytes / 32).min(MAX_QUALITY_CHANGES))
        .map(|i| json!({"level": "warning", "at_ms": 1000.5 + i as f64}))
        .collect();
    json!({
        "type": "episode_summary",
        "game_id": game_id,
        "episode": episode,
        "frames": 600,
        "inputs_sent": 600,
        "peers": [{
            "peer_index": partner,
            "inputs_received": 600,
            "connection": null,
            "rtt_ms": null,
            "quality_changes": changes,
            "ice_restarts": 0,
        }],
    })
    .to_string()
}

/// One phase's figures.
struct Phase {
    name: &'static str,
    secs: f64,
    sent: u64,
    refused: u64,
    lines: usize,
    bytes: u64,
    cpu: Option<f64>,
    load: String,
}

/// Sends reports at `rate` for `len`, counting them; the reader counts the refusals.
async fn flood_for(
    ws: &mut futures_util::stream::SplitSink<Ws, Message>,
    game_id: &str,
    partner: PlayerIndex,
    args: &FloodArgs,
    episode: &mut u64,
    pings: &mut tokio::sync::mpsc::UnboundedReceiver<u64>,
    len: Duration,
) -> std::result::Result<u64, String> {
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < len {
        while let Ok(seq) = pings.try_recv() {
            let pong = ClientMessage::Pong(Pong { seq }).to_json();
            ws.send(Message::text(pong))
                .await
                .map_err(|e| format!("send: {e}"))?;
        }
        *episode += 1;
        let report = big_report(game_id, partner, *episode, args.report_kb * 1000);
        ws.send(Message::text(report))
            .await
            .map_err(|e| format!("send: {e}"))?;
        sent += 1;
        let due = start + Duration::from_secs_f64(sent as f64 / args.rate);
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
    }
    Ok(sent)
}

pub(crate) async fn flood(args: FloodArgs) -> Result<()> {
    if !(args.rate > 0.0 && args.rate <= 190.0) {
        return Err(LoadgenError::Args(
            "--rate must be over 0 and at most 190 (the server closes a connection over 200 frames/s)".into(),
        ));
    }
    let machine = machine();
    println!("{machine}");
    let work = WorkDir::fresh("loadgen-flood")?;
    let server = start_pairlab(&args.bin, &args.log, &work, &fifo_scene(LONG_WAIT_MS)).await?;
    let (pid, port) = (server.pid(), server.port());
    let events = server.events_path("fifo");
    let member = |s: &'static str| async move {
        let mut ws = connect_scene(port, s, None).await?;
        let started = until_game(&mut ws, CONNECT_TIMEOUT).await?;
        Ok::<_, String>((ws, started))
    };
    let (a, b) = tokio::join!(member("flood-a"), member("flood-b"));
    let ((ws, game), (mut partner_ws, _)) = match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Err(server.failed(&format!("no game: {e}"))),
    };
    let partner = game.partners.first().copied().unwrap_or_default();
    println!(
        "flood: server pid {pid} on 127.0.0.1:{port}; game {} started; one report is {} bytes",
        game.game_id,
        big_report(&game.game_id, partner, 1, args.report_kb * 1000).len()
    );
    let (mut sink, mut stream) = ws.split();
    // The flooder's reader counts refusals and hands the pings to the sender, which answers
    // them between reports.
    let refused = Arc::new(AtomicU64::new(0));
    let (ping_tx, mut pings) = tokio::sync::mpsc::unbounded_channel();
    let reader = {
        let refused = refused.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(t) = msg else { continue };
                match serde_json::from_str::<ServerMessage>(&t) {
                    Ok(ServerMessage::Error(e)) if e.code == ErrorCode::BadMessage => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(ServerMessage::Ping(p)) => {
                        let _ = ping_tx.send(p.seq);
                    }
                    _ => {}
                }
            }
        })
    };
    // The partner answers pings until it leaves.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut partner_task = Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop_rx.changed() => break,
                m = partner_ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        if let Ok(ServerMessage::Ping(p)) = serde_json::from_str::<ServerMessage>(&t) {
                            let _ = pong(&mut partner_ws, p.seq).await;
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
        }
        leave(partner_ws).await;
    }));

    let mut phases = Vec::new();
    let mut episode = 0u64;
    let count = |path: &std::path::Path| {
        read_events(path).map_or(0, |ev| {
            events_of(&ev, ResearchEventKind::EpisodeSummary).len()
        })
    };
    let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
    for (name, len) in [
        ("game live", args.seconds),
        ("after game_ended", args.after),
    ] {
        if name == "after game_ended" {
            let _ = stop_tx.send(true);
            if let Some(task) = partner_task.take() {
                let _ = task.await;
            }
            // The partner's leave and the game's end reach the record first.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let (bytes0, lines0, refused0) = (
            size(&events),
            count(&events),
            refused.load(Ordering::Relaxed),
        );
        let cpu0 = cpu_seconds(&pid.to_string());
        let t0 = Instant::now();
        let sent = flood_for(
            &mut sink,
            &game.game_id,
            partner,
            &args,
            &mut episode,
            &mut pings,
            len,
        )
        .await
        .map_err(|e| server.failed(&format!("the flooder's connection ended: {e}")))?;
        // The record syncs within a second: wait for the last lines.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let secs = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds(&pid.to_string())
            .zip(cpu0)
            .map(|(b, a)| (b - a) / secs * 100.0);
        phases.push(Phase {
            name,
            secs: len.as_secs_f64(),
            sent,
            refused: refused.load(Ordering::Relaxed) - refused0,
            lines: count(&events) - lines0,
            bytes: size(&events) - bytes0,
            cpu,
            load: load_average(),
        });
    }
    let _ = sink
        .send(Message::text(ClientMessage::Leave.to_json()))
        .await;
    let lost = server.health_count("/record/lines_lost").await;
    let overflow = server.health_count("/record/queue_overflows").await;
    server.stop().await;
    reader.abort();

    println!();
    println!(
        "## flood: one member sends {} KB episode_summary reports at {}/s",
        args.report_kb, args.rate
    );
    println!("{machine}");
    println!("| phase | seconds | reports sent | refused (bad_message) | episode_summary lines recorded | record growth B/s | server CPU % | load avg |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for p in &phases {
        println!(
            "| {} | {:.0} | {} | {} | {} | {:.0} | {} | {} |",
            p.name,
            p.secs,
            p.sent,
            p.refused,
            p.lines,
            p.bytes as f64 / p.secs,
            p.cpu.map_or("?".into(), |c| format!("{c:.0}")),
            p.load
        );
    }
    println!(
        "/healthz record at the end: lines_lost {}, queue_overflows {}",
        crate::client::fmt_opt(lost),
        crate::client::fmt_opt(overflow)
    );
    println!("server log: {}", work.join("server.log").display());
    Ok(())
}
