#!/usr/bin/env bash
# End-to-end suite: the real OpenID Provider (tests/op), the sidecar, a real Traefik v3 with both
# doors (built-in forwardAuth and our Yaegi plugin loaded from the working tree) and whoami, all on
# loopback with random ports, driven by headless Chromium (tests/e2e/run.mjs).
#
#   scripts/test-e2e.sh
#   SIDECAR_BIN=target/debug/traefik-oidc-sidecar scripts/test-e2e.sh   # skip the release build
#
# Installs what it needs first (scripts/install-e2e-deps.sh). Logs, generated configs and failure
# screenshots are kept in tests/e2e/artifacts/. Exits non-zero if any check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

artifacts="${E2E_ARTIFACTS:-$PWD/tests/e2e/artifacts}"
export E2E_ARTIFACTS="$artifacts"

bash scripts/install-e2e-deps.sh
# replicas.mjs runs a real redis-server (Debian's; scripts/test.sh and .ci/run install it too).
if ! command -v redis-server >/dev/null 2>&1; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq redis-server >/dev/null
fi

if [ -z "${SIDECAR_BIN:-}" ]; then
  echo "test-e2e: cargo build --release --bin traefik-oidc-sidecar" >&2
  cargo build --release --locked --bin traefik-oidc-sidecar
  SIDECAR_BIN="$PWD/target/release/traefik-oidc-sidecar"
fi
export SIDECAR_BIN
TRAEFIK_BIN="${TRAEFIK_BIN:-$(bash scripts/build-traefik.sh | tail -n 1)}"
export TRAEFIK_BIN

# run.mjs kills what it started; this trap is the backstop for when Node itself is killed hard.
# It ends only the process groups run.mjs recorded (one per child it started), by id.
cleanup() {
  local pidfile
  for pidfile in "$artifacts/pids" "$artifacts/inline/pids" "$artifacts/inline/login/pids" "$artifacts/replicas/pids" "$artifacts/admin/pids" "$artifacts/idle/pids"; do
    [ -f "$pidfile" ] || continue
    while read -r pid _name; do
      [ -n "$pid" ] && kill -0 -- "-$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null || true
    done <"$pidfile"
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

node tests/e2e/run.mjs
node tests/e2e/idle.mjs
# Inline traefik-oidc-auth blocks (issue 12): Traefik's decoding of every README/examples block,
# then login, restart and logout with the sidecar's empty middlewares:.
node tests/e2e/inline.mjs
# Two sidecar replicas sharing Redis sessions (issue 11) behind one load-balanced Traefik service,
# both doors: login, a replica SIGKILLed under load (no session lost), back-channel logout.
node tests/e2e/replicas.mjs
# The operators' revocation API (issue 21 §5): revoke through it, the next navigation logs in again.
node tests/e2e/admin.mjs
