// End-to-end suite of inline traefik-oidc-auth blocks (issue 12) in a real Traefik v3.6.
//
//   node tests/e2e/inline.mjs       (scripts/test-e2e.sh runs it after run.mjs)
//
// Part 1, decoding (no OP, a recording stand-in sidecar): every block of README.md and
// examples/ (traefik-plugin/testdata/inline) is written into Traefik's dynamic configuration
// three times, as the plugin's own config beside sidecarUrl: typed YAML, label-shaped (all
// strings, comma lists) and label-shaped with indexed lists. Traefik loads the shim from
// plugins-local; a request through each router must reach the stand-in sidecar at
// /auth/inline/<the fixture's golden hash> with X-Oidc-Sidecar-Middleware naming the router's
// middleware, and register there first (404 cue → POST /inline/<hash> with the canonical bytes).
// This proves Traefik's loader keeps every unknown key (the ",remain" map) and that file and
// label shapes give one hash.
//
// Part 2, the real thing (OP, the Rust sidecar with an empty `middlewares:`, Chromium): the
// README's traefik-oidc-auth block pasted as the plugin's config (file provider), and the same
// block label-shaped; login, identity headers, logout; the sidecar restarted between two requests
// of a logged-in user, who stays logged in; refused blocks (422) answer 500 and are logged once.
// E2E_INLINE_PARTS=decoding runs part 1 only (no Rust sidecar needed).
//
// Environment as run.mjs (SIDECAR_BIN, TRAEFIK_BIN, CHROMIUM, E2E_ARTIFACTS). Prints one
// PASS/FAIL line per check and "N passed, N failed"; exits non-zero on any failure.
import fs from 'node:fs';
import http from 'node:http';
import crypto from 'node:crypto';
import path from 'node:path';
import os from 'node:os';
import { ROOT, Stack, freePort, request, resolveTraefik, waitFor, traefikStaticConfig, layoutLocalPlugin, sleep } from './stack.mjs';
import { fixtureNames, readFixture, fixtureHash, flowYaml, labelShape } from './inline-config.mjs';
import { spawn } from 'node:child_process';

const started = Date.now();
const ARTIFACTS = path.resolve(process.env.E2E_ARTIFACTS || path.join(ROOT, 'tests', 'e2e', 'artifacts'), 'inline');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SUITE_TIMEOUT_MS = Number(process.env.E2E_INLINE_TIMEOUT_S || 240) * 1000;
fs.rmSync(ARTIFACTS, { recursive: true, force: true });
fs.mkdirSync(ARTIFACTS, { recursive: true });

const results = [];
function line(status, name, detail) {
  const secs = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
  console.log(`${status.padEnd(4)} [${secs}s] ${name}${detail ? ` -- ${detail}` : ''}`);
}
async function check(name, fn) {
  try {
    const detail = await fn();
    results.push({ name, status: 'PASS' });
    line('PASS', name, typeof detail === 'string' ? detail : '');
    return true;
  } catch (e) {
    results.push({ name, status: 'FAIL' });
    line('FAIL', name, e.stack || e.message);
    return false;
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// ---------------------------------------------------------------------------------------------
// Part 1: Traefik's decoding of inline blocks, against a recording stand-in sidecar.

/** A stand-in sidecar: knows a hash once it was registered with a body whose SHA-256 is that
 * hash; answers 404 + X-Oidc-Sidecar-Unknown-Block otherwise. Records everything. */
function recordingSidecar() {
  const known = new Map(); // hash -> canonical body
  const seen = []; // { method, path, middleware }
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const mw = req.headers['x-oidc-sidecar-middleware'] || '';
      seen.push({ method: req.method, path: req.url, middleware: mw });
      let m = /^\/inline\/([0-9a-f]{64})$/.exec(req.url);
      if (req.method === 'POST' && m) {
        const body = Buffer.concat(chunks);
        const sum = crypto.createHash('sha256').update(body).digest('hex');
        if (sum !== m[1] || req.headers['content-type'] !== 'application/json') {
          res.writeHead(400).end('hash mismatch');
          return;
        }
        known.set(m[1], body.toString('utf8'));
        res.writeHead(201).end();
        return;
      }
      m = /^\/auth\/inline\/([0-9a-f]{64})$/.exec(req.url);
      if (req.method === 'GET' && m) {
        if (!known.has(m[1])) {
          res.writeHead(404, { 'X-Oidc-Sidecar-Unknown-Block': m[1], 'Content-Type': 'application/problem+json' }).end('{"status":404}');
          return;
        }
        res.writeHead(200, { 'X-Forwarded-User': 'inline-ok' }).end();
        return;
      }
      res.writeHead(418).end();
    });
  });
  return { srv, known, seen };
}

function upstreamServer() {
  return http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ user: req.headers['x-forwarded-user'] || null }));
  });
}

function listen(srv, port) {
  return new Promise((resolve) => srv.listen(port, '127.0.0.1', resolve));
}

/** The decoding cases: [router/middleware name, fixture, plugin config block]. */
function decodingCases() {
  const cases = [];
  for (const name of fixtureNames()) {
    cases.push({ id: `typed-${name}`, name, block: readFixture(name, '.json') });
    cases.push({ id: `labels-${name}`, name, block: labelShape(readFixture(name, '.json')) });
    cases.push({ id: `indexed-${name}`, name, block: labelShape(readFixture(name, '.json'), true) });
  }
  return cases;
}

function decodingDynamicConfig(cases, sidecarPort, upstreamPort) {
  const routers = [];
  const mws = [];
  for (const c of cases) {
    routers.push(`    ${c.id}:\n      rule: "Host(\`${c.id}.localhost\`)"\n      entryPoints: [web]\n      middlewares: [${c.id}]\n      service: up`);
    const conf = { sidecarUrl: `http://127.0.0.1:${sidecarPort}`, timeout: '5s', ...c.block };
    mws.push(`    ${c.id}:\n      plugin:\n        oidcsidecar: ${flowYaml(conf)}`);
  }
  return `# Generated by tests/e2e/inline.mjs
http:
  routers:
${routers.join('\n')}
  middlewares:
${mws.join('\n')}
  services:
    up:
      loadBalancer:
        servers:
          - url: "http://127.0.0.1:${upstreamPort}"
`;
}

async function partDecoding() {
  const traefikBin = resolveTraefik();
  const sidecar = recordingSidecar();
  const up = upstreamServer();
  const [sidecarPort, upstreamPort, traefikPort] = [await freePort(), await freePort(), await freePort()];
  await listen(sidecar.srv, sidecarPort);
  await listen(up, upstreamPort);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-inline-'));
  let proc;
  try {
    layoutLocalPlugin(work);
    const cases = decodingCases();
    const dynamicFile = path.join(ARTIFACTS, 'decoding-dynamic.yml');
    const staticFile = path.join(ARTIFACTS, 'decoding-static.yml');
    fs.writeFileSync(dynamicFile, decodingDynamicConfig(cases, sidecarPort, upstreamPort));
    fs.writeFileSync(staticFile, traefikStaticConfig({ traefikPort, dynamicFile, accessLogFile: path.join(ARTIFACTS, 'decoding-access.log'), logLevel: 'INFO' }));
    const logFile = path.join(ARTIFACTS, 'decoding-traefik.log');
    const log = fs.openSync(logFile, 'w');
    proc = spawn(traefikBin, [`--configFile=${staticFile}`], { cwd: work, detached: true, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    fs.appendFileSync(path.join(ARTIFACTS, 'pids'), `${proc.pid} traefik-decoding\n`);

    await check(`decoding: real Traefik loads ${cases.length} inline plugin configs (${fixtureNames().length} blocks x typed, labels, indexed labels)`, async () => {
      await waitFor('the first router', async () => {
        assert(proc.exitCode === null, `Traefik exited:\n${fs.readFileSync(logFile, 'utf8').slice(-3000)}`);
        const r = await request({ port: traefikPort, path: '/', headers: { Host: `${cases[0].id}.localhost` }, timeoutMs: 10000 });
        return r.status !== 404;
      }, { timeoutMs: 60000 });
      const errs = fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => / (ERR|FTL) /.test(l));
      assert(errs.length === 0, `Traefik logged errors:\n${errs.join('\n')}`);
    });

    for (const c of cases) {
      await check(`decoding: ${c.id} asks the sidecar for the golden hash`, async () => {
        const want = fixtureHash(c.name);
        const r = await request({ port: traefikPort, path: '/', headers: { Host: `${c.id}.localhost` }, timeoutMs: 10000 });
        assert(r.status === 200 && JSON.parse(r.body).user === 'inline-ok', `status ${r.status} ${r.body}`);
        const mine = sidecar.seen.filter((s) => s.middleware === `${c.id}@file`);
        const auth = mine.filter((s) => s.method === 'GET').map((s) => s.path);
        assert(auth.length > 0 && auth.every((p) => p === `/auth/inline/${want}`), `asked ${JSON.stringify(auth)}, want /auth/inline/${want}`);
        assert(sidecar.known.has(want), 'the block was not registered');
        assert(sidecar.known.get(want) === fs.readFileSync(path.join(ROOT, 'traefik-plugin', 'testdata', 'inline', `${c.name}.canonical.json`), 'utf8'),
          'registered body differs from the golden canonical JSON');
        return want.slice(0, 12);
      });
    }

    await check('decoding: one registration per block however many middlewares share it', async () => {
      const posts = sidecar.seen.filter((s) => s.method === 'POST');
      // Three middleware instances (typed, labels, indexed) share each hash; each instance
      // registers when it first meets the 404 cue, unless another already did.
      assert(posts.length >= fixtureNames().length && posts.length <= 3 * fixtureNames().length, `${posts.length} registrations`);
      return `${posts.length} registrations, ${sidecar.known.size} blocks`;
    });
  } finally {
    if (proc && proc.exitCode === null) {
      try { process.kill(-proc.pid, 'SIGKILL'); } catch { /* gone */ }
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.on('exit', r)));
    }
    sidecar.srv.close();
    up.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const timer = setTimeout(() => {
    line('FAIL', `suite did not finish within ${SUITE_TIMEOUT_MS / 1000} s`);
    process.exit(1);
  }, SUITE_TIMEOUT_MS);
  await partDecoding();
  if (process.env.E2E_INLINE_PARTS !== 'decoding') {
    const { partLogin } = await import('./inline-login.mjs');
    await partLogin({ check, assert, line, ARTIFACTS, CHROMIUM });
  }
  clearTimeout(timer);
  const failed = results.filter((r) => r.status === 'FAIL').length;
  console.log(`\ninline e2e: ${results.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
