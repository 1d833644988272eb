#!/usr/bin/env bash
# Installs what the end-to-end suite (scripts/test-e2e.sh) and the demo (scripts/demo.sh) need.
# Idempotent: every step is skipped when its result is already there.
#
#   whoami      go install github.com/traefik/whoami@v1.11.0 -> $(go env GOPATH)/bin/whoami
#               (not /usr/bin/whoami, which is coreutils' "print user name"); optional, see below
#   traefik     scripts/build-traefik.sh (pinned, cached under ~/.cache/traefik-oidc-sidecar)
#   npm         npm ci in tests/op (the OpenID Provider) and tests/e2e (playwright-core)
#   chromium    Debian's chromium package, only when /usr/bin/chromium is missing
#
# Environment:
#   E2E_SKIP_CHROMIUM=1   skip the Chromium step (the demo needs no browser)
set -euo pipefail
cd "$(dirname "$0")/.."

WHOAMI_VERSION=v1.11.0

log() { printf 'install-e2e-deps: %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { log "$1 is required: $2"; exit 1; }; }

need go "Go 1.26 builds Traefik and whoami"
need node "Node.js 20+ runs the OpenID Provider and the browser suite"
need npm "npm installs the Node dependencies"

# whoami: the upstream service. It echoes the request headers it received, which is how the suite
# checks what reached the upstream, and serves a websocket echo at /echo. The Go module proxy
# reachable here refuses github.com/traefik/whoami ("403 This module version is not available",
# every version), so a failed install is not fatal: the suite then uses tests/e2e/whoami.mjs, a
# small Node stand-in with the same text output and /echo websocket.
whoami_bin="$(go env GOPATH)/bin/whoami"
if [ -x "$whoami_bin" ] && "$whoami_bin" --help 2>&1 | grep -q -- '-port'; then
  log "whoami present: $whoami_bin"
elif GOFLAGS= go install "github.com/traefik/whoami@$WHOAMI_VERSION"; then
  log "installed whoami $WHOAMI_VERSION: $whoami_bin"
else
  log "warning: go install github.com/traefik/whoami@$WHOAMI_VERSION failed; the suite will use tests/e2e/whoami.mjs"
fi

# Traefik (prints its path last; everything else goes to stderr).
bash scripts/build-traefik.sh >/dev/null

# Node dependencies, from the committed lockfiles. Skipped when node_modules is newer than the lockfile.
for dir in tests/op tests/e2e; do
  if [ -d "$dir/node_modules" ] && [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    log "npm dependencies present: $dir"
  else
    log "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

# Chromium from Debian. Playwright's own browser download cannot work on these machines (only
# package registries are reachable), so playwright-core drives Debian's build instead.
if [ "${E2E_SKIP_CHROMIUM:-0}" = "1" ]; then
  log "chromium: skipped (E2E_SKIP_CHROMIUM=1)"
elif [ -x /usr/bin/chromium ]; then
  log "chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
else
  sudo=""
  if [ "$(id -u)" != "0" ]; then
    need sudo "installing the chromium package needs root"
    sudo="sudo"
  fi
  log "installing Debian's chromium package"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends chromium
fi

log "done"
