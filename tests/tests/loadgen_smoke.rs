//! Smoke runs of the load generator (`src/bin/loadgen/`) with tiny sizes: each
//! scenario starts the real server, drives it, stops it, and prints its table. Benchmarks are
//! not timed tests: these check what must hold at any speed (every client connected, nothing
//! lost, nobody dropped, updates coalesced), never a latency.

use std::process::Command;

use pairlab_tests::pairlab_bin;

/// Runs `loadgen <args>` against the harness's `pairlab` binary; returns its stdout, after
/// checking it exited with success.
fn loadgen(args: &[&str]) -> String {
    let bin = pairlab_bin().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("--server-bin")
        .arg(&bin)
        .args(args)
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "loadgen {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The cells of the table rows (lines starting with `|`, not the header or the rule) that
/// come after `marker`.
fn rows_after<'a>(stdout: &'a str, marker: &str) -> Vec<Vec<&'a str>> {
    let start = stdout
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in:\n{stdout}"));
    stdout[start..]
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|-"))
        .skip(1)
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect()
}

#[test]
fn hold_reaches_every_connection() {
    let out = loadgen(&[
        "hold",
        "--n",
        "60",
        "--step",
        "30",
        "--checkpoints",
        "30",
        "--cpu-window-s",
        "0.2",
    ]);
    let rows = rows_after(&out, "## hold");
    assert_eq!(rows.len(), 2, "checkpoints 30 and 60:\n{out}");
    assert_eq!(rows[0][0], "30/30", "{out}");
    assert_eq!(rows[1][0], "60/60", "{out}");
    assert_eq!(
        rows[1][1], "60",
        "the server counts 60 open WebSockets:\n{out}"
    );
    assert!(
        out.contains("failed to connect: 0, dropped while held: 0"),
        "{out}"
    );
}

/// The summary line of stdout that starts with `prefix`, and the number right after its
/// first `": "` (`/metrics every 100ms: 14 scrapes, …` → 14).
fn summary<'a>(stdout: &'a str, prefix: &str) -> (&'a str, usize) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line:\n{stdout}"));
    let n = line
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"));
    (line, n)
}

/// `hold --metrics-every-ms`: the server has a metrics token and every scrape succeeds.
#[test]
fn hold_with_metrics_scrapes_them() {
    let out = loadgen(&[
        "hold",
        "--n",
        "40",
        "--step",
        "40",
        "--checkpoints",
        "40",
        "--cpu-window-s",
        "0.5",
        "--metrics-every-ms",
        "100",
    ]);
    let (line, scrapes) = summary(&out, "/metrics every");
    assert!(line.contains(", 0 failed,"), "{line}");
    assert!(scrapes >= 3, "scraped during the run: {line}");
    assert!(!line.contains("last body 0 bytes"), "{line}");
}

/// `hold --monitor-streams`: the server has a monitor token and every stream stays open and
/// receives snapshots.
#[test]
fn hold_with_monitor_streams_reads_them() {
    let out = loadgen(&[
        "hold",
        "--n",
        "40",
        "--step",
        "40",
        "--checkpoints",
        "40",
        "--cpu-window-s",
        "1.5",
        "--monitor-streams",
        "2",
    ]);
    let (line, snapshots) = summary(&out, "/monitor on");
    assert!(line.ends_with(", 0 failed"), "{line}");
    assert!(
        snapshots >= 4,
        "two streams, a snapshot a second each: {line}"
    );
}

#[test]
fn relay_delivers_every_frame() {
    let out = loadgen(&[
        "relay",
        "--pairs",
        "3",
        "--rate",
        "60,120",
        "--seconds",
        "0.5",
    ]);
    let rows = rows_after(&out, "## relay");
    assert_eq!(rows.len(), 2, "{out}");
    for row in &rows {
        let sent: u64 = row[1].parse().expect("sent");
        let received: u64 = row[2].parse().expect("received");
        assert!(sent > 0, "{out}");
        assert_eq!(received, sent, "nothing lost:\n{out}");
        assert_eq!(row[3], "0", "{out}");
    }
    assert!(out.contains("clients with errors: 0 (of 6)"), "{out}");
}

#[test]
fn waitroom_updates_reach_everyone_coalesced() {
    let out = loadgen(&[
        "waitroom",
        "--n",
        "40",
        "--arrival-rate",
        "20",
        "--seconds",
        "2",
    ]);
    let rows = rows_after(&out, "## waitroom");
    assert_eq!(rows.len(), 2, "{out}");
    let busy: f64 = rows[1][2].parse().expect("waitroom msgs/s");
    assert!(
        busy > 0.0,
        "arrivals change the count everyone sees:\n{out}"
    );
    assert!(out.contains("arrivals: 40 welcomed"), "{out}");
    assert!(out.contains("failed: 0, dropped: 0"), "{out}");
    // PROTOCOL.md: at most one update a second per participant. The gap is measured at the
    // client, so delivery jitter may shorten it a little; a per-arrival broadcast (20/s here)
    // would give gaps near 50 ms.
    let gap_ms: f64 = out
        .split("shortest gap between two count updates to one participant: ")
        .nth(1)
        .and_then(|s| s.split(" ms").next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no gap in:\n{out}"));
    assert!(gap_ms > 500.0, "updates coalesced: {gap_ms} ms\n{out}");
}

#[test]
fn matchmaking_matches_every_arrival_and_no_waiter() {
    let out = loadgen(&["matchmaking", "--n", "40", "--rate", "20", "--seconds", "1"]);
    let rows = rows_after(&out, "## matchmaking");
    assert_eq!(rows.len(), 2, "one row per matchmaker:\n{out}");
    assert_eq!(rows[0][0], "fifo", "{out}");
    assert_eq!(rows[1][0], "latency_fifo", "{out}");
    for row in &rows {
        let arrivals: u64 = row[2].parse().expect("arrivals");
        let matched: u64 = row[3].parse().expect("matched");
        assert_eq!(arrivals, 20, "20/s for 1 s:\n{out}");
        assert_eq!(matched, arrivals, "every arrival matched:\n{out}");
        assert_eq!(row[4], "0", "no arrival failed:\n{out}");
        // The 40 waiters are still waiting after the step (the arrivals left).
        assert_eq!(row[10], "40", "the waiters stay waiting:\n{out}");
    }
    assert!(
        out.contains("waiters matched: 0 (must be 0), waiters dropped: 0"),
        "{out}"
    );
}

#[test]
fn hostile_connections_do_not_stop_honest_pairs() {
    let out = loadgen(&[
        "hostile",
        "--idle",
        "40",
        "--slow",
        "10",
        "--source-ips",
        "4",
        "--honest-rate",
        "4",
        "--seconds",
        "3",
    ]);
    let rows = rows_after(&out, "## hostile");
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0][0], "50", "every hostile connection opened:\n{out}");
    let (played, failed) = rows[0][5].split_once(" / ").expect("played / failed");
    assert!(played.parse::<u64>().expect("played") > 0, "{out}");
    assert_eq!(failed, "0", "no honest pair failed:\n{out}");
}

#[test]
fn flood_records_at_most_the_bound_and_nothing_after_the_game() {
    let out = loadgen(&[
        "flood",
        "--report-kb",
        "0",
        "--rate",
        "50",
        "--seconds",
        "1",
        "--after-seconds",
        "1",
    ]);
    let rows = rows_after(&out, "## flood");
    assert_eq!(rows.len(), 2, "{out}");
    let live: u64 = rows[0][4].parse().expect("lines recorded");
    // One a second sustained, in bursts of 10 (the server's core/games/mod.rs).
    assert!((1..=12).contains(&live), "{out}");
    assert_eq!(rows[1][4], "0", "nothing after game_ended:\n{out}");
    assert!(out.contains("lines_lost 0, queue_overflows 0"), "{out}");
}

#[test]
fn churn_plays_every_game_and_everyone_leaves() {
    let out = loadgen(&[
        "churn",
        "--games",
        "60",
        "--warmup",
        "20",
        "--concurrency",
        "10",
        "--settle-s",
        "0",
    ]);
    let rows = rows_after(&out, "## churn");
    assert_eq!(rows.len(), 2, "before and after:\n{out}");
    assert_eq!(rows[1][1], "60", "{out}");
    assert!(out.contains("games played: 60, failed: 0"), "{out}");
    assert!(out.contains("participants 0, groups 0"), "{out}");
}

#[test]
fn soak_loses_nothing_in_the_record() {
    let out = loadgen(&[
        "soak",
        "--game-rate",
        "3",
        "--drop-rate",
        "2",
        "--seconds",
        "3",
        "--sample-s",
        "1",
    ]);
    assert!(out.contains("nothing lost: true"), "{out}");
}

#[test]
fn disk_full_tears_no_line_and_counts_the_lost_exactly() {
    let bin = pairlab_bin().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("--server-bin")
        .arg(&bin)
        .args(["disk", "--per-phase", "20"])
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("cannot mount a tmpfs") {
        eprintln!("skipped: {stderr}");
        return;
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let rows = rows_after(&stdout, "## disk");
    assert_eq!(rows.len(), 3, "{stdout}");
    assert_eq!(rows[0][2], "ok", "{stdout}");
    assert!(rows[1][2].ends_with("degraded"), "{stdout}");
    assert_eq!(rows[2][2], "ok", "{stdout}");
    assert!(
        stdout.contains("torn lines 0, ends with a newline: true"),
        "{stdout}"
    );
    assert!(stdout.contains("(exact: true)"), "{stdout}");
}
