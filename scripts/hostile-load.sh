#!/usr/bin/env bash
# Hostile load (BENCHMARKS.md, "Hostile load"): the release server under `ulimit -n 1024`,
# 2000 idle + 200 slow-header TCP connections and 20 honest WebSocket clients, all on
# 127.0.0.0/8. Prints the time until every hostile connection is closed and the server's RSS.
# Usage: scripts/hostile-load.sh [PORT]
# (environment: HOSTILE_IDLE, HOSTILE_SLOW, HOSTILE_HONEST, HOSTILE_IDLE_IPS, HOSTILE_BIG)
set -euo pipefail
cd "$(dirname "$0")/.."
port="${1:-18090}"
bin="${PAIRLAB_BIN:-target/release/pairlab}"
data="$(mktemp -d)"
log="$data/server.log"
# The server: 1024 open files at most (soft and hard), as on a default Linux account.
bash -c "ulimit -n 1024; exec \"$bin\" serve --bind 127.0.0.1:$port --data-dir \"$data\"" 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 50); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
grep -m1 "open-file limit" "$log" || true
# The load generator needs more files than the server: raise its own soft limit.
ulimit -n "$(ulimit -Hn)"
PAIRLAB_ADDR="127.0.0.1:$port" PAIRLAB_PID="$pid" \
  cargo test -p pairlab-server --test hostile hostile_load -- --ignored --nocapture
echo "server warnings/errors during the run:"
grep -ciE "warn|error" "$log" || true
