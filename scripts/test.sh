#!/usr/bin/env bash
# Runs every test suite of traefik-oidc-sidecar, installing what it needs on the way:
#   1. Rust: cargo fmt --check, clippy -D warnings, unit tests and the integration tests that run
#      the sidecar against the real OpenID Provider (npm oidc-provider, tests/op) and, for
#      SessionStorageType Redis, a real redis-server and Redis Cluster (installed when missing);
#   1b. the installers' first run (scripts/test-installers.sh), which warm machines never take;
#   1c. the release (scripts/test-release.sh): static amd64 and arm64 binaries, the OCI image
#       started from the inside as its user, the SBOM against its schema, reproducibility;
#   2. the Go plugin shim: gofmt, go vet, go test, yaegi test (Traefik's interpreter), catalog load;
#      and the plugin's own repository (scripts/plugin-repo.sh) under the catalog's rules, loaded in
#      a real Traefik (scripts/test-plugin-repo.sh);
#   3. fuzzing: every cargo-fuzz target for a few seconds (scripts/fuzz-smoke.sh);
#   4. end to end: a real Traefik v3 with a whoami upstream, both doors (forwardAuth and the
#      plugin), driven by headless Chromium;
#   5. the same against a real Keycloak 26 (scripts/test-keycloak.sh: installed from Maven
#      Central and cached under ~/.cache, started once, always stopped).
# Usage: ./scripts/test.sh                        (everything)
#        SKIP_E2E=1 SKIP_FUZZ=1 ./scripts/test.sh (skip the slow suites while iterating; SKIP_E2E
#                                                  skips Keycloak too unless SKIP_KEYCLOAK=0)
#        SKIP_KEYCLOAK=1 ./scripts/test.sh        (everything but the Keycloak suite)
set -euo pipefail
cd "$(dirname "$0")/.."

# Each section prints how long the previous one took, and the run ends with every stage's time
# (CI reports them).
started=$(date +%s)
stage_started=$started
stage_name=""
stage_times=""
section() {
  local now
  now=$(date +%s)
  if [ -n "$stage_name" ]; then
    stage_times+="$(printf '%6ss  %s' "$((now - stage_started))" "$stage_name")"$'\n'
  fi
  stage_started=$now
  stage_name="$*"
  printf '\n==> %s\n' "$*"
}

section "Redis for the Redis-mode tests (Debian's redis-server and redis-cli)"
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq redis-server redis-tools >/dev/null
fi
redis-server --version

section "Installers' first run against empty caches (fake mvn, java and go; a few seconds)"
bash scripts/test-installers.sh

section "Test OpenID Provider dependencies (npm ci in tests/op)"
(cd tests/op && npm ci --no-audit --no-fund --loglevel=error)

section "Rust: cargo fmt --check"
cargo fmt --check

section "Rust: cargo clippy --all-targets -D warnings"
cargo clippy --locked --all-targets -- -D warnings

section "Rust: unit and integration tests (real oidc-provider)"
cargo test --locked -- --skip soak_at_saturation

section "Soak: the real binary at saturation for ${SOAK_SECONDS:-60} s (statuses, memory)"
SOAK_SECONDS="${SOAK_SECONDS:-60}" cargo test --locked --test soak -- --nocapture

if [ "${SKIP_FUZZ:-0}" = "1" ]; then
  section "Fuzzing: skipped (SKIP_FUZZ=1)"
else
  section "Fuzzing: every cargo-fuzz target, bounded (FUZZ_SECONDS=${FUZZ_SECONDS:-10} each)"
  FUZZ_SECONDS="${FUZZ_SECONDS:-10}" bash scripts/fuzz-smoke.sh
fi

section "Examples: docker compose config"
compose=()
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
fi
if [ "${#compose[@]}" -gt 0 ]; then
  # The base file, then the base with the Redis override, as the README runs them. (Not an
  # `a && b` list: under set -e a failure there would pass silently.)
  (
    cd examples/docker-compose
    SESSION_SECRET=compose-config-check "${compose[@]}" config -q
    SESSION_SECRET=compose-config-check REDIS_PASSWORD=compose-config-check \
      "${compose[@]}" -f docker-compose.yml -f docker-compose.redis.yml config -q
  )
  echo "${compose[*]} config: ok (base, base + Redis override)"
else
  echo "skipped: no compose client here (CI installs one); the compose file is still parsed by tests/examples.rs"
fi

section "Plugin Catalog: the plugin's own repository (scripts/plugin-repo.sh) checked and loaded in Traefik"
bash scripts/test-plugin-repo.sh

section "Helm chart: lint, template every example, validate offline against the Kubernetes and Traefik schemas"
bash scripts/test-helm.sh

section "Documentation: Traefik and compose blocks through their own parsers (the rest is tests/docs.rs)"
bash scripts/test-docs.sh

section "Observability: histograms, documented metrics, Grafana dashboard, traces to a real Jaeger"
bash scripts/test-observe.sh

section "Release: static binaries (amd64, arm64), OCI image started from the inside, SBOM, reproducibility"
bash scripts/test-release.sh

section "Go plugin shim: gofmt, go vet, go test, yaegi test, catalog load"
bash scripts/test-plugin.sh

if [ "${SKIP_E2E:-0}" = "1" ]; then
  section "End to end: skipped (SKIP_E2E=1)"
else
  section "End to end: real Traefik + whoami + headless Chromium, both doors"
  # The debug binary `cargo test` just built: no second (release) build of the whole crate.
  SIDECAR_BIN="${SIDECAR_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/traefik-oidc-sidecar}" bash scripts/test-e2e.sh
fi

if [ "${SKIP_KEYCLOAK:-${SKIP_E2E:-0}}" = "1" ]; then
  section "Keycloak end to end: skipped (SKIP_KEYCLOAK=1, or SKIP_E2E=1 without SKIP_KEYCLOAK=0)"
else
  section "Keycloak end to end: real Keycloak 26 + Traefik + whoami + headless Chromium, both doors"
  keycloak_started=$(date +%s)
  SIDECAR_BIN="${SIDECAR_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/traefik-oidc-sidecar}" bash scripts/test-keycloak.sh
  echo "Keycloak suite: $(( $(date +%s) - keycloak_started ))s (install, start once, checks, stop)"
fi

section "All suites passed in $(( $(date +%s) - started ))s"
printf 'Stage times:\n%s' "$stage_times"
