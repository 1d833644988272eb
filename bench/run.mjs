// Load-benchmark driver: starts the real OP, the sidecar (cookie mode, a scope of three
// middlewares, and, against one redis-server, Redis mode), oauth2-proxy (cookie store and Redis
// store), a bare axum server and (when available) Traefik with the forwardAuth and plugin doors;
// logs a user in once per system; measures every system with wrk (one load tool), interleaved
// round by round, once per core layout; writes raw numbers and markdown tables (bench/report.mjs)
// under BENCH_OUT. scripts/bench.sh builds everything and calls this; run it through that script.
//
// Core layouts, in one run (BENCH_CORES): `separate` first (every server process on CPU 0, wrk,
// the OP and this driver on the other CPUs), then `shared` (no pinning). Every server process
// (sidecar, oauth2-proxy x2, bare axum, redis-server, Traefik and its upstream) is stopped and
// started again per layout, so tokio and Go size their worker pools from the affinity mask they
// start with. Logins happen once: the OP keeps running, cookie sessions stay valid across
// restarts (same Secret / cookie secret), and redis-server is restarted with its data (SAVE, then
// the same RDB file), so Redis-mode tickets and oauth2-proxy's Redis sessions survive too.
//
// Parts (BENCH_PARTS): 1 `/auth` with a valid session; 2a without one (the login redirect); 2b
// logins against the OP (first layout only); 3 through Traefik; 4 (separate layout only) the
// resident memory of a fresh sidecar after N distinct sessions (bench/mint_sessions.rs mints
// them from the benchmark login).
//
// Why Node: the OP (tests/op/op.mjs) already needs Node, so the driver adds no runtime; node:http
// gives exact control over redirects and cookies for the browserless logins; async code makes
// the concurrent login driver (part 2, the one measurement that cannot use wrk because every
// callback needs a fresh authorization code) a few lines. During wrk runs the driver is idle.
//
// Environment (set by scripts/bench.sh):
//   BENCH_OUT            output directory (results.json, runs.csv, report.md, logs/)
//   BENCH_SMOKE=1        tiny durations (CI: checks that every step still works)
//   BENCH_DURATION, BENCH_ROUNDS, BENCH_CONNS (comma list)   override the defaults
//   SIDECAR_BIN, BARE_BIN, OAUTH2_PROXY_BIN                  required binaries
//   MINT_BIN             the mint-sessions example (Part 4)
//   BENCH_SESSIONS       Part 4's number of distinct sessions (default 100000; smoke 2000)
//   REDIS_SERVER_BIN     redis-server (default: redis-server on PATH), for the Redis-mode systems
//   TRAEFIK_BIN          Traefik binary; empty = part 3 is skipped (TRAEFIK_SKIP_REASON says why)
//   UPSTREAM_BIN, UPSTREAM_KIND   Traefik's upstream (whoami, or bare-axum when whoami is absent)
//   BENCH_PLUGIN_SRC     a directory of shim .go files to load instead of traefik-plugin/
//   BENCH_CORES          comma list of layouts, in order (default `separate,shared` with 2+ CPUs,
//                        `shared` on one CPU)
//   BENCH_PARTS          comma list of parts to run (default all: 1,2a,2b,3,4)
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Jar, agent, browse, cpuSeconds, expectStatus, freePort, loadavg, log, loginAtOp, procStatus,
  redisCommand, request, resetPeak, sleep, spawnLogged, stopAll, stopProc, tail, waitFor,
} from './harness.mjs';
import { layoutTitle as title, pct, report, summarize, targets, writeCsv } from './report.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const smoke = env.BENCH_SMOKE === '1';
// BENCH_PROFILE=callgrind: only log in, then send BENCH_PROFILE_REQUESTS valid-session /auth
// requests to a sidecar running under callgrind, collecting only around them (bench/profile.sh).
const profiling = env.BENCH_PROFILE === 'callgrind';
// BENCH_PROFILE=traefik: start part 3 with Traefik's debug API and take a Go CPU profile of
// Traefik while wrk loads each door (bench/profile.sh).
const profilingTraefik = env.BENCH_PROFILE === 'traefik';
const out = path.resolve(env.BENCH_OUT || path.join(repo, 'target/bench/manual'));
const logs = path.join(out, 'logs');
fs.mkdirSync(logs, { recursive: true });

const P = {
  dur: Number(env.BENCH_DURATION || (smoke ? 1 : 10)),
  rounds: Number(env.BENCH_ROUNDS || (smoke ? 1 : 3)),
  conns: (env.BENCH_CONNS || '1,16,64,256').split(',').map(Number),
  unauthConns: smoke ? [16] : [1, 64],
  traefikConns: env.BENCH_TRAEFIK_CONNS ? env.BENCH_TRAEFIK_CONNS.split(',').map(Number) : (smoke ? [1, 16] : [1, 16, 64]),
  warmup: smoke ? 1 : 2, // wrk takes whole seconds
  // Part 2 logins: N per round, K browsers at a time.
  logins: smoke ? 12 : 300,
  callbackBatches: smoke ? 1 : 3,
  loginConc: smoke ? 4 : 8,
  // Part 4: distinct sessions, requests in flight.
  sessions: Number(env.BENCH_SESSIONS || (smoke ? 2000 : 100000)),
  rssConc: 48,
};

// Separate cores: every server process (the systems under test, Redis, Traefik and its upstream)
// on CPU 0, the load generator on the rest, so wrk never steals the server's cycles and p99 is
// the server's. Tokio and Go size their worker pools from the affinity mask, so each pinned
// server runs one worker, the same for every system.
const CPUS = os.cpus().length;
const layouts = (env.BENCH_CORES || (CPUS >= 2 ? 'separate,shared' : 'shared')).split(',').map((x) => x.trim()).filter(Boolean);
for (const l of layouts) {
  if (!['separate', 'shared'].includes(l)) throw new Error(`BENCH_CORES lists separate and/or shared, not ${l}`);
}
if (!layouts.length || new Set(layouts).size !== layouts.length) throw new Error(`BENCH_CORES: ${env.BENCH_CORES}`);
if (layouts.includes('separate') && CPUS < 2) throw new Error('BENCH_CORES=separate needs 2 or more CPUs');
const SERVER_CPUS = '0';
const LOAD_CPUS = CPUS > 2 ? `1-${CPUS - 1}` : '1';
const ALL_CPUS = `0-${CPUS - 1}`;
/// The layout being measured (setLayout changes it between layouts).
let layout = layouts[0];
const parts = new Set((env.BENCH_PARTS || '1,2a,2b,3,4').split(','));
/// `cmd args` pinned to `cpus` on separate cores (taskset execs, so the pid is the command's).
function pinned(cpus, cmd, args) {
  return layout === 'separate' ? ['taskset', ['-c', cpus, cmd, ...args]] : [cmd, args];
}
/// wrk threads: one at one connection; else one per load core on separate cores, two (one per
/// CPU) on shared cores.
function wrkThreads(conns, l = layout) {
  return conns === 1 ? 1 : (l === 'separate' ? Math.max(1, CPUS - 1) : 2);
}
/// Switches to layout `l`: this driver (idle during wrk, busy during the logins of part 2b and
/// the requests of part 4) and whatever it spawns unpinned stay off the servers' core on separate
/// cores, and may use every CPU on shared cores.
function setLayout(l) {
  layout = l;
  spawnSync('taskset', ['-a', '-p', '-c', l === 'separate' ? LOAD_CPUS : ALL_CPUS, String(process.pid)], { stdio: 'ignore' });
}
const layoutTitle = (l) => title(l, { server: SERVER_CPUS, load: LOAD_CPUS });

const USER = 'alice';
const APP_HOST = 'app.test';
const SECRET = 'benchmark-session-secret-0123456789-abcdefghij';
const failures = [];

/// Starts a server (pinned to the servers' CPU on separate cores) or, with `client`, a client
/// of the servers (pinned to the load CPUs); output goes to logs/<name>.log.
function start(name, cmd, args, opts = {}) {
  return spawnLogged(name, pinned(opts.client ? LOAD_CPUS : SERVER_CPUS, cmd, args), {
    ...opts, cwd: opts.cwd || repo, logFile: path.join(logs, `${name}.log`),
  });
}

// What Traefik's forwardAuth sends to the sidecar for a browser navigation to http://app.test{uri}.
function forwardedHeaders(uri, cookie) {
  const h = {
    'X-Forwarded-Method': 'GET',
    'X-Forwarded-Proto': 'http',
    'X-Forwarded-Host': APP_HOST,
    'X-Forwarded-Uri': uri,
    'X-Forwarded-For': '203.0.113.9',
    Accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
    'Sec-Fetch-Mode': 'navigate',
    'User-Agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0',
  };
  if (cookie) h.Cookie = cookie;
  return h;
}

/// One sidecar login: the anonymous navigation's redirect, the OP, the callback. Returns the
/// jar (session cookies under app.test) and the time of each part. `mw`: the middleware
/// (`redis` for the Redis-mode one).
async function sidecarLogin(sidecar, user, { prepareOnly = false, mw = 'default' } = {}) {
  const jar = new Jar();
  const auth = `http://${sidecar.addr}/auth/${mw}`;
  const r1 = await request('GET', auth, { headers: forwardedHeaders('/dashboard?tab=1') });
  expectStatus(r1, 302, 'sidecar anonymous navigation');
  jar.absorb(APP_HOST, r1.setCookies);
  const op = await loginAtOp(jar, r1.location, user);
  const cb = new URL(op.callback);
  if (cb.host !== APP_HOST || cb.pathname !== '/oidc/callback') throw new Error(`unexpected callback ${op.callback}`);
  const pending = { jar, uri: cb.pathname + cb.search, redirectMs: r1.ms, opMs: op.ms, mw };
  if (prepareOnly) return pending;
  return finishCallback(sidecar, pending);
}

async function finishCallback(sidecar, pending) {
  const { jar, uri, mw = 'default' } = pending;
  const r = await request('GET', `http://${sidecar.addr}/auth/${mw}`, {
    headers: forwardedHeaders(uri, jar.header(APP_HOST, uri.split('?')[0])),
  });
  expectStatus(r, 302, 'sidecar callback');
  const want = mw === 'redis' ? '.ticket=' : '.session.0=';
  if (!r.setCookies.some((c) => c.includes(want))) throw new Error(`callback set no ${want} cookie`);
  jar.absorb(APP_HOST, r.setCookies);
  return { ...pending, callbackMs: r.ms };
}

// ---------------------------------------------------------------------------------------------
// wrk
// ---------------------------------------------------------------------------------------------

const lua = path.join(repo, 'bench/wrk/request.lua');

/// One wrk run. `pids` are the server processes whose peak RSS and CPU time are read.
/// `paths`: rotate every request over these paths (same headers), else always `url`'s.
function wrk({ url, headers, expect, conns, dur, pids, paths }) {
  const threads = wrkThreads(conns);
  const hdr = Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\n');
  for (const p of Object.values(pids)) resetPeak(p);
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p)]));
  const load0 = loadavg();
  return new Promise((resolve, reject) => {
    const [cmd, args] = pinned(LOAD_CPUS, 'wrk', ['-t', String(threads), '-c', String(conns), '-d', `${dur}s`, '--timeout', '5s', '--latency', '-s', lua, url]);
    const w = spawn(cmd, args, {
      env: { ...env, BENCH_HEADERS: hdr, BENCH_EXPECT: String(expect), BENCH_PATHS: paths ? paths.join(',') : '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    w.stdout.on('data', (d) => { stdout += d; });
    w.stderr.on('data', (d) => { stderr += d; });
    w.on('error', reject);
    w.on('exit', (code) => {
      const line = stdout.split('\n').find((l) => l.startsWith('WRKJSON '));
      if (code !== 0 || !line) return reject(new Error(`wrk failed (${code}): ${stderr}${stdout}`));
      const j = JSON.parse(line.slice(8));
      const secs = j.duration_us / 1e6;
      const mem = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, procStatus(p).hwm_kb]));
      const cpu = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p) - cpu0[k]]));
      resolve({
        requests: j.requests,
        rps: j.requests / secs,
        p50_ms: j.p50_us / 1000,
        p90_ms: j.p90_us / 1000,
        p99_ms: j.p99_us / 1000,
        max_ms: j.max_us / 1000,
        unexpected: j.unexpected,
        unexpected_codes: j.unexpected_codes.trim(),
        socket_errors: j.connect_errors + j.read_errors + j.write_errors + j.timeouts,
        peak_rss_kb: mem,
        cpu_us_per_req: Object.fromEntries(Object.entries(cpu).map(([k, s]) => [k, j.requests ? (s * 1e6) / j.requests : 0])),
        load_before: load0,
        load_after: loadavg(),
      });
    });
  });
}

const runs = [];
async function measure(part, system, spec, conns, round) {
  const r = await wrk({ ...spec, conns, dur: P.dur });
  const errors = r.unexpected + r.socket_errors;
  const row = { layout, part, system, conns, round, ...r, errors };
  runs.push(row);
  const rss = Object.entries(r.peak_rss_kb).map(([k, v]) => `${k} ${(v / 1024).toFixed(1)} MB`).join(', ');
  log(`${layout.slice(0, 3)} ${part} ${system.padEnd(22)} c=${String(conns).padStart(3)} r${round}: ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50_ms.toFixed(3)} ms  p99 ${r.p99_ms.toFixed(3)} ms  errors ${errors}${r.unexpected_codes ? ` (${r.unexpected_codes})` : ''}  peak RSS ${rss}`);
  if (errors > 0 || r.requests === 0) {
    failures.push(`${layout} ${part} ${system} c=${conns} round ${round}: ${r.requests} requests, ${r.unexpected} unexpected statuses (${r.unexpected_codes}), ${r.socket_errors} socket errors`);
  }
  return row;
}

/// Rounds x connection counts x systems, the system order rotating every round so no system is
/// always measured first (or last) on a machine whose load drifts.
async function interleave(part, systems, connsList) {
  for (const [name, spec] of Object.entries(systems)) {
    await wrk({ ...spec, conns: 16, dur: P.warmup }); // warm-up, not recorded
    log(`${layout.slice(0, 3)} ${part} ${name}: warmed up`);
  }
  const names = Object.keys(systems);
  for (let round = 1; round <= P.rounds; round++) {
    for (const conns of connsList) {
      const order = names.map((_, i) => names[(i + round - 1 + connsList.indexOf(conns)) % names.length]);
      for (const name of order) await measure(part, name, systems[name], conns, round);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Systems
// ---------------------------------------------------------------------------------------------

async function startOp(redirectUris) {
  const op = start('op', 'node', [path.join(repo, 'tests/op/op.mjs')], {
    stdout: true,
    client: true, // the OP serves logins only; it stays off the servers' core
    // Sessions live as long as the ID token: 4 h, so the one login outlives both layouts of a
    // full run (about 40 minutes) with room to spare.
    env: { OP_PORT: '0', OP_REDIRECT_URIS: redirectUris.join(','), OP_POST_LOGOUT_REDIRECT_URIS: `http://${APP_HOST}/`, OP_ID_TOKEN_TTL: '14400' },
  });
  const line = await new Promise((resolve, reject) => {
    let buf = '';
    op.stdout.on('data', (d) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0) resolve(buf.slice(0, i));
    });
    op.on('exit', () => reject(new Error(`OP exited: ${tail(op.logFile)}`)));
  });
  op.issuer = JSON.parse(line).issuer;
  return op;
}

/// redis-server with no automatic snapshots; its data lives in `dir`/bench.rdb between a
/// `stopRedis` (SAVE, then stop) and the next start, which loads it.
async function startRedis(dir) {
  const port = await freePort();
  fs.mkdirSync(dir, { recursive: true });
  const r = start('redis-server', env.REDIS_SERVER_BIN || 'redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--dbfilename', 'bench.rdb',
  ]);
  r.addr = `127.0.0.1:${port}`;
  await waitFor('redis-server', () => new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => { c.end(); resolve(true); });
    c.on('error', () => resolve(false));
  }), 30, r);
  return r;
}

async function stopRedis(r) {
  const reply = await redisCommand(r.addr, 'SAVE');
  if (reply !== '+OK') throw new Error(`redis SAVE answered ${reply}`);
  await stopProc(r);
}

// The sidecar's middlewares: `default` (the single-middleware cookie case), `redis` (the same in
// Redis mode), and three middlewares of one scope (`BenchScope`: same Secret, provider and
// client as `default`, another cookie prefix, so they share sessions among themselves but not
// with `default`), different the way real ones are: an authorization rule checked on every
// request, custom identity headers, neither.
const SCOPE_MWS = ['scope-admins', 'scope-headers', 'scope-plain'];

/// A sidecar named `name` (its configuration is `<name>.yaml` in the output directory).
async function startSidecar(issuer, redis, name = 'sidecar') {
  const port = await freePort();
  const metrics = await freePort();
  const cfgFile = path.join(out, `${name}.yaml`);
  const provider = `    Provider:
      Url: ${issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: ${SECRET}
    Scopes: [openid, profile, email, groups]
    SessionCookie:
      Secure: false`;
  fs.writeFileSync(cfgFile, `# generated by bench/run.mjs
listen: 127.0.0.1:${port}
metricsListen: 127.0.0.1:${metrics}
logLevel: info
redis:
  url: redis://${redis.addr}
  keyPrefix: "bench:"
middlewares:
  default:
${provider}
  # The same middleware with SessionStorageType Redis (its own cookie names).
  redis:
${provider}
    CookieNamePrefix: BenchRedis
    SessionStorageType: Redis
  # Three middlewares of one scope (see SCOPE_MWS).
  scope-admins:
${provider}
    CookieNamePrefix: BenchScope
    Authorization:
      CheckOnEveryRequest: true
      AssertClaims:
        - Name: groups
          AnyOf: [admins]
  scope-headers:
${provider}
    CookieNamePrefix: BenchScope
    Headers:
      - Name: X-Oidc-Username
        Value: "{{ .claims.preferred_username }}"
      - Name: X-Oidc-Groups
        Values: "{{ .claims.groups | mapToJsonArray }}"
  scope-plain:
${provider}
    CookieNamePrefix: BenchScope
`);
  const sc = profiling
    ? start(name, 'valgrind', ['--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${path.join(out, 'callgrind.sidecar.out')}`, env.SIDECAR_BIN, '--config', cfgFile])
    : start(name, env.SIDECAR_BIN, ['--config', cfgFile]);
  sc.addr = `127.0.0.1:${port}`;
  sc.cfgFile = cfgFile;
  await waitFor('sidecar /readyz', async () => (await request('GET', `http://${sc.addr}/readyz`)).status === 200, profiling ? 300 : 60, sc);
  return sc;
}

async function startBare(name) {
  const port = await freePort();
  const b = start(name, env.BARE_BIN, [`127.0.0.1:${port}`]);
  b.addr = `127.0.0.1:${port}`;
  await waitFor(name, async () => (await request('GET', `http://${b.addr}/auth/default`)).status === 200, 30, b);
  return b;
}

async function startOauth2Proxy(issuer, port, redis) {
  const addr = `127.0.0.1:${port}`;
  const name = redis ? 'oauth2-proxy-redis' : 'oauth2-proxy';
  // With `redis`: oauth2-proxy's own Redis session store, against the sidecar's redis-server.
  const store = redis ? ['--session-store-type=redis', `--redis-connection-url=redis://${redis.addr}`] : [];
  const o = start(name, env.OAUTH2_PROXY_BIN, [
    ...store,
    `--http-address=${addr}`,
    '--provider=oidc',
    `--oidc-issuer-url=${issuer}`,
    '--client-id=sidecar',
    '--client-secret=sidecar-secret',
    '--cookie-secret=0123456789abcdef0123456789abcdef',
    '--cookie-secure=false',
    '--email-domain=*',
    '--scope=openid email profile groups',
    '--code-challenge-method=S256', // the OP requires PKCE
    `--redirect-url=http://${addr}/oauth2/callback`,
    '--upstream=static://202',
    '--reverse-proxy',
    '--set-xauthrequest',
    '--skip-provider-button',
    // No per-request access log: the sidecar writes none for an allowed request either.
    '--request-logging=false',
  ]);
  o.addr = addr;
  await waitFor('oauth2-proxy /ping', async () => (await request('GET', `http://${addr}/ping`)).status === 200, 60, o);
  return o;
}

async function oauth2ProxyLogin(o) {
  const jar = new Jar();
  let r = await browse(jar, 'GET', `http://${o.addr}/oauth2/start?rd=%2F`);
  expectStatus(r, 302, 'oauth2-proxy /oauth2/start');
  const op = await loginAtOp(jar, r.location, USER);
  r = await browse(jar, 'GET', op.callback);
  expectStatus(r, 302, 'oauth2-proxy /oauth2/callback');
  const cookie = jar.header(o.addr);
  if (!cookie || !cookie.includes('_oauth2_proxy=') && !cookie.includes('_oauth2_proxy_0=')) {
    throw new Error(`oauth2-proxy set no session cookie: ${cookie}`);
  }
  return cookie;
}

// ---------------------------------------------------------------------------------------------
// Part 2b: logins per second (the one place that cannot use wrk)
// ---------------------------------------------------------------------------------------------

async function pool(n, conc, fn) {
  const results = [];
  let next = 0;
  let errors = 0;
  const errs = [];
  await Promise.all(Array.from({ length: Math.min(conc, n) }, async () => {
    while (next < n) {
      const i = next++;
      try { results.push(await fn(i)); } catch (e) { errors++; if (errs.length < 3) errs.push(e.message); }
    }
  }));
  return { results, errors, errs };
}


async function loginBench(sidecar, opProc) {
  const logins = [];
  for (let round = 1; round <= P.rounds; round++) {
    // (a) Whole logins, K browsers at a time: each a fresh browser (no OP session), so the OP
    // shows its login form every time.
    const c0 = { sc: cpuSeconds(sidecar.pid), op: cpuSeconds(opProc.pid), drv: process.cpuUsage() };
    let t0 = performance.now();
    const whole = await pool(P.logins, P.loginConc, () => sidecarLogin(sidecar, USER));
    let secs = (performance.now() - t0) / 1000;
    const drvA = process.cpuUsage(c0.drv);
    const a = {
      part: '2b', kind: 'whole login', round, logins: whole.results.length, errors: whole.errors, error_samples: whole.errs,
      conc: P.loginConc, secs, per_s: whole.results.length / secs,
      sidecar_redirect_ms_p50: pct(whole.results.map((x) => x.redirectMs), 50),
      op_ms_p50: pct(whole.results.map((x) => x.opMs), 50),
      sidecar_callback_ms_p50: pct(whole.results.map((x) => x.callbackMs), 50),
      sidecar_callback_ms_p99: pct(whole.results.map((x) => x.callbackMs), 99),
      sidecar_cpu_ms_per_login: ((cpuSeconds(sidecar.pid) - c0.sc) * 1000) / Math.max(1, whole.results.length),
      op_cpu_ms_per_login: ((cpuSeconds(opProc.pid) - c0.op) * 1000) / Math.max(1, whole.results.length),
      driver_cpu_ms_per_login: (drvA.user + drvA.system) / 1000 / Math.max(1, whole.results.length),
      load: loadavg(),
    };
    logins.push(a);
    log(`2b whole logins r${round}: ${a.per_s.toFixed(1)} logins/s (K=${P.loginConc}); p50 sidecar redirect ${a.sidecar_redirect_ms_p50.toFixed(2)} ms, OP ${a.op_ms_p50.toFixed(2)} ms, sidecar callback ${a.sidecar_callback_ms_p50.toFixed(2)} ms; CPU per login: sidecar ${a.sidecar_cpu_ms_per_login.toFixed(2)} ms, OP ${a.op_cpu_ms_per_login.toFixed(2)} ms; errors ${a.errors}`);

    // (b) Callbacks only: codes minted first (OP login form, outside the clock), then redeemed
    // through the sidecar as fast as K browsers can. N stays small: codes live 60 s, and the
    // OP's in-memory store is an LRU of 1000 entries (a login leaves about 5: interaction,
    // session, grant, code, access token), so a larger batch evicts its own first codes.
    const cbs = { results: [], errors: 0, errs: [] };
    const cpuB = { sc: 0, op: 0 };
    secs = 0;
    for (let batch = 0; batch < P.callbackBatches; batch++) {
      const prepared = await pool(Math.min(P.logins, 100), P.loginConc, () => sidecarLogin(sidecar, USER, { prepareOnly: true }));
      const c1 = { sc: cpuSeconds(sidecar.pid), op: cpuSeconds(opProc.pid) };
      t0 = performance.now();
      const done = await pool(prepared.results.length, P.loginConc, (i) => finishCallback(sidecar, prepared.results[i]));
      secs += (performance.now() - t0) / 1000;
      cpuB.sc += cpuSeconds(sidecar.pid) - c1.sc;
      cpuB.op += cpuSeconds(opProc.pid) - c1.op;
      cbs.results.push(...done.results);
      cbs.errors += done.errors + prepared.errors;
      cbs.errs.push(...prepared.errs, ...done.errs);
    }
    const b = {
      part: '2b', kind: 'callback only', round, logins: cbs.results.length, errors: cbs.errors, error_samples: cbs.errs.slice(0, 3),
      conc: P.loginConc, secs, per_s: cbs.results.length / secs,
      sidecar_callback_ms_p50: pct(cbs.results.map((x) => x.callbackMs), 50),
      sidecar_callback_ms_p99: pct(cbs.results.map((x) => x.callbackMs), 99),
      sidecar_cpu_ms_per_login: (cpuB.sc * 1000) / Math.max(1, cbs.results.length),
      op_cpu_ms_per_login: (cpuB.op * 1000) / Math.max(1, cbs.results.length),
      load: loadavg(),
    };
    logins.push(b);
    log(`2b callbacks only r${round}: ${b.per_s.toFixed(1)} callbacks/s (K=${P.loginConc}); p50 ${b.sidecar_callback_ms_p50.toFixed(2)} ms p99 ${b.sidecar_callback_ms_p99.toFixed(2)} ms; CPU per callback: sidecar ${b.sidecar_cpu_ms_per_login.toFixed(2)} ms, OP (token endpoint) ${b.op_cpu_ms_per_login.toFixed(2)} ms; errors ${b.errors}`);
    for (const x of [a, b]) {
      if (x.errors > 0 || x.logins === 0) failures.push(`2b ${x.kind} round ${round}: ${x.errors} errors ${x.error_samples.join(' | ')}`);
    }
  }
  return logins;
}

// ---------------------------------------------------------------------------------------------
// Part 3: Traefik
// ---------------------------------------------------------------------------------------------

const PLUGIN_MODULE = 'github.com/traefik-oidc-sidecar/traefik-oidc-sidecar';

/// Lays out plugins-local/src/<module>/ from go.mod, .traefik.yml and traefik-plugin/*.go (no
/// tests) in `dir`; returns a reason string when the shim is not there yet.
function layoutPlugin(dir) {
  // BENCH_PLUGIN_SRC: measure a variant of the shim (a directory of .go files) instead.
  const shimDir = env.BENCH_PLUGIN_SRC ? path.resolve(env.BENCH_PLUGIN_SRC) : path.join(repo, 'traefik-plugin');
  const need = [path.join(repo, 'go.mod'), path.join(repo, '.traefik.yml')];
  const missing = need.filter((f) => !fs.existsSync(f));
  const sources = fs.existsSync(shimDir) ? fs.readdirSync(shimDir).filter((f) => f.endsWith('.go') && !f.endsWith('_test.go')) : [];
  if (missing.length || !sources.length) {
    return `plugin shim not there yet (${[...missing.map((f) => path.relative(repo, f)), sources.length ? null : 'traefik-plugin/*.go'].filter(Boolean).join(', ')} missing)`;
  }
  const dst = path.join(dir, 'plugins-local/src', PLUGIN_MODULE);
  fs.rmSync(path.join(dir, 'plugins-local'), { recursive: true, force: true });
  fs.mkdirSync(path.join(dst, 'traefik-plugin'), { recursive: true });
  for (const f of need) fs.copyFileSync(f, path.join(dst, path.basename(f)));
  for (const f of sources) fs.copyFileSync(path.join(shimDir, f), path.join(dst, 'traefik-plugin', f));
  return null;
}

async function traefikPart(sidecar, cookie) {
  if (!env.TRAEFIK_BIN) {
    const reason = env.TRAEFIK_SKIP_REASON || 'no Traefik binary';
    log(`part 3 SKIPPED: ${reason}`);
    return { skipped: reason };
  }
  const dir = path.join(out, 'traefik');
  fs.mkdirSync(dir, { recursive: true });
  const pluginSkip = layoutPlugin(dir);
  if (pluginSkip) log(`part 3: plugin door SKIPPED: ${pluginSkip}; measuring no-auth and forwardAuth only`);

  // Upstream: whoami when it could be installed, else a second bare-axum (see BENCHMARKS.md).
  const upPort = await freePort();
  const upstream = start('upstream', env.UPSTREAM_BIN, env.UPSTREAM_KIND === 'whoami' ? ['--port', String(upPort)] : [`127.0.0.1:${upPort}`]);
  await waitFor('upstream', async () => (await request('GET', `http://127.0.0.1:${upPort}/`)).status === 200, 30, upstream);

  const port = await freePort();
  const apiPort = await freePort();
  fs.writeFileSync(path.join(dir, 'traefik.yml'), `# generated by bench/run.mjs
global:
  checkNewVersion: false
  sendAnonymousUsage: false
log:
  level: ERROR
entryPoints:
  web:
    address: 127.0.0.1:${port}
${profilingTraefik ? `  traefik:
    address: 127.0.0.1:${apiPort}
api:
  insecure: true
  debug: true
` : ''}providers:
  file:
    filename: ${path.join(dir, 'dynamic.yml')}
${pluginSkip ? '' : `experimental:
  localPlugins:
    oidcshim:
      moduleName: ${PLUGIN_MODULE}
`}`);
  fs.writeFileSync(path.join(dir, 'dynamic.yml'), `# generated by bench/run.mjs
http:
  routers:
    noauth:
      rule: Host(\`noauth.test\`)
      entryPoints: [web]
      service: up
    forwardauth:
      rule: Host(\`fa.test\`)
      entryPoints: [web]
      middlewares: [fa]
      service: up
${pluginSkip ? '' : `    plugin:
      rule: Host(\`plugin.test\`)
      entryPoints: [web]
      middlewares: [shim]
      service: up
`}  middlewares:
    fa:
      forwardAuth:
        address: http://${sidecar.addr}/auth/default
        authResponseHeaders: [X-Forwarded-User, X-Forwarded-Email, X-Forwarded-Groups, Cookie]
${pluginSkip ? '' : `    shim:
      plugin:
        oidcshim:
          sidecarUrl: http://${sidecar.addr}
          middleware: default
`}  services:
    up:
      loadBalancer:
        servers:
          - url: http://127.0.0.1:${upPort}
`);
  const traefik = start('traefik', env.TRAEFIK_BIN, [`--configFile=${path.join(dir, 'traefik.yml')}`], { cwd: dir });
  // Traefik and its upstream live for this part of this layout only.
  try {
    const base = `http://127.0.0.1:${port}`;
    const browser = {
      Accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
      'Sec-Fetch-Mode': 'navigate',
      'User-Agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0',
    };
    const get = (host, withCookie) => request('GET', `${base}/dashboard?tab=1`, {
      headers: { Host: host, ...browser, ...(withCookie ? { Cookie: cookie } : {}) },
    });
    await waitFor('traefik noauth router', async () => (await get('noauth.test', true)).status === 200, 60, traefik);
    const doors = { 'traefik no auth': 'noauth.test', 'traefik forwardAuth': 'fa.test' };
    if (!pluginSkip) doors['traefik plugin shim'] = 'plugin.test';
    for (const [name, host] of Object.entries(doors)) {
      if (host === 'noauth.test') continue;
      // Yaegi compiles the plugin on first use; give the routers time, then check both answers.
      await waitFor(`${name} with a session`, async () => (await get(host, true)).status === 200, 60, traefik);
      const anon = await get(host, false);
      if (anon.status !== 302) throw new Error(`${name}: anonymous navigation answered ${anon.status}, expected 302`);
    }
    log(`part 3: Traefik ${env.TRAEFIK_VERSION || ''} up; upstream ${env.UPSTREAM_KIND}; doors: ${Object.keys(doors).join(', ')}`);
    const systems = Object.fromEntries(Object.entries(doors).map(([name, host]) => [name, {
      url: `${base}/dashboard?tab=1`,
      headers: { Host: host, ...browser, Cookie: cookie },
      expect: 200,
      pids: host === 'noauth.test' ? { traefik: traefik.pid, upstream: upstream.pid } : { traefik: traefik.pid, sidecar: sidecar.pid, upstream: upstream.pid },
    }]));
    if (profilingTraefik) {
      // A 10 s CPU profile of Traefik per door while wrk keeps 16 connections busy.
      for (const [name, spec] of Object.entries(systems)) {
        const file = path.join(out, `traefik-${name.replace(/ /g, '-')}.pprof`);
        const prof = new Promise((resolve, reject) => {
          http.get(`http://127.0.0.1:${apiPort}/debug/pprof/profile?seconds=10`, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => { fs.writeFileSync(file, Buffer.concat(chunks)); resolve(); });
          }).on('error', reject);
        });
        await sleep(200);
        const r = await wrk({ ...spec, conns: Number(env.BENCH_PROFILE_CONNS || 16), dur: 11 });
        await prof;
        log(`profiled ${name}: ${r.rps.toFixed(0)} req/s, Traefik ${r.cpu_us_per_req.traefik.toFixed(0)} µs CPU/req -> ${file}`);
      }
      return { skipped: 'profiling run' };
    }
    await interleave('3', systems, P.traefikConns);
    return { skipped: null, plugin_skipped: pluginSkip, upstream: env.UPSTREAM_KIND, traefik_version: env.TRAEFIK_VERSION || '' };
  } finally {
    await stopProc(traefik);
    await stopProc(upstream);
  }
}

// ---------------------------------------------------------------------------------------------
// Part 4: resident memory after N distinct sessions (separate cores)
// ---------------------------------------------------------------------------------------------

/// A fresh sidecar gets one valid-session `/auth/default` request for each of N distinct
/// sessions (minted from the benchmark login by bench/mint_sessions.rs: sub, sid and
/// preferred_username differ), then a second pass over the same N; VmRSS and VmHWM after 1 000,
/// 10 000 and N sessions and after the second pass show whether memory follows the number of
/// sessions seen (the remembered-session map of src/opened.rs holds at most 4096) or levels off.
/// Every answer must be 200 with the session's own X-Forwarded-User.
async function rssPart(issuer, redis, cookie) {
  if (!env.MINT_BIN || !fs.existsSync(env.MINT_BIN)) throw new Error('MINT_BIN is not set to the mint-sessions example (run scripts/bench.sh)');
  const n = P.sessions;
  const sc = await startSidecar(issuer, redis, 'sidecar-rss');
  try {
    const file = path.join(out, 'sessions.txt');
    const t0 = performance.now();
    const m = spawnSync(env.MINT_BIN, [sc.cfgFile, 'default', cookie, String(n), file], { encoding: 'utf8' });
    if (m.status !== 0) throw new Error(`mint-sessions failed (${m.status}): ${m.stderr}${m.stdout}`);
    // The file is large (about 0.4 KB a session) and regenerable: read it, then drop it.
    const cookies = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
    fs.rmSync(file);
    if (cookies.length !== n) throw new Error(`mint-sessions wrote ${cookies.length} sessions, expected ${n}`);
    log(`4 minted ${n} distinct sessions in ${((performance.now() - t0) / 1000).toFixed(1)} s; sidecar-rss at ${sc.addr}, ${(procStatus(sc.pid).rss_kb / 1024).toFixed(1)} MB resident`);

    const via = new http.Agent({ keepAlive: true, maxSockets: P.rssConc });
    const url = `http://${sc.addr}/auth/default`;
    let errors = 0;
    const samples = [];
    const send = async (i) => {
      const r = await request('GET', url, { headers: forwardedHeaders('/dashboard?tab=1', cookies[i]), via });
      const want = `bench-user-${i}`;
      if (r.status !== 200 || r.headers['x-forwarded-user'] !== want) {
        errors++;
        if (samples.length < 3) samples.push(`session ${i}: ${r.status} X-Forwarded-User ${r.headers['x-forwarded-user']} (want ${want})`);
      }
    };
    const rows = [{ pass: 0, sessions: 0, requests: 0, ...procStatus(sc.pid), cpu_us_per_req: 0, secs: 0 }];
    const run = async (pass, from, to) => {
      const c0 = cpuSeconds(sc.pid);
      const t = performance.now();
      const r = await pool(to - from, P.rssConc, (k) => send(from + k));
      errors += r.errors;
      samples.push(...r.errs.slice(0, 3 - Math.min(3, samples.length)));
      const row = {
        pass, sessions: pass === 1 ? to : n, requests: to - from, ...procStatus(sc.pid),
        cpu_us_per_req: ((cpuSeconds(sc.pid) - c0) * 1e6) / Math.max(1, to - from),
        secs: (performance.now() - t) / 1000,
      };
      rows.push(row);
      log(`4 pass ${pass}, ${row.sessions} distinct sessions: VmRSS ${(row.rss_kb / 1024).toFixed(1)} MB, VmHWM ${(row.hwm_kb / 1024).toFixed(1)} MB; ${(row.requests / row.secs).toFixed(0)} req/s, ${row.cpu_us_per_req.toFixed(1)} µs CPU/req; errors so far ${errors}`);
    };
    let done = 0;
    for (const cp of [...new Set([1000, 10000, n].filter((x) => x <= n))].sort((a, b) => a - b)) {
      await run(1, done, cp);
      done = cp;
    }
    await run(2, 0, n);
    via.destroy();
    if (errors) failures.push(`4 rss: ${errors} of ${2 * n} answers not 200 with the session's X-Forwarded-User: ${samples.join(' | ')}`);
    return { sessions: n, conc: P.rssConc, errors, rows };
  } finally {
    await stopProc(sc);
  }
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

/// The server processes of one layout: redis-server (loading the data saved by the previous
/// layout), the sidecar, oauth2-proxy (cookie and Redis store) and the bare axum server, each
/// started pinned or not according to the layout.
async function startServers(ctx) {
  const redis = await startRedis(path.join(out, 'redis'));
  const sidecar = await startSidecar(ctx.issuer, redis);
  const o2p = await startOauth2Proxy(ctx.issuer, ctx.o2pPort);
  const o2pr = await startOauth2Proxy(ctx.issuer, ctx.o2prPort, redis);
  const bare = await startBare('bare-axum');
  log(`${layout}: redis-server ${redis.addr}, sidecar ${sidecar.addr}, oauth2-proxy ${o2p.addr} and ${o2pr.addr}, bare axum ${bare.addr}`);
  return { redis, sidecar, o2p, o2pr, bare };
}

async function stopServers(s) {
  // The driver's keep-alive sockets would hold the servers' graceful shutdown open.
  agent.destroy();
  for (const c of [s.sidecar, s.o2p, s.o2pr, s.bare]) await stopProc(c);
  await stopRedis(s.redis);
}

/// One login per system (the first layout only).
async function logIn(s) {
  const login = await sidecarLogin(s.sidecar, USER);
  const redisLogin = await sidecarLogin(s.sidecar, USER, { mw: 'redis' });
  // Through one middleware of the scope; the session then opens in all three.
  const scopeLogin = await sidecarLogin(s.sidecar, USER, { mw: 'scope-plain' });
  return {
    sidecar: login.jar.header(APP_HOST, '/dashboard'),
    sidecarRedis: redisLogin.jar.header(APP_HOST, '/dashboard'),
    scope: scopeLogin.jar.header(APP_HOST, '/dashboard'),
    o2pr: await oauth2ProxyLogin(s.o2pr),
    o2p: await oauth2ProxyLogin(s.o2p),
  };
}

/// Every session answers as it should on this layout's (restarted) servers: cookie sessions
/// under the same Secret, Redis tickets from the restarted redis-server, the scope's session in
/// its three middlewares and not in `default`.
async function checkSessions(s, ck) {
  const auth = (mw, cookie) => request('GET', `http://${s.sidecar.addr}/auth/${mw}`, { headers: forwardedHeaders('/dashboard?tab=1', cookie) });
  const user = (r, what, header = 'x-forwarded-user') => {
    expectStatus(r, 200, what);
    if (r.headers[header] !== USER) throw new Error(`${what}: ${header} is ${r.headers[header]}, expected ${USER}`);
  };
  user(await auth('default', ck.sidecar), 'sidecar /auth/default with the session');
  user(await auth('redis', ck.sidecarRedis), 'sidecar (Redis mode) /auth/redis with the session');
  user(await auth('scope-plain', ck.scope), 'sidecar /auth/scope-plain with the scope session');
  user(await auth('scope-admins', ck.scope), 'sidecar /auth/scope-admins with the scope session');
  user(await auth('scope-headers', ck.scope), 'sidecar /auth/scope-headers with the scope session', 'x-oidc-username');
  expectStatus(await auth('default', ck.scope), 302, 'sidecar /auth/default with the scope session (another scope)');
  for (const [o, cookie, what] of [[s.o2p, ck.o2p, 'oauth2-proxy'], [s.o2pr, ck.o2pr, 'oauth2-proxy (Redis store)']]) {
    const r = await request('GET', `http://${o.addr}/oauth2/auth`, { headers: forwardedHeaders('/dashboard?tab=1', cookie) });
    expectStatus(r, 202, `${what} /oauth2/auth with the session`);
    if (r.headers['x-auth-request-user'] === undefined) throw new Error(`${what}: no X-Auth-Request-User`);
  }
  expectStatus(await request('GET', `http://${s.bare.addr}/auth/default`, { headers: forwardedHeaders('/dashboard?tab=1', ck.sidecar) }), 200, 'bare axum');
}

async function profile(s, ck) {
  if (profiling) {
    const n = Number(env.BENCH_PROFILE_REQUESTS || 2000);
    const ctl = (...a) => {
      const r = spawnSync('callgrind_control', [...a, String(s.sidecar.pid)], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`callgrind_control ${a.join(' ')}: ${r.stderr}${r.stdout}`);
    };
    // Warm the connection and the allocator first, then collect exactly n requests.
    const headers = forwardedHeaders('/dashboard?tab=1', ck.sidecar);
    for (let i = 0; i < 50; i++) expectStatus(await request('GET', `http://${s.sidecar.addr}/auth/default`, { headers }), 200, 'warm-up');
    ctl('-i', 'on');
    for (let i = 0; i < n; i++) expectStatus(await request('GET', `http://${s.sidecar.addr}/auth/default`, { headers }), 200, 'profiled /auth');
    ctl('-i', 'off');
    ctl('-d');
    log(`profiled ${n} valid-session /auth requests; callgrind output in ${out}`);
  } else {
    await traefikPart(s.sidecar, ck.sidecar);
  }
}

/// Parts 1, 2a, (2b), 3 and (4) on layout `l`, on freshly started servers.
async function measureLayout(l, ctx, first) {
  setLayout(l);
  log(`=== ${layoutTitle(l)}: wrk threads ${[...new Set(P.conns.map((c) => wrkThreads(c)))].join(' or ')}`);
  const s = await startServers(ctx);
  const result = { layout: l, part3: { skipped: 'not selected (BENCH_PARTS)' }, logins: [], part4: null };
  try {
    if (first) {
      ctx.cookies = await logIn(s);
      ctx.meta.cookies = {
        sidecar_cookie_header_bytes: ctx.cookies.sidecar.length,
        sidecar_redis_cookie_header_bytes: ctx.cookies.sidecarRedis.length,
        sidecar_scope_cookie_header_bytes: ctx.cookies.scope.length,
        oauth2_proxy_cookie_header_bytes: ctx.cookies.o2p.length,
        oauth2_proxy_redis_cookie_header_bytes: ctx.cookies.o2pr.length,
      };
      log(`logged in: Cookie header bytes ${JSON.stringify(ctx.meta.cookies)}`);
    }
    const ck = ctx.cookies;
    await checkSessions(s, ck);
    log(`${l}: every session answers on the restarted servers`);
    if (profiling || profilingTraefik) {
      await profile(s, ck);
      result.profiled = true;
      return result;
    }

    const { sidecar, o2p, o2pr, bare, redis } = s;
    const headers = (cookie) => forwardedHeaders('/dashboard?tab=1', cookie);
    if (parts.has('1')) await interleave('1', {
      sidecar: { url: `http://${sidecar.addr}/auth/default`, headers: headers(ck.sidecar), expect: 200, pids: { server: sidecar.pid } },
      // One session, every request to the next middleware of its scope.
      'sidecar 3-mw scope': {
        url: `http://${sidecar.addr}/auth/${SCOPE_MWS[0]}`, paths: SCOPE_MWS.map((m) => `/auth/${m}`),
        headers: headers(ck.scope), expect: 200, pids: { server: sidecar.pid },
      },
      'oauth2-proxy': { url: `http://${o2p.addr}/oauth2/auth`, headers: headers(ck.o2p), expect: 202, pids: { server: o2p.pid } },
      // Redis mode: the sidecar's ticket and oauth2-proxy's Redis store, one shared redis-server
      // (its CPU is counted too).
      'sidecar redis': { url: `http://${sidecar.addr}/auth/redis`, headers: headers(ck.sidecarRedis), expect: 200, pids: { server: sidecar.pid, redis: redis.pid } },
      'oauth2-proxy redis': { url: `http://${o2pr.addr}/oauth2/auth`, headers: headers(ck.o2pr), expect: 202, pids: { server: o2pr.pid, redis: redis.pid } },
      // Same request as the sidecar's (same cookie bytes), answered by an empty 200 handler.
      'bare axum': { url: `http://${bare.addr}/auth/default`, headers: headers(ck.sidecar), expect: 200, pids: { server: bare.pid } },
    }, P.conns);

    // Part 2a: the login redirect.
    if (parts.has('2a')) await interleave('2a', {
      'sidecar unauthenticated': { url: `http://${sidecar.addr}/auth/default`, headers: headers(undefined), expect: 302, pids: { server: sidecar.pid } },
    }, P.unauthConns);

    // Part 2b: logins (the first layout only: they load the OP and the driver as much as the
    // sidecar, so the layout says little about them).
    if (first && parts.has('2b')) result.logins = await loginBench(sidecar, ctx.op);

    // Part 3: Traefik.
    if (parts.has('3')) try {
      result.part3 = await traefikPart(sidecar, ck.sidecar);
    } catch (e) {
      failures.push(`${l} part 3: ${e.message}`);
      result.part3 = { skipped: `FAILED: ${e.message.split('\n')[0]}` };
      log(`part 3 FAILED: ${e.message}`);
    }

    // Part 4: a fresh sidecar beside the idle one (separate cores only).
    if (l === 'separate' && parts.has('4')) try {
      result.part4 = await rssPart(ctx.issuer, redis, ck.sidecar);
    } catch (e) {
      failures.push(`part 4: ${e.message}`);
      result.part4 = { skipped: `FAILED: ${e.message.split('\n')[0]}` };
      log(`part 4 FAILED: ${e.message}`);
    }
  } finally {
    for (const c of Object.values(s)) {
      if (c.exited && !c.stopping) failures.push(`${l}: ${c.benchName} died during the run; see ${c.logFile}`);
    }
    await stopServers(s);
  }
  return result;
}

async function main() {
  for (const k of ['SIDECAR_BIN', 'BARE_BIN', 'OAUTH2_PROXY_BIN']) {
    if (!env[k] || !fs.existsSync(env[k])) throw new Error(`${k} is not set to an existing binary (run scripts/bench.sh)`);
  }
  const meta = {
    when: new Date().toISOString(), smoke, params: P, load_start: loadavg(), layouts,
    cpus: { server: SERVER_CPUS, load: LOAD_CPUS },
    wrk_threads: Object.fromEntries(layouts.map((l) => [l, Object.fromEntries(P.conns.map((c) => [c, wrkThreads(c, l)]))])),
    machine: { nproc: CPUS, cpu: os.cpus()[0]?.model, mem_gb: os.totalmem() / 2 ** 30, kernel: os.release() },
  };
  // Profiling measures one layout, the first.
  const measured = profiling || profilingTraefik ? layouts.slice(0, 1) : layouts;
  setLayout(measured[0]);
  log(`layouts: ${measured.map(layoutTitle).join(', then ')}; parts ${[...parts].join(',')}`);
  log(`mode ${smoke ? 'smoke' : 'full'}: ${P.rounds} round(s) x ${P.dur}s, conns ${P.conns.join(',')}; output ${out}`);

  const o2pPort = await freePort();
  const o2prPort = await freePort();
  // The OP serves logins only (first layout) and stays up for the whole run; on separate cores
  // it starts on the load CPUs.
  const op = await startOp([
    `http://${APP_HOST}/oidc/callback`,
    `http://127.0.0.1:${o2pPort}/oauth2/callback`,
    `http://127.0.0.1:${o2prPort}/oauth2/callback`,
  ]);
  log(`OP at ${op.issuer}`);
  fs.rmSync(path.join(out, 'redis'), { recursive: true, force: true });
  const ctx = { op, issuer: op.issuer, o2pPort, o2prPort, meta, cookies: null };

  const loads = [];
  const tick = setInterval(() => loads.push(loadavg()[0]), 1000);
  const results = [];
  for (const [i, l] of measured.entries()) results.push(await measureLayout(l, ctx, i === 0));
  clearInterval(tick);
  if (profiling || profilingTraefik) return;
  meta.load_end = loadavg();
  meta.load_min = Math.min(...loads, meta.load_start[0]);
  meta.load_max = Math.max(...loads, meta.load_start[0]);
  if (op.exited && !op.stopping) failures.push(`the OP died during the run; see ${op.logFile}`);

  const logins = results.flatMap((r) => r.logins);
  const part3 = Object.fromEntries(results.map((r) => [r.layout, r.part3]));
  const part4 = results.find((r) => r.part4)?.part4 || { skipped: parts.has('4') ? 'runs on separate cores only (BENCH_CORES has no separate)' : 'not selected (BENCH_PARTS)' };
  const summary = summarize(runs);
  const res = { meta, P, failures, summary, logins, part3, part4, runs };
  res.targets = Object.fromEntries(measured.map((l) => [l, targets(res, l)]));
  const md = report(res);
  fs.writeFileSync(path.join(out, 'results.json'), JSON.stringify(res, null, 2));
  writeCsv(path.join(out, 'runs.csv'), runs);
  fs.writeFileSync(path.join(out, 'report.md'), md);
  console.log(`\n${md}`);
  log(`raw numbers: ${path.join(out, 'results.json')}, ${path.join(out, 'runs.csv')}; tables: ${path.join(out, 'report.md')}`);
  if (failures.length) {
    console.error(`\nFAILED: ${failures.length} problem(s):\n  ${failures.join('\n  ')}`);
    process.exitCode = 1;
  }
}

main().catch((e) => {
  console.error(`bench failed: ${e.stack || e.message}`);
  process.exitCode = 1;
}).finally(() => {
  stopAll();
  // Keep-alive sockets and child pipes would hold the event loop open; the children got SIGTERM.
  setTimeout(() => process.exit(process.exitCode ?? 0), 500);
});
