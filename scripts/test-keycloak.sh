#!/usr/bin/env bash
# Keycloak end-to-end suite: a real Keycloak 26 (dev mode, loopback, realm tests/keycloak/realm.json),
# the sidecar with traefik-oidc-auth-style middleware blocks, a real Traefik v3 with both doors
# (built-in forwardAuth and our Yaegi plugin) and whoami, driven by headless Chromium through
# Keycloak's own login form (tests/e2e/keycloak.mjs).
#
#   scripts/test-keycloak.sh
#   SIDECAR_BIN=target/debug/traefik-oidc-sidecar scripts/test-keycloak.sh   # skip the release build
#
# Installs what it needs first: the e2e dependencies (scripts/install-e2e-deps.sh) and Keycloak
# with a Java 21+ JDK found on the machine (scripts/install-keycloak.sh; cached under ~/.cache).
# Keycloak is started once for the whole suite and always stopped, whatever happens. Logs,
# generated configs and failure screenshots: tests/e2e/artifacts-keycloak/.
set -euo pipefail
cd "$(dirname "$0")/.."

artifacts="${KEYCLOAK_E2E_ARTIFACTS:-$PWD/tests/e2e/artifacts-keycloak}"
export KEYCLOAK_E2E_ARTIFACTS="$artifacts"

bash scripts/install-e2e-deps.sh
KEYCLOAK_HOME="$(bash scripts/install-keycloak.sh | tail -n 1)"
KEYCLOAK_JAVA_HOME="$(bash scripts/install-keycloak.sh --java-home)"
export KEYCLOAK_HOME KEYCLOAK_JAVA_HOME

if [ -z "${SIDECAR_BIN:-}" ]; then
  echo "test-keycloak: cargo build --release --bin traefik-oidc-sidecar" >&2
  cargo build --release --locked --bin traefik-oidc-sidecar
  SIDECAR_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/traefik-oidc-sidecar"
fi
export SIDECAR_BIN
TRAEFIK_BIN="${TRAEFIK_BIN:-$(bash scripts/build-traefik.sh | tail -n 1)}"
export TRAEFIK_BIN

# keycloak.mjs stops what it started; this trap is the backstop for when Node itself dies hard
# (Keycloak is a JVM that would otherwise outlive the run). It ends only the process groups the
# suite recorded in its pids files (one line per child; the step-up, silent-login and rotation
# checks keep their own stacks, so their files sit in subdirectories), by id.
cleanup() {
  local pidfile
  while IFS= read -r pidfile; do
    while read -r pid _name; do
      [ -n "$pid" ] && kill -0 -- "-$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null || true
    done <"$pidfile"
  done < <(find "$artifacts" -maxdepth 2 -name pids -type f 2>/dev/null)
}
trap cleanup EXIT
trap 'exit 130' INT TERM

node tests/e2e/keycloak.mjs
