#!/usr/bin/env bash
# A coturn TURN server on 127.0.0.1 for the client's browser tests (client-wasm/tests/game.rs,
# the relay test), started as in TOOLCHAIN.md ("TURN on loopback") and tests/src/turn.rs:
# static long-term credentials test:test, UDP/TCP port 34780 (PAIRLAB_TEST_TURN_PORT), relay
# ports 49160–49260, loopback peers allowed, state (pidfile, userdb, log) in one temp dir.
#
#   eval "$(scripts/coturn-test.sh start)"   starts it, waits until it listens, and prints the
#                                            three export lines the relay test reads at compile
#                                            time (PAIRLAB_TEST_TURN_URL/_USER/_PASS)
#   scripts/coturn-test.sh stop              stops it by its PID and removes the temp dir
#
# Everything but the export lines goes to stderr.
set -euo pipefail

PORT="${PAIRLAB_TEST_TURN_PORT:-34780}"
DIR="${TMPDIR:-/tmp}/pairlab-coturn-test-$PORT"
PIDFILE="$DIR/script.pid"
USER_NAME=test
PASS=test

log() { printf '[coturn-test] %s\n' "$*" >&2; }

running_pid() {
  if [ -f "$PIDFILE" ]; then
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
    log "already running (pid $pid, port $PORT)"
    print_exports
    return 0
  fi
  if ! command -v turnserver >/dev/null; then
    log "turnserver not found: install coturn (scripts/setup.sh does)"
    return 1
  fi
  if listening; then
    log "UDP port $PORT is taken by another process; set PAIRLAB_TEST_TURN_PORT"
    return 1
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"
  turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --listening-port="$PORT" \
    --min-port=49160 --max-port=49260 --lt-cred-mech --user="$USER_NAME:$PASS" --realm=pairlab \
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
      log "up (pid $pid, udp+tcp 127.0.0.1:$PORT, log $DIR/turn.log) after ~$((i * 50)) ms"
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
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
