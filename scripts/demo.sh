#!/usr/bin/env bash
# Demo: a real OpenID Provider with demo users, the sidecar, Traefik v3 with both doors
# (built-in forwardAuth and our plugin) and whoami, on 127.0.0.1. Prints the URLs to open.
#
#   scripts/demo.sh                 # http://fa.localhost:8080/ and http://plugin.localhost:8080/
#   DEMO_PORT=9090 scripts/demo.sh
#
# Users: demo/demo, alice/alice (group admins), bob/bob. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

# whoami, the pinned Traefik build and the npm packages; the demo needs no browser.
E2E_SKIP_CHROMIUM=1 bash scripts/install-e2e-deps.sh

if [ -z "${SIDECAR_BIN:-}" ]; then
  echo "demo: cargo build --release --bin traefik-oidc-sidecar" >&2
  cargo build --release --locked --bin traefik-oidc-sidecar
  SIDECAR_BIN="$PWD/target/release/traefik-oidc-sidecar"
fi
export SIDECAR_BIN
TRAEFIK_BIN="${TRAEFIK_BIN:-$(bash scripts/build-traefik.sh | tail -n 1)}"
export TRAEFIK_BIN

# Logs of every process go here (kept after the demo stops).
DEMO_LOGS="${DEMO_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/traefik-oidc-sidecar-demo.XXXXXX")}"
export DEMO_LOGS

# demo.mjs handles Ctrl-C: it stops every process it started, then exits. This trap is the
# backstop for when Node itself dies hard: it ends only the process groups demo.mjs recorded.
cleanup() {
  local pidfile="$DEMO_LOGS/pids"
  [ -f "$pidfile" ] || return 0
  while read -r pid _name; do
    [ -n "$pid" ] && kill -0 -- "-$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null || true
  done <"$pidfile"
}
trap cleanup EXIT
trap ':' INT   # let Node finish its own shutdown; the EXIT trap runs after it

node tests/e2e/demo.mjs
