#!/usr/bin/env bash
# Installs everything pairlab needs to build, serve and test on a fresh Debian machine.
# Idempotent: each step checks first and does nothing when its tool is already there.
# Used by ./run.sh (serve and test) and therefore by .ci/run.
set -euo pipefail

WASM_BINDGEN_VERSION=0.2.130   # must equal the `wasm-bindgen = "=..."` pin in client-wasm/Cargo.toml

log() { printf '[setup] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: headless Chromium and its WebDriver for the browser tests, coturn for TURN.
need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v turnserver >/dev/null 2>&1 || need_apt+=(coturn)
# OpenSSL headers for the end-to-end harness's WebDriver client (fantoccini → native-tls).
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# rustfmt and clippy for ./run.sh test's format and lint checks.
for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^${component}"; then
    log "rustup component add ${component}"
    rustup component add "${component}"
  fi
done

# The wasm32 target for the browser client.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# wasm-bindgen-cli, pinned to the crate's wasm-bindgen version (wasm-pack uses it; a mismatch
# would make wasm-pack download its own copy, which cannot work offline).
if ! command -v wasm-bindgen >/dev/null 2>&1 \
  || ! wasm-bindgen --version | grep -q " ${WASM_BINDGEN_VERSION}\$"; then
  log "cargo install wasm-bindgen-cli ${WASM_BINDGEN_VERSION} (takes ~3 min once)"
  # Not --locked: its lockfile pins a webpki-roots version the registry lacks (TOOLCHAIN.md).
  cargo install -q wasm-bindgen-cli --version "${WASM_BINDGEN_VERSION}" --force
fi

# wasm-pack: builds the client into www/pkg and runs its headless-browser tests.
if ! command -v wasm-pack >/dev/null 2>&1; then
  log "cargo install wasm-pack (takes ~3 min once)"
  cargo install -q wasm-pack --locked
fi
log "ok"
