#!/usr/bin/env bash
# Benchmarks traefik-oidc-sidecar (separate from the test command). See BENCHMARKS.md.
#
#   scripts/bench.sh                 full run (about 40 minutes): criterion micro-benchmarks,
#                                    session cookie sizes, and the load benchmark (bench/run.mjs)
#   BENCH_SMOKE=1 scripts/bench.sh   the same steps with 1-s runs, one round and 2 000 sessions in
#                                    Part 4 (CI: about 2 minutes on a warm cache); numbers from it
#                                    mean nothing
#
# The load benchmark measures two core layouts in one run, one after the other, every server
# process (sidecar, oauth2-proxy x2, bare axum, redis-server, Traefik and its upstream) started
# afresh for each (logins happen once; sessions stay valid across the restarts):
#   separate  every server process pinned to CPU 0 (taskset), wrk, the OP and the Node driver on
#             the other CPUs: the server's own cost and p99, wrk never steals its cycles
#   shared    nothing pinned (as users run it on a small host); the second set of tables
# Parts: 1 /auth with a valid session (sidecar cookie mode, three middlewares of one scope,
# Redis mode; oauth2-proxy with its cookie and its Redis store; a bare axum 200 handler);
# 2a /auth without a session (the login redirect); 2b logins against the real OP (first layout
# only); 3 Traefik's forwardAuth and plugin doors against no auth; 4 (separate layout only) a
# fresh sidecar's VmRSS/VmHWM after 1 000, 10 000 and 100 000 distinct sessions (minted by the
# mint-sessions example from the benchmark login) and a second pass. report.md gives every
# target met/missed per layout.
#
# Fails (non-zero) when a step breaks or any measured system answers an unexpected status or
# drops a connection; exits 3 when a tool it needs (wrk, oauth2-proxy) cannot be installed here.
# Raw numbers and tables go to target/bench/<run>/ (target/bench/latest and
# latest-smoke point at the newest runs). Knobs (see bench/run.mjs): BENCH_DURATION,
# BENCH_ROUNDS, BENCH_CONNS, BENCH_CORES (layouts, default separate,shared), BENCH_PARTS
# (default 1,2a,2b,3,4), BENCH_SESSIONS (Part 4), BENCH_PLUGIN_SRC, and TRAEFIK_BIN (a Traefik
# binary to use instead of the cached one).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

smoke="${BENCH_SMOKE:-0}"
started=$(date +%s)
section() { printf '\n==> [%ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
if [ "$smoke" = "1" ]; then run="smoke-$stamp"; link=latest-smoke; else run="$stamp"; link=latest; fi
export BENCH_OUT="$repo/target/bench/$run"
mkdir -p "$BENCH_OUT"
ln -sfn "$run" "$repo/target/bench/$link"

section "Tools: wrk, node, go, cargo"
if ! command -v wrk >/dev/null; then
  # Debian's wrk installs in seconds; `cargo install oha` takes minutes (BENCHMARKS.md).
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y wrk >/dev/null 2>&1 \
    || { $sudo_ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y wrk >/dev/null; } \
    || true
fi
# Redis mode is measured beside cookie mode (the sidecar and oauth2-proxy, one redis-server).
if ! command -v redis-server >/dev/null; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y redis-server >/dev/null 2>&1 \
    || { $sudo_ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y redis-server >/dev/null; } \
    || true
fi
# Exit status 3 means "a tool could not be installed here" (not "the benchmark broke"), so CI can
# tell the two apart.
for t in wrk node npm go cargo redis-server; do
  command -v "$t" >/dev/null || { echo "bench: $t is required and could not be installed" >&2; exit 3; }
done

section "Test OpenID Provider dependencies (tests/op)"
if [ ! -d tests/op/node_modules/oidc-provider ]; then
  (cd tests/op && npm ci --no-audit --no-fund --loglevel=error)
fi

section "Release builds: the sidecar, bench/bare-axum, the session minter, the criterion bench"
cargo build --release --locked --bin traefik-oidc-sidecar --example mint-sessions
CARGO_TARGET_DIR="$repo/target" cargo build --release --locked --manifest-path bench/bare-axum/Cargo.toml
if [ "$smoke" = "1" ]; then
  # Smoke: the criterion bench runs once per benchmark in test mode, in the debug profile that
  # `cargo test` has already built (no second optimized build of the crate).
  cargo test --locked --bench hot_path --no-run
else
  cargo bench --locked --bench hot_path --no-run
fi
export SIDECAR_BIN="$repo/target/release/traefik-oidc-sidecar"
export BARE_BIN="$repo/target/release/bare-axum"
export MINT_BIN="$repo/target/release/examples/mint-sessions"

gobin="$(go env GOPATH)/bin"
section "oauth2-proxy v7.15.6"
export OAUTH2_PROXY_BIN="$gobin/oauth2-proxy"
if ! go version -m "$OAUTH2_PROXY_BIN" 2>/dev/null | grep -q 'oauth2-proxy/v7[[:space:]]*v7.15.6'; then
  go install github.com/oauth2-proxy/oauth2-proxy/v7@v7.15.6 \
    || { echo "bench: go install of oauth2-proxy v7.15.6 failed" >&2; exit 3; }
fi

section "Traefik's upstream: whoami v1.11.0, else bare-axum"
export UPSTREAM_BIN UPSTREAM_KIND
if [ -x "$gobin/whoami" ] || timeout 180 go install github.com/traefik/whoami@v1.11.0 2>"$BENCH_OUT/whoami-install.log"; then
  UPSTREAM_BIN="$gobin/whoami"; UPSTREAM_KIND=whoami
else
  echo "bench: whoami cannot be installed ($(tail -n1 "$BENCH_OUT/whoami-install.log")); using bare-axum as the upstream"
  UPSTREAM_BIN="$BARE_BIN"; UPSTREAM_KIND=bare-axum
fi

section "Traefik binary"
export TRAEFIK_BIN="${TRAEFIK_BIN:-}" TRAEFIK_SKIP_REASON="" TRAEFIK_VERSION=""
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/traefik-oidc-sidecar"
if [ -z "$TRAEFIK_BIN" ]; then
  # The pinned v3.6.24 first, then whatever scripts/build-traefik.sh caches.
  for cand in "$cache_dir/traefik-v3.6.24" $(ls -1t "$cache_dir"/traefik-v3.* 2>/dev/null | grep -v '\.tmp\.' || true); do
    if [ -x "$cand" ] && "$cand" version >/dev/null 2>&1; then TRAEFIK_BIN="$cand"; break; fi
  done
fi
if [ -z "$TRAEFIK_BIN" ]; then
  if [ ! -f scripts/build-traefik.sh ]; then
    TRAEFIK_SKIP_REASON="no Traefik binary in $cache_dir and no scripts/build-traefik.sh to build one"
  elif [ "$smoke" = "1" ]; then
    TRAEFIK_SKIP_REASON="no Traefik binary cached in $cache_dir (the smoke run does not spend minutes building one: run scripts/build-traefik.sh)"
  else
    TRAEFIK_BIN="$(bash scripts/build-traefik.sh | tail -n1)" || TRAEFIK_BIN=""
    [ -n "$TRAEFIK_BIN" ] || TRAEFIK_SKIP_REASON="scripts/build-traefik.sh failed"
  fi
fi
if [ -n "$TRAEFIK_BIN" ]; then
  TRAEFIK_VERSION="$("$TRAEFIK_BIN" version 2>/dev/null | awk '/^Version:/ {print $2}')"
  echo "bench: Traefik $TRAEFIK_VERSION at $TRAEFIK_BIN"
else
  echo "bench: part 3 will be SKIPPED: $TRAEFIK_SKIP_REASON"
fi

section "Machine"
{
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "mem: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel: $(uname -r)"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "rustc: $(rustc --version)"
  echo "wrk: $(wrk -v 2>&1 | head -n1)"
  echo "node: $(node --version)  go: $(go env GOVERSION)"
} | tee "$BENCH_OUT/machine.txt"

section "Load benchmark (bench/run.mjs)"
node bench/run.mjs 2>&1 | tee "$BENCH_OUT/load.txt"

section "Micro-benchmarks and cookie sizes (criterion bench hot_path)"
if [ "$smoke" = "1" ]; then
  cargo test --locked --bench hot_path 2>&1 | tee "$BENCH_OUT/criterion.txt"
else
  cargo bench --locked --bench hot_path 2>&1 | tee "$BENCH_OUT/criterion.txt"
fi

echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$BENCH_OUT/machine.txt"
section "Done in $(( $(date +%s) - started ))s: $BENCH_OUT (target/bench/$link)"
