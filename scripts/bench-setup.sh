#!/usr/bin/env bash
# Installs the two relays `loadgen compare` measures pairlab against (BENCHMARKS.md, section 2
# "Server capacity", "Side by side"), under target/ so nothing global changes. Idempotent: what
# is there already is kept. Not run by CI.
#   - matchbox_server (crates.io) → target/bench-tools/bin/matchbox_server
#   - a venv with python-socketio + aiohttp (PyPI) → target/bench-venv, for bench/socketio_relay.py
# Then: cargo run -j2 -p pairlab-tests --release --bin loadgen -- compare --rates 1000,5000,20000 --seconds 5
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
MATCHBOX_VERSION="${MATCHBOX_VERSION:-0.15.0}"

if [ -x "$target/bench-tools/bin/matchbox_server" ]; then
  echo "[bench-setup] matchbox_server: already in $target/bench-tools/bin"
else
  echo "[bench-setup] cargo install matchbox_server $MATCHBOX_VERSION (a few minutes)"
  cargo install matchbox_server --version "$MATCHBOX_VERSION" --locked --root "$target/bench-tools" -j2
fi

venv="$target/bench-venv"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import socketio, aiohttp' 2>/dev/null; then
  echo "[bench-setup] python-socketio venv: already in $venv"
else
  echo "[bench-setup] python venv with python-socketio + aiohttp in $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet python-socketio aiohttp
fi
"$venv/bin/pip" list 2>/dev/null | grep -i -E '^(python-socketio|python-engineio|aiohttp) ' | sed 's/^/[bench-setup] /'
echo "[bench-setup] ok"
