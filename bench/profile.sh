#!/usr/bin/env bash
# Profiles where the benchmark targets are missed (run after scripts/bench.sh, which builds and
# installs everything this uses). Output: target/bench/profile-<time>/.
#
#   bash bench/profile.sh            all three profiles below
#   bash bench/profile.sh sidecar    callgrind of the release sidecar serving N valid-session
#                                    /auth requests (collection switched on around exactly those)
#   bash bench/profile.sh cookie     callgrind of the criterion read_session benchmark for the
#                                    Keycloak-like session (15 KB of cookies)
#   bash bench/profile.sh traefik    Go CPU profiles of Traefik (debug API) under load, per door
#
# `perf` would be the first choice, but this VM exposes no hardware counters
# (`perf stat -e instructions true` says "not supported"), so CPU profiles come from callgrind
# (instruction counts: exact and repeatable on a noisy shared machine) and from Go's pprof.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
what="${1:-all}"
out="$repo/target/bench/profile-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
command -v valgrind >/dev/null || apt-get install -y valgrind >/dev/null

export SIDECAR_BIN="$repo/target/release/traefik-oidc-sidecar"
export BARE_BIN="$repo/target/release/bare-axum"
export OAUTH2_PROXY_BIN="$(go env GOPATH)/bin/oauth2-proxy"
export UPSTREAM_BIN="$BARE_BIN" UPSTREAM_KIND=bare-axum
for b in "$SIDECAR_BIN" "$BARE_BIN" "$OAUTH2_PROXY_BIN"; do
  [ -x "$b" ] || { echo "profile: $b missing: run scripts/bench.sh first" >&2; exit 1; }
done

annotate() { # file -> top functions by inclusive and exclusive instruction count
  callgrind_annotate --inclusive=yes "$1" > "$1.inclusive.txt" 2>/dev/null || true
  callgrind_annotate "$1" > "$1.exclusive.txt" 2>/dev/null || true
  echo "profile: $1.{inclusive,exclusive}.txt"
}

if [ "$what" = all ] || [ "$what" = sidecar ]; then
  BENCH_OUT="$out/sidecar" BENCH_PROFILE=callgrind BENCH_PROFILE_REQUESTS="${BENCH_PROFILE_REQUESTS:-2000}" \
    TRAEFIK_BIN="" node bench/run.mjs
  annotate "$(ls -S "$out"/sidecar/callgrind.sidecar.out* | head -n1)"
fi

if [ "$what" = all ] || [ "$what" = cookie ]; then
  bin="$(ls -t target/release/deps/hot_path-* | grep -v '\.d$' | head -n1)"
  valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.read_session.out" \
    "$bin" --bench --profile-time 3 'session/parse\+read_session/keycloak_default' >/dev/null 2>&1
  annotate "$out/callgrind.read_session.out"
fi

if [ "$what" = all ] || [ "$what" = traefik ]; then
  cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/traefik-oidc-sidecar"
  TRAEFIK_BIN="${TRAEFIK_BIN:-$(ls -1t "$cache_dir"/traefik-v3.* 2>/dev/null | grep -v '\.tmp\.' | head -n1 || true)}"
  if [ -z "$TRAEFIK_BIN" ]; then
    echo "profile: no Traefik binary (scripts/build-traefik.sh); skipping the Traefik profile"
  else
    BENCH_OUT="$out/traefik" BENCH_PROFILE=traefik TRAEFIK_BIN="$TRAEFIK_BIN" node bench/run.mjs
    for p in "$out"/traefik/*.pprof; do
      go tool pprof -top -nodecount=45 "$TRAEFIK_BIN" "$p" > "$p.top.txt" 2>/dev/null || true
      go tool pprof -top -cum -nodecount=45 "$TRAEFIK_BIN" "$p" > "$p.cum.txt" 2>/dev/null || true
      echo "profile: $p.{top,cum}.txt"
    done
  fi
fi
echo "profile: done: $out"
