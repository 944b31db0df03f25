#!/usr/bin/env bash
# pairlab's two commands (see README.md):
#
#   ./run.sh serve [pairlab serve args…]   install what is missing, build the browser client and
#                                          the server (release), and serve the page; without
#                                          --config it runs the embedded default scene.
#                                          e.g. ./run.sh serve --bind 0.0.0.0:8080 --config scenes/example.toml
#   ./run.sh test                          install what is missing, build, and run every check and
#                                          test layer; prints a summary; exits non-zero on failure.
#
# Both install their prerequisites through scripts/setup.sh (idempotent) and are safe to run
# again. Builds use two jobs (CARGO_BUILD_JOBS, default 2): the reference machine has two cores.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT="$(pwd)"

if [ -d "$HOME/.cargo/bin" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
JOBS="-j${CARGO_BUILD_JOBS}"
export CARGO_TERM_PROGRESS_WHEN=never
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac

say() { printf '\n\033[1m[run] %s\033[0m\n' "$*" >&2; }

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

setup() {
  bash "$ROOT/scripts/setup.sh"
}

# The browser client: client-wasm → www/pkg/ (wasm-pack's --target web output). The server
# embeds www/ at compile time, so this comes before every build of `pairlab`.
build_client() {
  wasm-pack build --target web --profile wasm-release --mode no-install client-wasm \
    --out-dir ../www/pkg --no-typescript
}

cmd_serve() {
  say "setup"
  setup
  say "building the browser client into www/pkg"
  build_client
  say "building pairlab (release)"
  cargo build "$JOBS" --release -p pairlab-server --bin pairlab
  say "pairlab serve $*"
  exec "$TARGET_DIR/release/pairlab" serve "$@"
}

# ---- test ---------------------------------------------------------------------------------
PHASES=()
FAILED=0
CLIENT_BUILT=0

# The client's browser tests, with a coturn on 127.0.0.1 for the relay test. Its address and
# credentials are read when the tests are compiled (PAIRLAB_TEST_TURN_*), so they are exported
# before wasm-pack builds; coturn is stopped by PID whatever the outcome.
browser_tests() {
  local exports status=0
  exports="$("$ROOT/scripts/coturn-test.sh" start)" || return 1
  eval "$exports"
  wasm-pack test --headless --chrome --mode no-install client-wasm || status=$?
  "$ROOT/scripts/coturn-test.sh" stop
  return "$status"
}

# phase NAME COMMAND…: runs one layer, times it, and records the outcome for the summary.
phase() {
  local name="$1"
  shift
  say "$name: $*"
  local start=$SECONDS status
  if "$@"; then status=ok; else status=FAILED; FAILED=1; fi
  local took=$((SECONDS - start))
  PHASES+=("$(printf '%-8s %5ss  %s' "$status" "$took" "$name")")
  return 0
}

skip() {
  PHASES+=("$(printf '%-8s %5s   %s' "SKIPPED" "-" "$1 ($2)")")
  FAILED=1
}

# The end-to-end tests need the `pairlab` binary built after www/pkg exists (it embeds it).
# One build of the binary, the harness and its binaries (bench-probe, loadgen) together, so
# that they share one feature set and the tests below reuse it.
e2e() {
  cargo build "$JOBS" -p pairlab-server -p pairlab-tests --bins &&
    PAIRLAB_BIN="$TARGET_DIR/debug/pairlab" \
      cargo test "$JOBS" --no-fail-fast -p pairlab-tests -- --nocapture --test-threads=1
}

e2e_summary() {
  local f
  for f in "$TARGET_DIR"/e2e/{accept,reject,default-tabs,direct,relay,relay-equal,cut}/summary.txt; do
    if [ -f "$f" ]; then cat "$f"; fi
  done
}

cmd_test() {
  local t0=$SECONDS
  phase "setup (scripts/setup.sh)" setup
  if [ "$FAILED" != 0 ]; then
    say "setup failed; nothing else can run"
    exit 1
  fi
  phase "client build (wasm-pack → www/pkg)" build_client && [ -f www/pkg/pairlab_client_bg.wasm ] && CLIENT_BUILT=1
  phase "format (cargo fmt --check)" cargo fmt --all -- --check
  # --workspace includes client-wasm (default-members does not): its pure parts build and are
  # unit-tested natively; its browser code is linted for wasm32 and tested in Chromium below.
  phase "clippy (workspace, native)" \
    cargo clippy "$JOBS" --workspace --all-targets -- -D warnings
  phase "clippy (client, wasm32)" \
    cargo clippy "$JOBS" -p pairlab-client --target wasm32-unknown-unknown --all-targets -- -D warnings
  # Everything but the end-to-end crate, which runs last, against a freshly built binary.
  phase "unit + integration tests (shared, server, client's pure parts)" \
    cargo test "$JOBS" --no-fail-fast --workspace --exclude pairlab-tests
  # The criterion benchmarks are type-checked by clippy --all-targets above; running them (even
  # in test mode) is left to `cargo bench` (BENCHMARKS.md): it cost ~165 s of the 20 minutes.
  phase "browser tests (wasm-pack test --headless --chrome client-wasm, coturn on 127.0.0.1)" \
    browser_tests
  if [ "$CLIENT_BUILT" = 1 ]; then
    phase "end to end (pairlab + 2 headless Chromium)" e2e
    # bench-probe once, tiny: the benchmark's whole pipeline (server, coturn, delay proxy, two
    # Chromiums, force_relay scenes, record parsing) still works. Its numbers are not judged
    # here, but it exits non-zero (and this phase fails) when a probe fails, fewer probes than
    # asked are measured, or a probe measured another candidate pair than the setting's
    # (relayed vs direct); tests/tests/bench_probe_exit.rs shows it with coturn stopped.
    # (The binary the end-to-end phase built.)
    phase "bench smoke (bench-probe: 1 direct + 1 relayed probe)" \
      "$TARGET_DIR/debug/bench-probe" \
      --server debug --probes 1 --delays 0 --direct --time-limit-s 180
    # The product-path mode once, tiny (the page with nothing injected, a game after the
    # probe, the relay echo): it fails likewise when a probe or a game falls short.
    phase "bench smoke (bench-probe --product-path: 1 direct + 1 relayed pair)" \
      "$TARGET_DIR/debug/bench-probe" \
      --server debug --product-path --probes 1 --delays 0 --direct --time-limit-s 180
  else
    skip "end to end (pairlab + 2 headless Chromium)" "the client build failed"
  fi

  local total=$((SECONDS - t0))
  printf '\n==== pairlab test summary ====\n'
  printf '%s\n' "${PHASES[@]}"
  printf 'total %ss (%dm%02ds)\n' "$total" $((total / 60)) $((total % 60))
  local probes
  probes="$(e2e_summary)"
  if [ -n "$probes" ]; then
    printf '\nprobes and game connections seen by the end-to-end tests:\n%s\n' "$probes"
  fi
  if [ "$FAILED" != 0 ]; then
    printf '\nRESULT: FAILED (see the phases marked FAILED above; end-to-end logs and screenshots in target/e2e/ and target/e2e-screens/)\n'
    exit 1
  fi
  printf '\nRESULT: all passed\n'
}

case "${1:-}" in
  serve) shift; cmd_serve "$@" ;;
  test)
    shift
    if [ $# -gt 0 ]; then
      echo "./run.sh test takes no arguments (run single layers by hand: see README.md)" >&2
      exit 2
    fi
    cmd_test
    ;;
  *) usage ;;
esac
