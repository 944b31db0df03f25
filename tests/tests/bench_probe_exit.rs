//! `bench-probe` fails when its probes do: with coturn stopped before its relayed setting
//! (`--break-turn`), the relayed probes cannot connect, and the run must exit non-zero, naming
//! why. `./run.sh test` relies on this: its bench-probe smoke phase fails when the probe does.
//!
//! Runs the real `pairlab` binary, coturn, the delay proxy and two Chromium processes, like the
//! smoke run, with a short probe deadline so that the failing rounds end quickly.

use std::process::Command;

use pairlab_tests::pairlab_bin;

#[test]
fn a_failing_relayed_probe_makes_the_exit_status_non_zero() {
    let bin = pairlab_bin().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_bench-probe"))
        .env("PAIRLAB_BIN", &bin)
        .args([
            "--probes",
            "1",
            "--delays",
            "0",
            "--break-turn",
            "--probe-timeout-ms",
            "3000",
            "--time-limit-s",
            "120",
        ])
        .output()
        .expect("run bench-probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "bench-probe exited with {}:\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        !out.status.success(),
        "bench-probe must exit non-zero when every probe fails:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("stopping coturn"),
        "coturn was not stopped:\n{stderr}"
    );
    assert!(
        stderr.contains("relay D=0: 0 of 1 probes measured")
            || stderr.contains("relay D=0: probe 1 was not accepted"),
        "the reason must name the relayed setting's missing or failed probe:\n{stderr}"
    );
}
