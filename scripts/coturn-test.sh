#!/usr/bin/env bash
# A coturn TURN server on 127.0.0.1 for the client's browser tests (client-wasm/tests/game.rs,
# the relay test), started as in TOOLCHAIN.md ("TURN on loopback") and tests/src/turn.rs:
# static long-term credentials test:test, loopback peers allowed. Its UDP/TCP port and its 101
# relay ports are chosen at run time below the kernel's ephemeral range
# (/proc/sys/net/ipv4/ip_local_port_range), where no socket bound to port 0 is handed them
# (PAIRLAB_TEST_TURN_PORT fixes the listening port). State (pidfile, the chosen port, userdb,
# log) in one folder per checkout: $CARGO_TARGET_DIR (or target/)/coturn-test.
#
#   eval "$(scripts/coturn-test.sh start)"   starts it, waits until it listens, and prints the
#                                            three export lines the relay test reads at compile
#                                            time (PAIRLAB_TEST_TURN_URL/_USER/_PASS)
#   scripts/coturn-test.sh stop              stops it by its PID and removes its folder
#
# Everything but the export lines goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
DIR="$TARGET/coturn-test"
PIDFILE="$DIR/script.pid"
PORTFILE="$DIR/port"
USER_NAME=test
PASS=test
RELAY_COUNT=101
PORT=""

log() { printf '[coturn-test] %s\n' "$*" >&2; }

# Ports in use on 127.0.0.1/any (UDP and TCP), one per line.
used_ports() {
  ss -Hlnu 2>/dev/null | awk '{print $4}' | sed 's/.*://'
  ss -Hlnt 2>/dev/null | awk '{print $4}' | sed 's/.*://'
  ss -Hanu 2>/dev/null | awk '{print $4}' | sed 's/.*://'
}

# The first of COUNT consecutive ports, none in use, in [10000, ephemeral low): the search
# starts at a random aligned block and walks them all once.
free_block() {
  local count="$1" low first last slots start i slot min p used busy
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
  first=10000
  if [ "$low" -le $((first + 1000)) ]; then first=1024; fi
  last=$((low - 1))
  slots=$(((last - first + 1) / count))
  if [ "$slots" -le 0 ]; then return 1; fi
  used=" $(used_ports | sort -un | tr '\n' ' ') "
  start=$((RANDOM % slots))
  for ((i = 0; i < slots; i++)); do
    slot=$(((start + i) % slots))
    min=$((first + slot * count))
    busy=0
    for ((p = min; p < min + count; p++)); do
      case "$used" in *" $p "*) busy=1; break ;; esac
    done
    if [ "$busy" = 0 ]; then
      echo "$min"
      return 0
    fi
  done
  return 1
}

running_pid() {
  if [ -f "$PIDFILE" ] && [ -f "$PORTFILE" ]; then
    local pid
    pid="$(cat "$PIDFILE")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      echo "$pid"
      return 0
    fi
  fi
  return 1
}

listening() {
  ss -lnu "sport = :$PORT" 2>/dev/null | grep -q ":$PORT"
}

print_exports() {
  echo "export PAIRLAB_TEST_TURN_URL='turn:127.0.0.1:$PORT?transport=udp'"
  echo "export PAIRLAB_TEST_TURN_USER='$USER_NAME'"
  echo "export PAIRLAB_TEST_TURN_PASS='$PASS'"
}

start() {
  if pid="$(running_pid)"; then
    PORT="$(cat "$PORTFILE")"
    log "already running (pid $pid, port $PORT)"
    print_exports
    return 0
  fi
  if ! command -v turnserver >/dev/null; then
    log "turnserver not found: install coturn (scripts/setup.sh does)"
    return 1
  fi
  local relay_min
  PORT="${PAIRLAB_TEST_TURN_PORT:-}"
  if [ -z "$PORT" ]; then
    PORT="$(free_block 1)" || { log "no free port below the ephemeral range"; return 1; }
  fi
  if listening; then
    log "UDP port $PORT is taken by another process; set PAIRLAB_TEST_TURN_PORT"
    return 1
  fi
  relay_min="$(free_block "$RELAY_COUNT")" || { log "no $RELAY_COUNT free relay ports below the ephemeral range"; return 1; }
  if [ "$relay_min" -le "$PORT" ] && [ "$PORT" -lt $((relay_min + RELAY_COUNT)) ]; then
    relay_min="$(free_block "$RELAY_COUNT")" || return 1
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"
  echo "$PORT" >"$PORTFILE"
  turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --listening-port="$PORT" \
    --min-port="$relay_min" --max-port=$((relay_min + RELAY_COUNT - 1)) --lt-cred-mech --user="$USER_NAME:$PASS" --realm=pairlab \
    --fingerprint --no-tls --no-dtls --no-cli --allow-loopback-peers \
    --userdb="$DIR/turndb" --pidfile="$DIR/turn.pid" --log-file=stdout --simple-log \
    >"$DIR/turn.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  local i
  for i in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "turnserver exited at once; its log:"
      tail -n 20 "$DIR/turn.log" >&2 || true
      return 1
    fi
    if listening; then
      log "up (pid $pid, udp+tcp 127.0.0.1:$PORT, relay ports $relay_min-$((relay_min + RELAY_COUNT - 1)), log $DIR/turn.log) after ~$((i * 50)) ms"
      print_exports
      return 0
    fi
    sleep 0.05
  done
  log "not listening after 5 s; stopping it"
  stop
  return 1
}

stop() {
  if pid="$(running_pid)"; then
    kill "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 40); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
    fi
    log "stopped (pid $pid)"
  else
    log "not running"
  fi
  rm -rf "$DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
