// End-to-end suite of `SessionCookie.IdleTimeout` (issue 21 §2) in a real Traefik v3 with both
// doors (forwardAuth and the Yaegi plugin), the test OP and headless Chromium:
//
//   node tests/e2e/idle.mjs     (scripts/test-e2e.sh runs it after run.mjs)
//
// The suite's own stack (stack.mjs) with one change to the sidecar file: IdleTimeout 4s on the
// `default` middleware (interval 1 s: a session ends between 4 s and 5 s after its last use; the
// OP's tokens live an hour, so nothing else can end it). Per door, in a fresh browser context:
//   1. anonymous → OP login (demo/demo) → whoami as demo
//   2. browsing: navigations 1.5 s apart for well over the timeout all reach whoami as demo with
//      no trip to the OP, and the session cookie changes on the way (the moved stamp's
//      Set-Cookie rides a 200 through the door to the browser)
//   3. idle: after 6.5 s without a request, the next navigation lands on the OP's login page,
//      and the browser no longer holds the session cookie (cleared on that answer)
//
// Environment as run.mjs (SIDECAR_BIN, TRAEFIK_BIN, CHROMIUM, E2E_ARTIFACTS). Prints one
// PASS/FAIL/SKIP line per check and a summary; exits non-zero on any failure.
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ROOT, Stack, sidecarConfig, sleep } from './stack.mjs';
import { assert, createReporter, loginAtOp, pageText, parseWhoami, summarize } from './harness.mjs';

const IDLE_TIMEOUT_S = 4;
const BROWSE_EVERY_MS = 1500;
const BROWSE_FOR_MS = 9000; // more than twice the timeout
const IDLE_FOR_MS = 6500; // more than timeout + interval
const COOKIE_PREFIX = 'TraefikOidcSidecar';
const DOORS = ['fa', 'plugin'];

/** The suite's stack, its sidecar file with `SessionCookie.IdleTimeout`. */
class IdleStack extends Stack {
  async startSidecar(bin, opts = {}) {
    if (opts.configText === undefined) {
      this.secret ||= 'idle-e2e-secret-0123456789abcdef-0123456789';
      const base = sidecarConfig({
        sidecarPort: this.ports.sidecar,
        metricsPort: this.ports.metrics,
        issuer: this.issuer,
        secret: this.secret,
        logLevel: this.logLevel,
      });
      const at = '    SessionCookie:\n';
      assert(base.split(at).length === 2, 'stack.mjs sidecarConfig: one SessionCookie block expected');
      opts = { ...opts, configText: base.replace(at, `${at}      IdleTimeout: ${IDLE_TIMEOUT_S}s\n`) };
    }
    return super.startSidecar(bin, opts);
  }
}

/**
 * The idle-timeout checks, per door, with `browser` (Chromium) and the reporter's `check`.
 * Starts and stops its own stack (artifacts in `artifactsDir`).
 */
export async function idleTimeoutChecks({ browser, check, artifactsDir, log = () => {} }) {
  const stack = new IdleStack({ artifactsDir, log });
  try {
    const ready = await check('idle: stack with SessionCookie.IdleTimeout 4s ready', async () => {
      await stack.start();
      return `Traefik ${stack.binaries.traefik}`;
    }, { timeoutMs: 120000 });
    if (!ready) return;
    const { issuer } = stack.urls;
    for (const door of DOORS) {
      const base = stack.urls[door];
      const protectedUrl = `${base}/private/idle?e2e=1`;
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      const session = async () => (await ctx.cookies(base))
        .filter((c) => c.name.startsWith(`${COOKIE_PREFIX}.session`))
        .sort((a, b) => a.name.localeCompare(b.name)).map((c) => c.value).join('|');
      const cLogin = `idle ${door}: login demo/demo reaches whoami`;
      await check(cLogin, async () => {
        const w = await loginAtOp(page, issuer, protectedUrl);
        assert(w.text.includes('demo'), 'whoami without demo');
      }, { page });

      const cBrowse = `idle ${door}: browsing every ${BROWSE_EVERY_MS / 1000} s keeps the session for ${BROWSE_FOR_MS / 1000} s (> ${IDLE_TIMEOUT_S} s), the moved stamp reaches the browser`;
      await check(cBrowse, async () => {
        const first = await session();
        assert(first, 'no session cookie after login');
        const seen = new Set([first]);
        const until = Date.now() + BROWSE_FOR_MS;
        let n = 0;
        while (Date.now() < until) {
          await sleep(BROWSE_EVERY_MS);
          await page.goto(`${protectedUrl}&n=${n++}`);
          assert(!page.url().startsWith(issuer), `navigation ${n} went to the OP`);
          const w = parseWhoami(await pageText(page));
          assert(w && w.text.includes('demo'), `navigation ${n}: not whoami as demo`);
          seen.add(await session());
        }
        assert(seen.size > 1, 'the session cookie never changed: no stamp reached the browser');
        return `${n} navigations, ${seen.size - 1} new session cookies`;
      }, { deps: [cLogin], page, timeoutMs: BROWSE_FOR_MS + 20000 });

      await check(`idle ${door}: ${IDLE_FOR_MS / 1000} s idle, the next navigation is sent to the OP and the idle session is gone`, async () => {
        const before = await session();
        await sleep(IDLE_FOR_MS);
        // The OP keeps its own SSO session, so it may answer the login at once and send the
        // browser back through the callback: what counts is that the sidecar sent it there and
        // the idle session did not come back.
        const navs = [];
        const onReq = (r) => { if (r.isNavigationRequest() && r.frame() === page.mainFrame()) navs.push(r.url()); };
        page.on('request', onReq);
        try {
          await page.goto(`${protectedUrl}&after=idle`);
          await page.waitForLoadState('load').catch(() => {});
        } finally {
          page.off('request', onReq);
        }
        const toOp = navs.filter((u) => u.startsWith(issuer));
        assert(toOp.length > 0, `the idle session was not sent to the OP: ${navs.join(' -> ')}`);
        const now = await session();
        if (page.url().startsWith(issuer)) {
          assert(!now, 'the session cookie is still in the browser on the OP page');
          return 'login form shown, cookie cleared';
        }
        assert(now && now !== before, 'back from the OP with the idle session cookie');
        return `sent to the OP (${toOp.length} navigation(s)); its SSO session logged in again with a new session cookie`;
      }, { deps: [cBrowse], page, timeoutMs: IDLE_FOR_MS + 20000 });
      await ctx.close();
    }
  } finally {
    await stack.stop().catch(() => {});
  }
}

// Run on its own (scripts/test-e2e.sh): its own reporter and browser.
if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  const started = Date.now();
  const ARTIFACTS = path.resolve(process.env.E2E_ARTIFACTS || path.join(ROOT, 'tests', 'e2e', 'artifacts'), 'idle');
  const { check, results, line } = createReporter({ artifactsDir: ARTIFACTS, started });
  let crashed = false;
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run'],
      timeout: 30000,
    });
    await idleTimeoutChecks({ browser, check, artifactsDir: ARTIFACTS, log: (m) => console.log(`     ${m}`) });
  } catch (err) {
    crashed = true;
    line('FAIL', 'idle suite', err.stack || String(err));
  } finally {
    await browser?.close().catch(() => {});
  }
  process.exit(summarize({ results, started, artifactsDir: ARTIFACTS, crashed, label: 'idle e2e' }));
}
