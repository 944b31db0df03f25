#!/usr/bin/env python3
"""Replays RTT estimators on the raw DataChannel samples of a bench-probe run.

Usage: bench/probe_estimators.py <work dir>/probes.jsonl <bench-probe stdout> [net|stats]

Each report's `samples_ms` (in the order they were taken) is fed to every estimator below, and
the estimate is compared with a truth the samples do not feed:
  net   (default) relayed: 2·stun(D), the "STUN RTT via path" column of bench-probe's
        accuracy table doubled; direct: the median getStats RTT of the setting;
  stats each report's own getStats `currentRoundTripTime` (the ICE agent's consent checks,
        whole milliseconds).
Prints, per setting, the median sample by position and a table per estimator (median error,
worst absolute error, reports within 2 ms + 3 % of the truth), then totals over all settings.
Estimators that look past sample 10 need a client built with more samples
(`SAMPLE_COUNT` in client-wasm/src/probe/wire.rs); they are skipped for shorter reports.
"""
import collections
import json
import re
import statistics as st
import sys


def med(xs):
    return st.median(xs) if xs else None


def min_filtered_median(xs):
    """The median of the samples within max(1 ms, 10 %) of the smallest."""
    m = min(xs)
    return med([x for x in xs if x <= m + max(1.0, 0.1 * m)])


ESTIMATORS = {
    # name: (samples needed, function)
    "median of 1-10 (before)": (10, lambda s: med(s[:10])),
    "min of 1-10 (chosen)": (10, lambda s: min(s[:10])),
    "mean of the lowest 3 of 1-10": (10, lambda s: st.mean(sorted(s[:10])[:3])),
    "25th percentile of 1-10": (10, lambda s: sorted(s[:10])[2]),
    "min-filtered median of 1-10": (10, lambda s: min_filtered_median(s[:10])),
    "median of 6-15 (drop 5)": (15, lambda s: med(s[5:15])),
    "median of 11-20 (drop 10)": (20, lambda s: med(s[10:20])),
    "median of 21-30 (drop 20)": (30, lambda s: med(s[20:30])),
    "median of 1-30": (30, lambda s: med(s[:30])),
}


def main():
    path, out = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "net"
    stun = {}
    for line in open(out):
        m = re.match(r"\| (direct|relay D=\d+) \| \d+ \| ([\d.]+) \|", line)
        if m and m.group(1) not in stun:
            stun[m.group(1)] = float(m.group(2))
    reports = collections.defaultdict(list)
    for line in open(path):
        j = json.loads(line)
        if j["warmup"]:
            continue
        for r in j["probe"]["probe_result"]["reports"]:
            if r and r.get("samples_ms"):
                reports[j["setting"]].append((r["samples_ms"], r.get("stats_rtt_ms")))
    totals = collections.defaultdict(lambda: [0, 0, 0.0])
    for setting, reps in reports.items():
        stats_med = med([s for _, s in reps if s is not None])
        truth = stats_med if setting == "direct" else 2 * stun[setting]
        print(f"\n### {setting}: {len(reps)} reports, net truth {truth:.2f} ms, "
              f"getStats median {stats_med}")
        longest = max(len(s) for s, _ in reps)
        pos = [med([s[i] for s, _ in reps if len(s) > i]) for i in range(longest)]
        print("median sample by position:", " ".join(f"{p:.1f}" for p in pos))
        print("| estimator | median err | worst abs err | within 2 ms + 3 % |")
        print("|---|---:|---:|---:|")
        for name, (need, f) in ESTIMATORS.items():
            errs = []
            for s, stats in reps:
                if len(s) < need or (mode == "stats" and stats is None):
                    continue
                t = stats if mode == "stats" else truth
                errs.append((f(s) - t, 2 + 0.03 * t))
            if not errs:
                continue
            ok = sum(1 for e, tol in errs if abs(e) <= tol)
            worst = max(abs(e) for e, _ in errs)
            print(f"| {name} | {med([e for e, _ in errs]):+.2f} | {worst:.2f} | {ok}/{len(errs)} |")
            totals[name][0] += ok
            totals[name][1] += len(errs)
            totals[name][2] = max(totals[name][2], worst)
    print(f"\n### totals ({mode} truth)\n| estimator | within 2 ms + 3 % | worst abs err |\n|---|---:|---:|")
    for name, (ok, n, worst) in totals.items():
        print(f"| {name} | {ok}/{n} | {worst:.2f} |")


if __name__ == "__main__":
    main()
