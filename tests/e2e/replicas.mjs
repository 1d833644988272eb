// End-to-end suite of two sidecar replicas sharing Redis sessions (issue 11), in a real Traefik v3.6
// with headless Chromium:
//
//   node tests/e2e/replicas.mjs     (scripts/test-e2e.sh runs it after run.mjs and inline.mjs)
//
//   browser ──> Traefik :web   Host(fa.localhost)     forwardAuth ─┐
//                              Host(plugin.localhost) Yaegi shim ──┤──> Traefik :sidecars ──> replica a
//                                                                  │    (retry + round robin,   replica b
//                                                                  │     active health check)
//                              ──> whoami                          │
//   replicas a, b ──> redis-server (its own temp dir)   OP ──> relay ──> one replica's
//                                                                         POST /backchannel-logout/default
//
// forwardAuth takes one address and the shim one sidecarUrl, so both point at a second Traefik
// entry point (`sidecars`, loopback only) whose router load-balances over the two replicas: the
// same thing a Kubernetes Service name does for `http://traefik-oidc-sidecar:4181`. That router
// has a `retry` middleware, and the service a passive health check (the first refused connection
// takes the dead replica out; without it, retries round-robin onto the dead replica again and 8 %
// of the requests after the kill got 502 here) plus an active one on /readyz (keeps it out, lets
// the replacement back in). What is correct, then:
//   - a request sent after the killed replica's exit was seen must be 200 at once: Traefik's
//     retry resends it when the connection is refused;
//   - a request in flight on the replica when it died (or written onto a keep-alive connection
//     Traefik had not yet seen close) may answer 502 (forwardAuth passes the sidecar hop's 502
//     through; the shim answers 502 too): Traefik's retry resends only requests whose headers
//     were not yet written (it cannot know whether the server acted on them). The load client
//     sends such a request once more, as a browser reload or an API client's retry would, and it
//     must then be 200; at most LOAD_CONCURRENCY can be in that state.
// "No session lost": every one of those answers is whoami as demo with the browser's cookie,
// nothing sets a cookie, and the browser needs no new login.
//
// Per door (fa, then plugin), in a fresh browser context:
//   1. anonymous → OP login (demo/demo) → whoami as demo; the browser holds the Redis ticket
//   2. both replicas accept that cookie on their direct /auth route (so the later refusal means
//      something)
//   3. a bounded load (LOAD_REQUESTS authorized requests, LOAD_CONCURRENCY clients, ~2 s) with the
//      browser's cookie through the door; one replica gets SIGKILL mid-run → every request sent
//      after its exit is 200 from whoami as demo at once, no Set-Cookie, and the browser's next
//      navigations are still whoami with no trip to the OP (no session lost, no new login)
//   4. the killed replica is started again (a replacement, fresh memory), then the session is
//      ended at the OP (its end_session page, confirmed in the browser): the OP POSTs a logout
//      token to the relay, which hands it to ONE replica: for fa the replacement (so the survivor,
//      which has the session cached in memory, must learn of it through Redis), for plugin the
//      survivor (so the replacement must see the deletion in Redis). The relay records the
//      sidecar's answer (must be 200).
//   5. both replicas refuse the old cookie on their direct route (302 to the OP), and the
//      browser's next two navigations through the door land at the OP.
// Which check catches what (each seen failing once): cookie mode (E2E_REPLICAS_STORAGE=Cookie)
// passes 1–4 (a sealed cookie opens on any replica; the receiver remembers the ended sid) but
// fails 5 in both rounds: "replica b (did not receive it) answered 200 as demo". Without the
// passive health check, 3 fails (22 of 280 unpaced requests after the kill answered 502; paced,
// 1 of 280). A kill that was not mid-run fails 3's count of requests after the exit.
//
// Environment as run.mjs (SIDECAR_BIN, TRAEFIK_BIN, CHROMIUM, E2E_ARTIFACTS), plus REDIS_SERVER
// (default /usr/bin/redis-server), E2E_REPLICAS_STORAGE (Redis; Cookie only to see the suite
// fail). Prints one PASS/FAIL/SKIP line per check and a summary; exits non-zero on any failure.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { chromium } from 'playwright-core';
import {
  ROOT, Stack, freePort, request, waitFor, resolveTraefik, resolveSidecar, resolveWhoami, sleep,
  CLIENT_ID, CLIENT_SECRET, PLUGIN_NAME, AUTH_RESPONSE_HEADERS, AUTH_RESPONSE_HEADERS_REGEX,
} from './stack.mjs';
import { createReporter, assert, parseWhoami, headerValues, loginAtOp, summarize } from './harness.mjs';

const started = Date.now();
const ARTIFACTS = path.resolve(process.env.E2E_ARTIFACTS || path.join(ROOT, 'tests', 'e2e', 'artifacts'), 'replicas');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const REDIS_SERVER = process.env.REDIS_SERVER || (fs.existsSync('/usr/bin/redis-server') ? '/usr/bin/redis-server' : 'redis-server');
const STORAGE = process.env.E2E_REPLICAS_STORAGE || 'Redis';
const SUITE_TIMEOUT_MS = Number(process.env.E2E_REPLICAS_TIMEOUT_S || 240) * 1000;
const LOAD_REQUESTS = 400;
const LOAD_CONCURRENCY = 8;
const KILL_AFTER = 120; // responses received before the SIGKILL
const LOAD_PACE_MS = 30; // each of the LOAD_CONCURRENCY clients waits this long between requests
const NAV_TIMEOUT_MS = 15000;
const DOORS = ['fa', 'plugin'];
const REPLICAS = ['a', 'b'];

fs.rmSync(ARTIFACTS, { recursive: true, force: true });
fs.mkdirSync(ARTIFACTS, { recursive: true });
const { check, results, line } = createReporter({ artifactsDir: ARTIFACTS, started });

// ---------------------------------------------------------------------------------------------
// Configuration.

function replicaConfig({ port, metricsPort, issuer, secret, redisPort }) {
  return `# Generated by tests/e2e/replicas.mjs (replica on ${port})
listen: 127.0.0.1:${port}
metricsListen: 127.0.0.1:${metricsPort}
logLevel: debug
redis:
  url: redis://127.0.0.1:${redisPort}/0
  keyPrefix: "e2e-replicas:"
middlewares:
  default:
    Provider:
      Url: ${JSON.stringify(issuer)}
      ClientId: ${JSON.stringify(CLIENT_ID)}
      ClientSecret: ${JSON.stringify(CLIENT_SECRET)}
    Secret: ${JSON.stringify(secret)}
    Scopes: [openid, profile, email, groups]
    SessionStorageType: ${STORAGE}
    SessionCookie:
      Secure: false   # plain-http localhost only
`;
}

function traefikExtraEntryPoints(lbPort) {
  // Reached only by Traefik itself (forwardAuth, the shim): it must keep the X-Forwarded-* the
  // web entry point set, so loopback is trusted here (and only here).
  return `  sidecars:
    address: 127.0.0.1:${lbPort}
    forwardedHeaders:
      trustedIPs:
        - 127.0.0.1/32
`;
}

function traefikDynamic({ lbPort, whoamiPort, replicaPorts }) {
  const lb = `http://127.0.0.1:${lbPort}`;
  return `# Generated by tests/e2e/replicas.mjs
http:
  routers:
    fa:
      rule: "Host(\`fa.localhost\`)"
      entryPoints: [web]
      middlewares: [oidc-forwardauth]
      service: whoami
    plugin:
      rule: "Host(\`plugin.localhost\`)"
      entryPoints: [web]
      middlewares: [oidc-plugin]
      service: whoami
    api:
      rule: "Host(\`traefik.localhost\`)"
      entryPoints: [web]
      service: api@internal
    sidecars:
      rule: "PathPrefix(\`/\`)"
      entryPoints: [sidecars]
      middlewares: [sidecar-retry]
      service: sidecar-replicas
  middlewares:
    oidc-forwardauth:
      forwardAuth:
        address: ${JSON.stringify(`${lb}/auth/default`)}
        trustForwardHeader: true
        authResponseHeaders:
${AUTH_RESPONSE_HEADERS.map((h) => `          - ${h}`).join('\n')}
        authResponseHeadersRegex: ${JSON.stringify(AUTH_RESPONSE_HEADERS_REGEX)}
        addAuthCookiesToResponse:
          - TraefikOidcSidecar.ticket
    oidc-plugin:
      plugin:
        ${PLUGIN_NAME}:
          sidecarUrl: ${JSON.stringify(lb)}
          middleware: default
          timeout: 5s
    # A request whose replica died before answering is sent again, to the next server.
    sidecar-retry:
      retry:
        attempts: 4
  services:
    whoami:
      loadBalancer:
        servers:
          - url: ${JSON.stringify(`http://127.0.0.1:${whoamiPort}`)}
    sidecar-replicas:
      loadBalancer:
        servers:
${replicaPorts.map((p) => `          - url: ${JSON.stringify(`http://127.0.0.1:${p}`)}`).join('\n')}
        # A refused connection takes the server out at once (passive), for failureWindow; the
        # active check on /readyz keeps it out while it is down and lets the replacement back in.
        passiveHealthCheck:
          failureWindow: 2s
          maxFailedAttempts: 1
        healthCheck:
          path: /readyz
          interval: 1s
          timeout: 500ms
`;
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/** Redis answers PING with +PONG. */
function redisPing(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    sock.setTimeout(1000);
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => { buf += d; if (buf.includes('\r\n')) { sock.destroy(); resolve(buf.startsWith('+PONG')); } });
    sock.on('timeout', () => { sock.destroy(); resolve(false); });
    sock.on('error', () => resolve(false));
  });
}

/** The OP's back-channel target: records every logout token POST and hands it to `target`
 * (one replica's direct route), answering the OP with that replica's status. */
function startRelay(port) {
  const relay = { target: null, seen: [] };
  relay.server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const target = relay.target;
      const entry = { at: Date.now(), target, contentType: req.headers['content-type'] || '', status: 0 };
      relay.seen.push(entry);
      if (!target) { entry.status = 503; res.writeHead(503).end(); return; }
      const out = http.request(target, { method: 'POST', headers: { 'Content-Type': entry.contentType, 'Content-Length': body.length }, agent: false }, (r) => {
        r.resume();
        r.on('end', () => { entry.status = r.statusCode; res.writeHead(r.statusCode).end(); });
      });
      out.on('error', (e) => { entry.status = 599; entry.error = e.message; res.writeHead(502).end(); });
      out.end(body);
    });
  });
  return new Promise((resolve) => relay.server.listen(port, '127.0.0.1', () => resolve(relay)));
}

/** The sidecar's direct /auth answer for a browser navigation of `host` with `cookie`. */
function probeReplica(port, host, cookie) {
  return request({
    port,
    path: '/auth/default',
    headers: {
      Cookie: cookie,
      Accept: 'text/html',
      'X-Forwarded-Method': 'GET',
      'X-Forwarded-Proto': 'http',
      'X-Forwarded-Host': host,
      'X-Forwarded-Uri': '/private/probe',
      'X-Forwarded-For': '127.0.0.1',
    },
  });
}

/**
 * LOAD_REQUESTS authorized GETs through the door, LOAD_CONCURRENCY at a time; `onProgress(done)`
 * runs after each response (the kill is started from there); `window()` is { sent, dead }: when
 * SIGKILL was sent (0 before) and when the replica's exit was seen (Infinity before). A request
 * sent inside that window that got 502 is sent once more (`retriedAfter`).
 * Returns every outcome.
 */
async function runLoad({ port, host, cookie, onProgress, window }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: LOAD_CONCURRENCY });
  const outcomes = [];
  let next = 0;
  const one = (i) => new Promise((resolve) => {
    const t0 = Date.now();
    const req = http.request({ host: '127.0.0.1', port, path: `/load/${i}`, headers: { Host: host, Cookie: cookie, Accept: 'text/html' }, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ i, t0, ms: Date.now() - t0, status: res.statusCode, setCookie: res.headers['set-cookie'] || [], body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (e) => resolve({ i, t0, ms: Date.now() - t0, status: 0, error: e.message, setCookie: [], body: '' }));
    });
    req.setTimeout(10000, () => req.destroy(new Error('timeout after 10 s')));
    req.on('error', (e) => resolve({ i, t0, ms: Date.now() - t0, status: 0, error: e.message, setCookie: [], body: '' }));
    req.end();
  });
  const worker = async () => {
    while (next < LOAD_REQUESTS) {
      let o = await one(next++);
      // Sent after the kill began but before the replica's exit was seen, and answered 502: it
      // was in flight on the dying replica, or on a keep-alive connection Traefik had not yet
      // seen close (see the header). A client (a browser reload, an API client's retry) sends
      // it once more.
      const { sent, dead } = window();
      if (o.status === 502 && sent && o.t0 <= dead) {
        const first = o;
        o = { ...(await one(first.i)), retriedAfter: first.status, t0: first.t0 };
      }
      outcomes.push(o);
      await onProgress(outcomes.length);
      await sleep(LOAD_PACE_MS);
    }
  };
  await Promise.all(Array.from({ length: LOAD_CONCURRENCY }, worker));
  agent.destroy();
  return outcomes;
}

function cookieHeader(cookies) {
  return cookies.map((c) => `${c.name}=${c.value}`).join('; ');
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const timer = setTimeout(() => {
    line('FAIL', `suite did not finish within ${SUITE_TIMEOUT_MS / 1000} s`);
    process.exit(1);
  }, SUITE_TIMEOUT_MS);

  const [traefikPort, lbPort, whoamiPort, redisPort, relayPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const replicaPorts = { a: await freePort(), b: await freePort() };
  const metricsPorts = { a: await freePort(), b: await freePort() };
  const relay = await startRelay(relayPort);
  const stack = new Stack({
    artifactsDir: ARTIFACTS,
    log: (m) => console.log(`     ${m}`),
    opEnv: { OP_BACKCHANNEL_LOGOUT_URI: `http://127.0.0.1:${relayPort}/backchannel-logout` },
  });
  // The pieces are started here, not by stack.start() (which runs one sidecar).
  stack.ports = { traefik: traefikPort, whoami: whoamiPort };
  stack.doors = DOORS;
  stack.urls = Object.fromEntries(DOORS.map((d) => [d, `http://${d}.localhost:${traefikPort}`]));
  const redisDir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-replicas-redis-'));
  const secret = crypto.randomBytes(32).toString('hex');
  let sidecarBin;
  let browser;
  const startReplica = (r) => stack.startSidecar(sidecarBin, {
    name: `replica-${r}`,
    port: replicaPorts[r],
    configText: replicaConfig({ port: replicaPorts[r], metricsPort: metricsPorts[r], issuer: stack.issuer, secret, redisPort }),
  });

  try {
    const okStack = await check(`stack: redis-server, OP (back-channel logout → relay), whoami, replicas a and b (SessionStorageType ${STORAGE}), Traefik with a load-balanced sidecar entry point`, async () => {
      sidecarBin = resolveSidecar();
      const traefikBin = resolveTraefik();
      const redis = stack.spawn('redis', REDIS_SERVER, ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', redisDir, '--loglevel', 'warning']);
      await waitFor('redis-server PONG', async () => { redis.assertRunning(); return redisPing(redisPort); }, { timeoutMs: 15000 });
      await Promise.all([stack.startOp(), stack.startWhoami(resolveWhoami(), whoamiPort)]);
      for (const r of REPLICAS) await startReplica(r);
      await stack.startTraefik(traefikBin, {
        dynamicConfig: traefikDynamic({ lbPort, whoamiPort, replicaPorts: REPLICAS.map((r) => replicaPorts[r]) }),
        extraEntryPoints: traefikExtraEntryPoints(lbPort),
        routerNames: ['fa@file', 'plugin@file', 'sidecars@file'],
        hosts: DOORS.map((d) => `${d}.localhost`),
      });
      return `redis 127.0.0.1:${redisPort}, replicas :${replicaPorts.a} :${replicaPorts.b} behind :${lbPort}`;
    }, { timeoutMs: 120000 });
    if (!okStack) return;
    const { issuer } = stack;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
      timeout: 30000,
    });

    // fa: kill a, the back-channel goes to the replacement a (b must learn it through Redis).
    // plugin: kill b, the back-channel goes to the survivor a (the replacement b must see it).
    const rounds = [
      { door: 'fa', victim: 'a', survivor: 'b', receiver: 'a' },
      { door: 'plugin', victim: 'b', survivor: 'a', receiver: 'a' },
    ];
    for (const { door, victim, survivor, receiver } of rounds) {
      const base = stack.urls[door];
      const host = `${door}.localhost:${traefikPort}`;
      const protectedUrl = `${base}/private/page?e2e=replicas`;
      const ctx = await browser.newContext();
      ctx.setDefaultNavigationTimeout(NAV_TIMEOUT_MS);
      ctx.setDefaultTimeout(NAV_TIMEOUT_MS);
      const page = await ctx.newPage();
      let toOp = 0;
      page.on('request', (r) => { if (r.isNavigationRequest() && r.url().startsWith(issuer)) toOp++; });
      let cookie = '';
      const names = {
        login: `${door}: anonymous → OP login, demo/demo → whoami as demo, the browser holds the ${STORAGE === 'Redis' ? 'Redis ticket' : 'session'} cookie`,
        both: `${door}: both replicas accept the browser's cookie on their direct /auth route`,
        load: `${door}: ${LOAD_REQUESTS} authorized requests (${LOAD_CONCURRENCY} at a time), replica ${victim} SIGKILLed after ${KILL_AFTER} → every request sent after the kill 200 at once, those in flight at the kill 200 at the latest on one client retry; all whoami as demo, no Set-Cookie`,
        after: `${door}: after the kill the browser's next navigation is whoami as demo, no trip to the OP (replica ${survivor} alone serves)`,
        bcl: `${door}: replacement ${victim} started; session ended at the OP's end_session → one logout token to replica ${receiver} (${receiver === survivor ? 'the survivor' : 'the replacement'}), answered 200`,
        gone: `${door}: both replicas refuse the old cookie (302 to the OP) and the browser's next two navigations land at the OP`,
      };

      await check(names.login, async () => {
        // A failed earlier round may have left a replica down: every round starts with both.
        for (const r of REPLICAS) if (stack.procs[`replica-${r}`].exited) await startReplica(r);
        const w = await loginAtOp(page, issuer, protectedUrl);
        assert(headerValues(w, 'X-Forwarded-User').join('|') === 'demo', `X-Forwarded-User: ${headerValues(w, 'X-Forwarded-User')}`);
        const held = (await ctx.cookies(base)).filter((c) => c.name.startsWith('TraefikOidcSidecar'));
        if (STORAGE === 'Redis') {
          assert(held.length === 1 && held[0].name === 'TraefikOidcSidecar.ticket' && /^[A-Za-z0-9_-]{64}$/.test(held[0].value),
            `cookies: ${held.map((c) => `${c.name} (${c.value.length} chars)`).join(', ')}`);
        }
        cookie = cookieHeader(await ctx.cookies(base));
        return held.map((c) => `${c.name} (${c.value.length} chars)`).join(', ');
      }, { page });

      await check(names.both, async () => {
        const got = [];
        for (const r of REPLICAS) {
          const res = await probeReplica(replicaPorts[r], host, cookie);
          got.push(`${r}: ${res.status}`);
          assert(res.status === 200 && res.headers['x-forwarded-user'] === 'demo', `replica ${r} answered ${res.status} ${res.headers.location || ''}`);
        }
        return got.join(', ');
      }, { deps: [names.login] });

      await check(names.load, async () => {
        let killAt = 0;
        let deadAt = Infinity;
        let killed = null;
        const t0 = Date.now();
        const outcomes = await runLoad({
          port: traefikPort,
          host,
          cookie,
          window: () => ({ sent: killAt, dead: deadAt }),
          onProgress: async (done) => {
            if (done === KILL_AFTER && !killed) {
              killAt = Date.now();
              const p = stack.procs[`replica-${victim}`];
              p.killGroup('SIGKILL');
              killed = p.exitPromise.then((info) => { deadAt = Date.now(); return info; });
            }
          },
        });
        const took = Date.now() - t0;
        const info = await killed;
        assert(info && info.signal === 'SIGKILL', `replica ${victim} did not die of SIGKILL: ${JSON.stringify(info)}`);
        const bad = outcomes.filter((o) => {
          if (o.status !== 200) return true;
          const w = parseWhoami(o.body);
          return !w || headerValues(w, 'X-Forwarded-User').join('|') !== 'demo';
        });
        const afterKill = outcomes.filter((o) => o.t0 > deadAt);
        const retried = outcomes.filter((o) => o.retriedAfter);
        const withCookie = outcomes.filter((o) => o.setCookie.length);
        const statuses = {};
        for (const o of outcomes) statuses[o.status] = (statuses[o.status] || 0) + 1;
        const sorted = outcomes.map((o) => o.ms).sort((x, y) => x - y);
        const p = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
        fs.writeFileSync(path.join(ARTIFACTS, `load-${door}.json`), JSON.stringify({ killAt, deadAt, outcomes: outcomes.map(({ body, ...o }) => o) }, null, 1));
        assert(outcomes.length === LOAD_REQUESTS, `${outcomes.length} outcomes`);
        assert(afterKill.length >= LOAD_REQUESTS / 2, `only ${afterKill.length} requests were sent after the replica's exit: the kill was not mid-run`);
        assert(bad.length === 0, `${bad.length} bad responses (statuses ${JSON.stringify(statuses)}); first: ${bad.slice(0, 3).map((o) => `#${o.i} ${o.status} ${o.error || o.body.slice(0, 120)}`).join(' | ')}`);
        assert(withCookie.length === 0, `${withCookie.length} responses set cookies: ${withCookie[0]?.setCookie}`);
        assert(retried.length <= LOAD_CONCURRENCY, `${retried.length} requests in flight at the kill needed a retry (at most ${LOAD_CONCURRENCY} can have been in flight)`);
        return `${outcomes.length} × 200 in ${took} ms (SIGKILL → exit seen in ${deadAt - killAt} ms; ${afterKill.length} sent after that, all 200 at once; ${retried.length} in flight answered 502, then 200 on one client retry), latency p50 ${p(0.5)} ms p99 ${p(0.99)} ms max ${sorted[sorted.length - 1]} ms`;
      }, { deps: [names.both], timeoutMs: 60000 });

      await check(names.after, async () => {
        const before = toOp;
        const held = cookieHeader(await ctx.cookies(base));
        assert(held === cookie, 'the browser\'s cookies changed during the load');
        for (let i = 0; i < 2; i++) {
          await page.goto(`${protectedUrl}&after=${i}`);
          const w = parseWhoami(await page.evaluate(() => document.body.innerText));
          assert(w, `navigation ${i + 1} after the kill: not whoami but ${page.url()}`);
          assert(headerValues(w, 'X-Forwarded-User').join('|') === 'demo', `X-Forwarded-User: ${headerValues(w, 'X-Forwarded-User')}`);
        }
        assert(toOp === before, `${toOp - before} navigations went to the OP`);
        const res = await probeReplica(replicaPorts[survivor], host, cookie);
        assert(res.status === 200, `the survivor ${survivor} answered ${res.status} on its direct route`);
        return 'two navigations, both whoami';
      }, { deps: [names.load], page });

      await check(names.bcl, async () => {
        await startReplica(victim);
        // Traefik's health check puts the replacement back in the rotation within its interval.
        await sleep(1500);
        relay.target = `http://127.0.0.1:${replicaPorts[receiver]}/backchannel-logout/default`;
        const seenBefore = relay.seen.length;
        await page.goto(`${issuer}/session/end`);
        const yes = page.getByRole('button', { name: /yes, sign me out/i });
        await yes.waitFor({ timeout: NAV_TIMEOUT_MS });
        await yes.click();
        await page.waitForLoadState('load').catch(() => {});
        const mine = await waitFor('the OP\'s logout token', async () => {
          const s = relay.seen.slice(seenBefore);
          return s.length && s.every((e) => e.status) ? s : false;
        }, { timeoutMs: 10000 });
        await sleep(500); // a second token, if the OP were to send one, arrives here
        const all = relay.seen.slice(seenBefore);
        assert(all.length === 1, `${all.length} logout tokens: ${JSON.stringify(all)}`);
        assert(all[0].contentType.startsWith('application/x-www-form-urlencoded'), `content type ${all[0].contentType}`);
        assert(all[0].status === 200, `replica ${receiver} answered ${all[0].status} ${all[0].error || ''}`);
        return `${mine.length} token, replica ${receiver} answered ${all[0].status}`;
      }, { deps: [names.after], page });

      await check(names.gone, async () => {
        const got = [];
        for (const r of REPLICAS) {
          const res = await probeReplica(replicaPorts[r], host, cookie);
          got.push(`${r}: ${res.status}`);
          assert(res.status === 302 && (res.headers.location || '').startsWith(issuer),
            `replica ${r} (${r === receiver ? 'received the logout token' : 'did not receive it'}) answered ${res.status} ${res.headers['x-forwarded-user'] ? `as ${res.headers['x-forwarded-user']}` : res.headers.location || ''}`);
        }
        for (let i = 0; i < 2; i++) {
          const before = toOp;
          await page.goto(`${protectedUrl}&gone=${i}`);
          await page.waitForURL((u) => u.href.startsWith(issuer), { timeout: NAV_TIMEOUT_MS }).catch(() => {});
          assert(page.url().startsWith(issuer) && toOp > before, `navigation ${i + 1} after the logout: ${page.url()}`);
        }
        return `${got.join(', ')}; both navigations at the OP`;
      }, { deps: [names.bcl], page });

      await ctx.close();
    }
  } finally {
    clearTimeout(timer);
    await browser?.close().catch(() => {});
    // Traefik and the replicas before Redis (which stack.stop() would end first, started first).
    await stack.procs.traefik?.stop().catch(() => {});
    for (const r of REPLICAS) await stack.procs[`replica-${r}`]?.stop().catch(() => {});
    await stack.stop().catch(() => {});
    relay.server.close();
    fs.rmSync(redisDir, { recursive: true, force: true });
  }
}

let crashed = false;
main().catch((e) => {
  crashed = true;
  console.error(e);
}).finally(() => {
  process.exit(summarize({ results, started, artifactsDir: ARTIFACTS, crashed, label: 'replicas e2e' }));
});
