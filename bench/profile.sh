#!/usr/bin/env bash
# Profiles where the benchmark targets are missed (run after scripts/bench.sh, which builds and
# installs everything this uses). Output: target/bench/profile-<time>/.
#
#   bash bench/profile.sh            all three profiles below
#   bash bench/profile.sh sidecar    callgrind of the release sidecar serving N valid-session
#                                    /auth requests (collection switched on around exactly those)
#   bash bench/profile.sh bare       callgrind of bench/bare-axum answering the same request N
#                                    times (the reference the sidecar's count is compared with)
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

export SIDECAR_BIN="${SIDECAR_BIN:-$repo/target/release/traefik-oidc-sidecar}"
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

if [ "$what" = all ] || [ "$what" = bare ]; then
  mkdir -p "$out/bare"
  # The sidecar profile's request (forwardAuth headers, a 365-byte session cookie), one
  # keep-alive connection, collection on around exactly N requests.
  OUT="$out/bare" N="${BENCH_PROFILE_REQUESTS:-2000}" node --input-type=module -e '
    import http from "node:http";
    import { spawn, spawnSync } from "node:child_process";
    const port = 4391, out = process.env.OUT, n = Number(process.env.N);
    const p = spawn("valgrind", ["--tool=callgrind", "--instr-atstart=no", `--callgrind-out-file=${out}/callgrind.bare.out`, process.env.BARE_BIN, `127.0.0.1:${port}`], { stdio: "ignore" });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const headers = { "X-Forwarded-Method": "GET", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "app.test", "X-Forwarded-Uri": "/dashboard?tab=1", "X-Forwarded-For": "203.0.113.9", Accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "Sec-Fetch-Mode": "navigate", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0", Cookie: "TraefikOidcSidecar.session.0=" + "x".repeat(335) };
    const get = () => new Promise((res, rej) => { const r = http.request(`http://127.0.0.1:${port}/auth/default`, { headers, agent }, (s) => { s.resume(); s.on("end", () => res(s.statusCode)); }); r.on("error", rej); r.end(); });
    let up = false;
    for (let i = 0; i < 300 && !up; i++) { try { await get(); up = true; } catch { await new Promise((r) => setTimeout(r, 200)); } }
    if (!up) { p.kill(); throw new Error("bare-axum under valgrind did not start"); }
    for (let i = 0; i < 50; i++) await get();
    const ctl = (...a) => { const r = spawnSync("callgrind_control", [...a, String(p.pid)]); if (r.status !== 0) throw new Error(`callgrind_control ${a.join(" ")}`); };
    ctl("-i", "on");
    for (let i = 0; i < n; i++) if ((await get()) !== 200) throw new Error("bare-axum did not answer 200");
    ctl("-i", "off"); ctl("-d");
    p.kill();
    setTimeout(() => process.exit(0), 200);
  '
  annotate "$(ls -S "$out"/bare/callgrind.bare.out* | head -n1)"
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
