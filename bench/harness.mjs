// What the load-benchmark driver (bench/run.mjs) is built on: child processes (started with
// their output in a log file, stopped one by one or all at exit), /proc readings (CPU time,
// resident memory, load), waiting for readiness, one-line redis-server commands, and a browser
// without a browser (node:http, no automatic redirects, a cookie jar) that logs in at the OP.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim() || 100);
const started = Date.now();
export const log = (...a) => console.log(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s]`, ...a);

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

const children = [];
/// Starts `[cmd, args]` as `name`; stderr (and stdout unless `stdout` asks for a pipe) appended
/// to `logFile`. Every child is stopped when this process exits.
export function spawnLogged(name, [cmd, args], opts) {
  const errFile = opts.logFile;
  const fd = fs.openSync(errFile, 'a');
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: { ...process.env, ...(opts.env || {}) },
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
export function stopAll() {
  for (const c of children) {
    if (!c.exited) {
      c.stopping = true;
      try { process.kill(c.pid, 'SIGTERM'); } catch { /* already gone */ }
    }
  }
}
/// Stops one child and waits until it is gone (SIGKILL after `secs`).
export async function stopProc(c, secs = 10) {
  if (!c || c.exited) return;
  c.stopping = true;
  const gone = new Promise((resolve) => c.once('exit', resolve));
  try { process.kill(c.pid, 'SIGTERM'); } catch { /* already gone */ }
  const kill = setTimeout(() => { try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ } }, secs * 1000);
  await gone;
  clearTimeout(kill);
}
process.on('exit', stopAll);
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => { stopAll(); process.exit(130); });

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function tail(file, n = 30) {
  try { return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n'); } catch { return ''; }
}

// /proc readings. VmHWM is the peak resident set; writing 5 to clear_refs resets it (Linux >= 4.0)
// so each run reports its own peak.
export function procStatus(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number((s.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm')) || [])[1] || 0);
    return { hwm_kb: kb('VmHWM'), rss_kb: kb('VmRSS') };
  } catch { return { hwm_kb: 0, rss_kb: 0 }; }
}
export function resetPeak(pid) {
  try { fs.writeFileSync(`/proc/${pid}/clear_refs`, '5'); return true; } catch { return false; }
}
/// CPU time of every thread of `pid`, in seconds: the sum of /proc/PID/task/*/schedstat (ns
/// resolution; threads that exit take their time with them, which the long-lived server threads
/// measured here do not), else utime + stime from /proc/PID/stat (clock-tick resolution).
export function cpuSeconds(pid) {
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
export const loadavg = () => fs.readFileSync('/proc/loadavg', 'utf8').trim().split(' ').slice(0, 3).map(Number);

// ---------------------------------------------------------------------------------------------
// A browser without a browser: node:http, no automatic redirects, one cookie jar per host:port.
// ---------------------------------------------------------------------------------------------

export const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

export function request(method, url, { headers = {}, body, via = agent } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = http.request(url, { method, headers, agent: via, timeout: 30000 }, (res) => {
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

export class Jar {
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

export async function browse(jar, method, url, opts = {}) {
  const host = hostOf(url);
  const cookie = jar.header(host, new URL(url).pathname);
  const headers = { Accept: 'text/html', ...(opts.headers || {}) };
  if (cookie) headers.Cookie = cookie;
  const r = await request(method, url, { ...opts, headers });
  jar.absorb(host, r.setCookies);
  return r;
}

export function expectStatus(r, status, what) {
  if (r.status !== status) {
    throw new Error(`${what}: expected ${status}, got ${r.status} ${r.location || ''} ${r.body.slice(0, 300)}`);
  }
}

/// Takes an authorization URL through the OP's login form; returns the callback URL and timings.
export async function loginAtOp(jar, authorizeUrl, user) {
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


export async function waitFor(what, fn, secs = 60, child) {
  const until = Date.now() + secs * 1000;
  let last;
  while (Date.now() < until) {
    if (child && child.exited) break;
    try { if (await fn()) return; } catch (e) { last = e; }
    await sleep(100);
  }
  throw new Error(`${what} not ready after ${secs}s${last ? `: ${last.message}` : ''}${child ? `\n--- ${child.logFile}\n${tail(child.logFile)}` : ''}`);
}

/// One command to redis-server (RESP); resolves with its first reply line.
export function redisCommand(addr, ...args) {
  const [host, port] = addr.split(':');
  return new Promise((resolve, reject) => {
    const c = net.connect(Number(port), host, () => {
      c.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    });
    let buf = '';
    c.setTimeout(60000, () => c.destroy(new Error(`redis ${args[0]}: timeout`)));
    c.on('data', (d) => {
      buf += d;
      const i = buf.indexOf('\r\n');
      if (i >= 0) { c.end(); resolve(buf.slice(0, i)); }
    });
    c.on('error', reject);
  });
}
