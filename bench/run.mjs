// Load-benchmark driver: starts the real OP, the sidecar (cookie mode and, against one
// redis-server, Redis mode), oauth2-proxy (cookie store and Redis store), a bare axum server and
// (when available) Traefik with the forwardAuth and plugin doors; logs a user in once per
// system; measures every system with wrk (one load tool), interleaved round by round; writes
// raw numbers and markdown tables under BENCH_OUT. scripts/bench.sh builds everything and
// calls this; run it through that script.
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
//   REDIS_SERVER_BIN     redis-server (default: redis-server on PATH), for the Redis-mode systems
//   TRAEFIK_BIN          Traefik binary; empty = part 3 is skipped (TRAEFIK_SKIP_REASON says why)
//   UPSTREAM_BIN, UPSTREAM_KIND   Traefik's upstream (whoami, or bare-axum when whoami is absent)
//   BENCH_PLUGIN_SRC     a directory of shim .go files to load instead of traefik-plugin/
//   BENCH_CORES          `separate` (default with 2+ CPUs): the systems under test on CPU 0, wrk,
//                        the OP and this driver on the others (taskset); `shared`: no pinning
//   BENCH_PARTS          comma list of parts to run (default all: 1,2a,2b,3)
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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
  traefikConns: smoke ? [1, 16] : [1, 16, 64],
  warmup: smoke ? 1 : 2, // wrk takes whole seconds
  // Part 2 logins: N per round, K browsers at a time.
  logins: smoke ? 12 : 300,
  callbackBatches: smoke ? 1 : 3,
  loginConc: smoke ? 4 : 8,
};

// Separate cores: every server process (the systems under test, Redis, Traefik and its upstream)
// on CPU 0, the load generator on the rest, so wrk never steals the server's cycles and p99 is
// the server's. Tokio and Go size their worker pools from the affinity mask, so each pinned
// server runs one worker, the same for every system.
const CPUS = os.cpus().length;
const cores = env.BENCH_CORES || (CPUS >= 2 ? 'separate' : 'shared');
if (!['separate', 'shared'].includes(cores)) throw new Error(`BENCH_CORES must be separate or shared, not ${cores}`);
const SERVER_CPUS = '0';
const LOAD_CPUS = CPUS > 2 ? `1-${CPUS - 1}` : '1';
const parts = new Set((env.BENCH_PARTS || '1,2a,2b,3').split(','));
/// `cmd args` pinned to `cpus` on separate cores (taskset execs, so the pid is the command's).
function pinned(cpus, cmd, args) {
  return cores === 'separate' ? ['taskset', ['-c', cpus, cmd, ...args]] : [cmd, args];
}

const USER = 'alice';
const APP_HOST = 'app.test';
const SECRET = 'benchmark-session-secret-0123456789-abcdefghij';
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim() || 100);
const failures = [];
const started = Date.now();
const log = (...a) => console.log(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s]`, ...a);

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

const children = [];
function start(name, cmd, args, opts = {}) {
  const errFile = path.join(logs, `${name}.log`);
  const fd = fs.openSync(errFile, 'a');
  const [c, a] = pinned(opts.client ? LOAD_CPUS : SERVER_CPUS, cmd, args);
  const child = spawn(c, a, {
    cwd: opts.cwd || repo,
    env: { ...env, ...(opts.env || {}) },
    stdio: [opts.stdin ? 'pipe' : 'ignore', opts.stdout ? 'pipe' : fd, fd],
  });
  child.logFile = errFile;
  child.benchName = name;
  child.on('exit', (code, sig) => {
    child.exited = true;
    if (!child.stopping) log(`${name} exited unexpectedly (code ${code}, signal ${sig}); see ${errFile}`);
  });
  children.push(child);
  return child;
}
function stopAll() {
  for (const c of children) {
    if (!c.exited) {
      c.stopping = true;
      try { process.kill(c.pid, 'SIGTERM'); } catch { /* already gone */ }
    }
  }
}
process.on('exit', stopAll);
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => { stopAll(); process.exit(130); });

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function tail(file, n = 30) {
  try { return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n'); } catch { return ''; }
}

// /proc readings. VmHWM is the peak resident set; writing 5 to clear_refs resets it (Linux >= 4.0)
// so each run reports its own peak.
function procStatus(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number((s.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm')) || [])[1] || 0);
    return { hwm_kb: kb('VmHWM'), rss_kb: kb('VmRSS') };
  } catch { return { hwm_kb: 0, rss_kb: 0 }; }
}
function resetPeak(pid) {
  try { fs.writeFileSync(`/proc/${pid}/clear_refs`, '5'); return true; } catch { return false; }
}
/// CPU time of every thread of `pid`, in seconds: the sum of /proc/PID/task/*/schedstat (ns
/// resolution; threads that exit take their time with them, which the long-lived server threads
/// measured here do not), else utime + stime from /proc/PID/stat (clock-tick resolution).
function cpuSeconds(pid) {
  try {
    let ns = 0;
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
      try { ns += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]); } catch { /* thread gone */ }
    }
    if (ns > 0) return ns / 1e9;
  } catch { /* fall through */ }
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime + stime
  } catch { return 0; }
}
const loadavg = () => fs.readFileSync('/proc/loadavg', 'utf8').trim().split(' ').slice(0, 3).map(Number);

// ---------------------------------------------------------------------------------------------
// A browser without a browser: node:http, no automatic redirects, one cookie jar per host:port.
// ---------------------------------------------------------------------------------------------

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function request(method, url, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = http.request(url, { method, headers, agent, timeout: 30000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({
        status: res.statusCode,
        headers: res.headers,
        setCookies: res.headers['set-cookie'] || [],
        location: res.headers.location,
        body: Buffer.concat(chunks).toString('utf8'),
        ms: Number(process.hrtime.bigint() - t0) / 1e6,
      }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

class Jar {
  constructor() { this.hosts = new Map(); }
  absorb(host, setCookies) {
    const jar = this.hosts.get(host) || new Map();
    for (const sc of setCookies) {
      const [pair, ...attrs] = sc.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      const a = attrs.map((x) => x.trim());
      const lower = a.map((x) => x.toLowerCase());
      const expired = lower.some((x) => x === 'max-age=0' || x.startsWith('max-age=-'))
        || lower.some((x) => x.startsWith('expires=') && Date.parse(x.slice(8)) < Date.now());
      const pathAttr = a.find((x) => x.toLowerCase().startsWith('path='));
      const cookiePath = pathAttr ? pathAttr.slice(5) || '/' : '/';
      if (expired) jar.delete(name); else jar.set(name, { value, path: cookiePath });
    }
    this.hosts.set(host, jar);
  }
  // The Cookie header for a request to `path`: like a browser, cookies set with another Path
  // (the sidecar's logout-hint cookies) are sent only where the path matches (RFC 6265 §5.1.4).
  header(host, path = '/') {
    const jar = this.hosts.get(host);
    if (!jar) return undefined;
    const matches = (p) => path === p || (path.startsWith(p) && (p.endsWith('/') || path[p.length] === '/'));
    const sent = [...jar].filter(([, c]) => matches(c.path)).map(([k, c]) => `${k}=${c.value}`);
    return sent.length ? sent.join('; ') : undefined;
  }
}

const hostOf = (u) => new URL(u).host;
const resolveUrl = (base, loc) => new URL(loc, base).toString();

async function browse(jar, method, url, opts = {}) {
  const host = hostOf(url);
  const cookie = jar.header(host, new URL(url).pathname);
  const headers = { Accept: 'text/html', ...(opts.headers || {}) };
  if (cookie) headers.Cookie = cookie;
  const r = await request(method, url, { ...opts, headers });
  jar.absorb(host, r.setCookies);
  return r;
}

function expectStatus(r, status, what) {
  if (r.status !== status) {
    throw new Error(`${what}: expected ${status}, got ${r.status} ${r.location || ''} ${r.body.slice(0, 300)}`);
  }
}

/// Takes an authorization URL through the OP's login form; returns the callback URL and timings.
async function loginAtOp(jar, authorizeUrl, user) {
  const t0 = performance.now();
  let r = await browse(jar, 'GET', authorizeUrl);
  expectStatus(r, 303, 'OP authorize');
  const interaction = resolveUrl(authorizeUrl, r.location);
  if (!interaction.includes('/interaction/')) return { callback: interaction, ms: performance.now() - t0 };
  r = await browse(jar, 'GET', interaction);
  expectStatus(r, 200, 'OP login page');
  const form = new URLSearchParams({ prompt: 'login', login: user, password: user }).toString();
  r = await browse(jar, 'POST', interaction, {
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: form,
  });
  expectStatus(r, 303, 'OP login POST');
  const resume = resolveUrl(interaction, r.location);
  r = await browse(jar, 'GET', resume);
  expectStatus(r, 303, 'OP resume');
  return { callback: resolveUrl(resume, r.location), ms: performance.now() - t0 };
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
function wrk({ url, headers, expect, conns, dur, pids }) {
  // One wrk thread per load core (two on shared cores, as before).
  const threads = conns === 1 ? 1 : (cores === 'separate' ? Math.max(1, CPUS - 1) : 2);
  const hdr = Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\n');
  for (const p of Object.values(pids)) resetPeak(p);
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p)]));
  const load0 = loadavg();
  return new Promise((resolve, reject) => {
    const [cmd, args] = pinned(LOAD_CPUS, 'wrk', ['-t', String(threads), '-c', String(conns), '-d', `${dur}s`, '--timeout', '5s', '--latency', '-s', lua, url]);
    const w = spawn(cmd, args, {
      env: { ...env, BENCH_HEADERS: hdr, BENCH_EXPECT: String(expect) },
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
  const row = { part, system, conns, round, ...r, errors };
  runs.push(row);
  const rss = Object.entries(r.peak_rss_kb).map(([k, v]) => `${k} ${(v / 1024).toFixed(1)} MB`).join(', ');
  log(`${part} ${system.padEnd(22)} c=${String(conns).padStart(3)} r${round}: ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50_ms.toFixed(3)} ms  p99 ${r.p99_ms.toFixed(3)} ms  errors ${errors}${r.unexpected_codes ? ` (${r.unexpected_codes})` : ''}  peak RSS ${rss}`);
  if (errors > 0 || r.requests === 0) {
    failures.push(`${part} ${system} c=${conns} round ${round}: ${r.requests} requests, ${r.unexpected} unexpected statuses (${r.unexpected_codes}), ${r.socket_errors} socket errors`);
  }
  return row;
}

/// Rounds x connection counts x systems, the system order rotating every round so no system is
/// always measured first (or last) on a machine whose load drifts.
async function interleave(part, systems, connsList) {
  for (const [name, spec] of Object.entries(systems)) {
    await wrk({ ...spec, conns: 16, dur: P.warmup }); // warm-up, not recorded
    log(`${part} ${name}: warmed up`);
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

async function waitFor(what, fn, secs = 60, child) {
  const until = Date.now() + secs * 1000;
  let last;
  while (Date.now() < until) {
    if (child && child.exited) break;
    try { if (await fn()) return; } catch (e) { last = e; }
    await sleep(100);
  }
  throw new Error(`${what} not ready after ${secs}s${last ? `: ${last.message}` : ''}${child ? `\n--- ${child.logFile}\n${tail(child.logFile)}` : ''}`);
}

async function startOp(redirectUris) {
  const op = start('op', 'node', [path.join(repo, 'tests/op/op.mjs')], {
    stdout: true,
    client: true, // the OP serves logins only; it stays off the servers' core
    env: { OP_PORT: '0', OP_REDIRECT_URIS: redirectUris.join(','), OP_POST_LOGOUT_REDIRECT_URIS: `http://${APP_HOST}/` },
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

async function startRedis() {
  const port = await freePort();
  const r = start('redis-server', env.REDIS_SERVER_BIN || 'redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', logs,
  ]);
  r.addr = `127.0.0.1:${port}`;
  await waitFor('redis-server', () => new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => { c.end(); resolve(true); });
    c.on('error', () => resolve(false));
  }), 30, r);
  return r;
}

async function startSidecar(issuer, redis) {
  const port = await freePort();
  const metrics = await freePort();
  const cfgFile = path.join(out, 'sidecar.yaml');
  fs.writeFileSync(cfgFile, `# generated by bench/run.mjs
listen: 127.0.0.1:${port}
metricsListen: 127.0.0.1:${metrics}
logLevel: info
redis:
  url: redis://${redis.addr}
  keyPrefix: "bench:"
middlewares:
  default:
    Provider:
      Url: ${issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: ${SECRET}
    Scopes: [openid, profile, email, groups]
    SessionCookie:
      Secure: false
  # The same middleware with SessionStorageType Redis (its own cookie names).
  redis:
    Provider:
      Url: ${issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: ${SECRET}
    Scopes: [openid, profile, email, groups]
    CookieNamePrefix: BenchRedis
    SessionStorageType: Redis
    SessionCookie:
      Secure: false
`);
  const sc = profiling
    ? start('sidecar', 'valgrind', ['--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${path.join(out, 'callgrind.sidecar.out')}`, env.SIDECAR_BIN, '--config', cfgFile])
    : start('sidecar', env.SIDECAR_BIN, ['--config', cfgFile]);
  sc.addr = `127.0.0.1:${port}`;
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

const pct = (xs, p) => {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

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
      const r = await wrk({ ...spec, conns: 16, dur: 11 });
      await prof;
      log(`profiled ${name}: ${r.rps.toFixed(0)} req/s, Traefik ${r.cpu_us_per_req.traefik.toFixed(0)} µs CPU/req -> ${file}`);
    }
    return { skipped: 'profiling run' };
  }
  await interleave('3', systems, P.traefikConns);
  return { skipped: null, plugin_skipped: pluginSkip, upstream: env.UPSTREAM_KIND, traefik_version: env.TRAEFIK_VERSION || '' };
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

const median = (xs) => pct(xs, 50);
function summarize() {
  const groups = new Map();
  for (const r of runs) {
    const k = `${r.part}|${r.system}|${r.conns}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(r);
  }
  return [...groups.values()].map((rs) => {
    const procs = Object.keys(rs[0].peak_rss_kb);
    return {
      part: rs[0].part, system: rs[0].system, conns: rs[0].conns, rounds: rs.length,
      rps: median(rs.map((r) => r.rps)),
      p50_ms: median(rs.map((r) => r.p50_ms)),
      p99_ms: median(rs.map((r) => r.p99_ms)),
      errors: rs.reduce((s, r) => s + r.errors, 0),
      requests: rs.reduce((s, r) => s + r.requests, 0),
      peak_rss_mb: Object.fromEntries(procs.map((p) => [p, Math.max(...rs.map((r) => r.peak_rss_kb[p])) / 1024])),
      cpu_us_per_req: Object.fromEntries(procs.map((p) => [p, median(rs.map((r) => r.cpu_us_per_req[p]))])),
    };
  });
}

const f0 = (x) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(0));
const f1 = (x) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(1));
const f2 = (x) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(2));
const f3 = (x) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(3));

function report(meta, sums, logins, part3) {
  const L = [];
  const get = (part, system, conns) => sums.find((s) => s.part === part && s.system === system && s.conns === conns);
  const procCols = (s) => Object.entries(s.peak_rss_mb).map(([p, v]) => `${p} ${f1(v)}`).join(', ');
  const cpuCols = (s) => Object.entries(s.cpu_us_per_req).map(([p, v]) => `${p} ${f1(v)}`).join(', ');
  L.push(`Run: ${meta.when} · mode ${meta.smoke ? 'SMOKE (tiny durations: numbers are not meaningful)' : 'full'} · ${P.rounds} round(s) × ${P.dur} s per run, systems interleaved, median over rounds · wrk threads: 1 at c=1, else 2 · load average (1/5/15 min) at start ${meta.load_start.join(' / ')}, at end ${meta.load_end.join(' / ')}, range of 1-min load during runs ${meta.load_min.toFixed(2)}–${meta.load_max.toFixed(2)}`);
  L.push('');
  L.push('### Part 1: `/auth` with a valid session');
  L.push('');
  L.push('| conns | system | req/s | p50 ms | p99 ms | errors | peak RSS MB | server CPU µs/req |');
  L.push('|---:|---|---:|---:|---:|---:|---:|---:|');
  for (const c of P.conns) {
    for (const sys of ['sidecar', 'sidecar redis', 'oauth2-proxy', 'oauth2-proxy redis', 'bare axum']) {
      const s = get('1', sys, c);
      if (s) L.push(`| ${c} | ${sys} | ${f0(s.rps)} | ${f3(s.p50_ms)} | ${f3(s.p99_ms)} | ${s.errors} | ${procCols(s)} | ${cpuCols(s)} |`);
    }
  }
  L.push('');
  L.push('| conns | sidecar / bare axum (req/s) | sidecar / oauth2-proxy (req/s) | oauth2-proxy p99 / sidecar p99 | sidecar CPU/req ÷ bare axum CPU/req | oauth2-proxy CPU/req ÷ sidecar CPU/req |');
  L.push('|---:|---:|---:|---:|---:|---:|');
  for (const c of P.conns) {
    const sc = get('1', 'sidecar', c);
    const o = get('1', 'oauth2-proxy', c);
    const b = get('1', 'bare axum', c);
    if (!sc || !o || !b) continue;
    L.push(`| ${c} | ${f2(sc.rps / b.rps)} | ${f2(sc.rps / o.rps)} | ${f2(o.p99_ms / sc.p99_ms)} | ${f2(sc.cpu_us_per_req.server / b.cpu_us_per_req.server)} | ${f2(o.cpu_us_per_req.server / sc.cpu_us_per_req.server)} |`);
  }
  L.push('');
  L.push('Redis mode (`SessionStorageType: Redis`, one local redis-server) beside cookie mode, same run. The issue\'s bar: at 16 connections, Redis mode within 10 % of cookie mode.');
  L.push('');
  L.push('| conns | sidecar redis / sidecar cookie (req/s) | sidecar redis p99 / cookie p99 | sidecar redis / oauth2-proxy redis (req/s) | within 10 % |');
  L.push('|---:|---:|---:|---:|---|');
  for (const c of P.conns) {
    const sc = get('1', 'sidecar', c);
    const sr = get('1', 'sidecar redis', c);
    const or = get('1', 'oauth2-proxy redis', c);
    if (!sc || !sr) continue;
    L.push(`| ${c} | ${f2(sr.rps / sc.rps)} | ${f2(sr.p99_ms / sc.p99_ms)} | ${or ? f2(sr.rps / or.rps) : '–'} | ${sr.rps >= 0.9 * sc.rps ? 'yes' : 'no'} |`);
  }
  L.push('');
  L.push('### Part 2a: `/auth` without a session (navigation → 302 to the OP with state, nonce, PKCE and a flow cookie)');
  L.push('');
  L.push('| conns | req/s | p50 ms | p99 ms | errors | peak RSS MB | server CPU µs/req |');
  L.push('|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of P.unauthConns) {
    const s = get('2a', 'sidecar unauthenticated', c);
    if (s) L.push(`| ${c} | ${f0(s.rps)} | ${f3(s.p50_ms)} | ${f3(s.p99_ms)} | ${s.errors} | ${procCols(s)} | ${cpuCols(s)} |`);
  }
  L.push('');
  L.push(`### Part 2b: logins against the real OP (Node driver, ${P.loginConc} browsers at a time; per round ${P.logins} whole logins, then ${P.callbackBatches} × ${Math.min(P.logins, 100)} callbacks with codes minted beforehand)`);
  L.push('');
  L.push('| kind | logins/s | sidecar redirect p50 ms | OP (authorize + form + resume) p50 ms | sidecar callback p50 ms | callback p99 ms | sidecar CPU ms/login | OP CPU ms/login | errors |');
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const kind of ['whole login', 'callback only']) {
    const xs = logins.filter((x) => x.kind === kind);
    if (!xs.length) continue;
    const m = (k) => median(xs.map((x) => x[k]).filter((v) => v !== undefined));
    L.push(`| ${kind} | ${f1(m('per_s'))} | ${kind === 'whole login' ? f2(m('sidecar_redirect_ms_p50')) : '–'} | ${kind === 'whole login' ? f2(m('op_ms_p50')) : '–'} | ${f2(m('sidecar_callback_ms_p50'))} | ${f2(m('sidecar_callback_ms_p99'))} | ${f2(m('sidecar_cpu_ms_per_login'))} | ${f2(m('op_cpu_ms_per_login'))} | ${xs.reduce((s, x) => s + x.errors, 0)} |`);
  }
  L.push('');
  L.push('### Part 3: through Traefik (upstream ' + (part3.upstream || '–') + ')');
  L.push('');
  if (part3.skipped) {
    L.push(`SKIPPED: ${part3.skipped}`);
  } else {
    if (part3.plugin_skipped) L.push(`Plugin door SKIPPED: ${part3.plugin_skipped}`);
    L.push('');
    L.push('| conns | door | req/s | p50 ms | p99 ms | errors | peak RSS MB | CPU µs/req |');
    L.push('|---:|---|---:|---:|---:|---:|---:|---:|');
    for (const c of P.traefikConns) {
      for (const sys of ['traefik no auth', 'traefik forwardAuth', 'traefik plugin shim']) {
        const s = get('3', sys, c);
        if (s) L.push(`| ${c} | ${sys.replace('traefik ', '')} | ${f0(s.rps)} | ${f3(s.p50_ms)} | ${f3(s.p99_ms)} | ${s.errors} | ${procCols(s)} | ${cpuCols(s)} |`);
      }
    }
    L.push('');
    L.push('Added latency = door − no auth, same connection count (median over rounds).');
    L.push('');
    L.push('| conns | forwardAuth added p50 ms | plugin added p50 ms | plugin ÷ forwardAuth (p50) | forwardAuth added p99 ms | plugin added p99 ms | plugin ÷ forwardAuth (p99) | Traefik CPU µs/req: no auth / forwardAuth / plugin |');
    L.push('|---:|---:|---:|---:|---:|---:|---:|---|');
    for (const c of P.traefikConns) {
      const n = get('3', 'traefik no auth', c);
      const fa = get('3', 'traefik forwardAuth', c);
      const pl = get('3', 'traefik plugin shim', c);
      if (!n || !fa) continue;
      const fa50 = fa.p50_ms - n.p50_ms;
      const fa99 = fa.p99_ms - n.p99_ms;
      const pl50 = pl ? pl.p50_ms - n.p50_ms : NaN;
      const pl99 = pl ? pl.p99_ms - n.p99_ms : NaN;
      L.push(`| ${c} | ${f3(fa50)} | ${f3(pl50)} | ${f2(pl50 / fa50)} | ${f3(fa99)} | ${f3(pl99)} | ${f2(pl99 / fa99)} | ${f1(n.cpu_us_per_req.traefik)} / ${f1(fa.cpu_us_per_req.traefik)} / ${pl ? f1(pl.cpu_us_per_req.traefik) : '–'} |`);
    }
  }
  L.push('');
  return L.join('\n');
}

function writeCsv(file) {
  const cols = ['part', 'system', 'conns', 'round', 'requests', 'rps', 'p50_ms', 'p90_ms', 'p99_ms', 'max_ms', 'errors', 'unexpected', 'socket_errors'];
  const lines = [[...cols, 'peak_rss_kb', 'cpu_us_per_req', 'load_before', 'load_after'].join(',')];
  for (const r of runs) {
    lines.push([...cols.map((c) => r[c]),
      `"${Object.entries(r.peak_rss_kb).map(([k, v]) => `${k}=${v}`).join(' ')}"`,
      `"${Object.entries(r.cpu_us_per_req).map(([k, v]) => `${k}=${v.toFixed(1)}`).join(' ')}"`,
      `"${r.load_before.join(' ')}"`, `"${r.load_after.join(' ')}"`].join(','));
  }
  fs.writeFileSync(file, lines.join('\n') + '\n');
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

async function main() {
  for (const k of ['SIDECAR_BIN', 'BARE_BIN', 'OAUTH2_PROXY_BIN']) {
    if (!env[k] || !fs.existsSync(env[k])) throw new Error(`${k} is not set to an existing binary (run scripts/bench.sh)`);
  }
  const meta = {
    when: new Date().toISOString(), smoke, params: P, load_start: loadavg(),
    machine: { nproc: os.cpus().length, cpu: os.cpus()[0]?.model, mem_gb: os.totalmem() / 2 ** 30, kernel: os.release() },
  };
  if (cores === 'separate') {
    // This driver (idle during wrk, busy during the logins of part 2b) stays off the servers' core.
    spawnSync('taskset', ['-a', '-p', '-c', LOAD_CPUS, String(process.pid)], { stdio: 'ignore' });
  }
  meta.cores = cores;
  log(`cores: ${cores === 'separate' ? `servers on CPU ${SERVER_CPUS}, wrk/OP/driver on CPU ${LOAD_CPUS}` : 'shared (no pinning)'}`);
  log(`mode ${smoke ? 'smoke' : 'full'}: ${P.rounds} round(s) x ${P.dur}s, conns ${P.conns.join(',')}; output ${out}`);

  const o2pPort = await freePort();
  const o2prPort = await freePort();
  const op = await startOp([
    `http://${APP_HOST}/oidc/callback`,
    `http://127.0.0.1:${o2pPort}/oauth2/callback`,
    `http://127.0.0.1:${o2prPort}/oauth2/callback`,
  ]);
  log(`OP at ${op.issuer}`);
  const redis = await startRedis();
  log(`redis-server at ${redis.addr}`);
  const sidecar = await startSidecar(op.issuer, redis);
  const o2p = await startOauth2Proxy(op.issuer, o2pPort);
  const o2pr = await startOauth2Proxy(op.issuer, o2prPort, redis);
  const bare = await startBare('bare-axum');

  // One login per system.
  const login = await sidecarLogin(sidecar, USER);
  const scCookie = login.jar.header(APP_HOST, '/dashboard');
  const check = await request('GET', `http://${sidecar.addr}/auth/default`, { headers: forwardedHeaders('/dashboard?tab=1', scCookie) });
  expectStatus(check, 200, 'sidecar /auth with the session');
  if (check.headers['x-forwarded-user'] !== USER) throw new Error(`sidecar X-Forwarded-User is ${check.headers['x-forwarded-user']}`);
  const redisLogin = await sidecarLogin(sidecar, USER, { mw: 'redis' });
  const srCookie = redisLogin.jar.header(APP_HOST, '/dashboard');
  const srCheck = await request('GET', `http://${sidecar.addr}/auth/redis`, { headers: forwardedHeaders('/dashboard?tab=1', srCookie) });
  expectStatus(srCheck, 200, 'sidecar (Redis mode) /auth with the session');
  const o2prCookie = await oauth2ProxyLogin(o2pr);
  const o2pCookie = await oauth2ProxyLogin(o2p);
  const o2pCheck = await request('GET', `http://${o2p.addr}/oauth2/auth`, { headers: forwardedHeaders('/dashboard?tab=1', o2pCookie) });
  expectStatus(o2pCheck, 202, 'oauth2-proxy /oauth2/auth with the session');
  log(`logged in: sidecar cookie ${scCookie.length} B (X-Forwarded-User ${check.headers['x-forwarded-user']}), oauth2-proxy cookie ${o2pCookie.length} B (X-Auth-Request-User ${o2pCheck.headers['x-auth-request-user']})`);
  meta.cookies = {
    sidecar_cookie_header_bytes: scCookie.length,
    sidecar_redis_cookie_header_bytes: srCookie.length,
    oauth2_proxy_cookie_header_bytes: o2pCookie.length,
    oauth2_proxy_redis_cookie_header_bytes: o2prCookie.length,
  };
  log(`Redis mode: sidecar cookie ${srCookie.length} B, oauth2-proxy (Redis store) cookie ${o2prCookie.length} B`);

  if (profiling) {
    const n = Number(env.BENCH_PROFILE_REQUESTS || 2000);
    const ctl = (...a) => {
      const r = spawnSync('callgrind_control', [...a, String(sidecar.pid)], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`callgrind_control ${a.join(' ')}: ${r.stderr}${r.stdout}`);
    };
    // Warm the connection and the allocator first, then collect exactly n requests.
    const headers = forwardedHeaders('/dashboard?tab=1', scCookie);
    for (let i = 0; i < 50; i++) expectStatus(await request('GET', `http://${sidecar.addr}/auth/default`, { headers }), 200, 'warm-up');
    ctl('-i', 'on');
    for (let i = 0; i < n; i++) expectStatus(await request('GET', `http://${sidecar.addr}/auth/default`, { headers }), 200, 'profiled /auth');
    ctl('-i', 'off');
    ctl('-d');
    log(`profiled ${n} valid-session /auth requests; callgrind output in ${out}`);
    return;
  }

  if (profilingTraefik) {
    await traefikPart(sidecar, scCookie);
    return;
  }

  const loads = [];
  const tick = setInterval(() => loads.push(loadavg()[0]), 1000);

  // Part 1.
  if (parts.has('1')) await interleave('1', {
    sidecar: { url: `http://${sidecar.addr}/auth/default`, headers: forwardedHeaders('/dashboard?tab=1', scCookie), expect: 200, pids: { server: sidecar.pid } },
    'oauth2-proxy': { url: `http://${o2p.addr}/oauth2/auth`, headers: forwardedHeaders('/dashboard?tab=1', o2pCookie), expect: 202, pids: { server: o2p.pid } },
    // Redis mode: the sidecar's ticket and oauth2-proxy's Redis store, one shared redis-server
    // (its CPU is counted too).
    'sidecar redis': { url: `http://${sidecar.addr}/auth/redis`, headers: forwardedHeaders('/dashboard?tab=1', srCookie), expect: 200, pids: { server: sidecar.pid, redis: redis.pid } },
    'oauth2-proxy redis': { url: `http://${o2pr.addr}/oauth2/auth`, headers: forwardedHeaders('/dashboard?tab=1', o2prCookie), expect: 202, pids: { server: o2pr.pid, redis: redis.pid } },
    // Same request as the sidecar's (same cookie bytes), answered by an empty 200 handler.
    'bare axum': { url: `http://${bare.addr}/auth/default`, headers: forwardedHeaders('/dashboard?tab=1', scCookie), expect: 200, pids: { server: bare.pid } },
  }, P.conns);

  // Part 2a: the login redirect.
  if (parts.has('2a')) await interleave('2a', {
    'sidecar unauthenticated': { url: `http://${sidecar.addr}/auth/default`, headers: forwardedHeaders('/dashboard?tab=1'), expect: 302, pids: { server: sidecar.pid } },
  }, P.unauthConns);

  // Part 2b: logins.
  const logins = parts.has('2b') ? await loginBench(sidecar, op) : [];

  // Part 3: Traefik.
  let part3 = { skipped: 'not selected (BENCH_PARTS)' };
  if (parts.has('3')) try {
    part3 = await traefikPart(sidecar, scCookie);
  } catch (e) {
    failures.push(`part 3: ${e.message}`);
    part3 = { skipped: `FAILED: ${e.message.split('\n')[0]}` };
    log(`part 3 FAILED: ${e.message}`);
  }
  clearInterval(tick);
  meta.load_end = loadavg();
  meta.load_min = Math.min(...loads, meta.load_start[0]);
  meta.load_max = Math.max(...loads, meta.load_start[0]);

  for (const c of children) {
    if (c.exited && !c.stopping) failures.push(`${c.benchName} died during the run; see ${c.logFile}`);
  }
  const sums = summarize();
  const md = report(meta, sums, logins, part3);
  fs.writeFileSync(path.join(out, 'results.json'), JSON.stringify({ meta, failures, summary: sums, logins, part3, runs }, null, 2));
  writeCsv(path.join(out, 'runs.csv'));
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
