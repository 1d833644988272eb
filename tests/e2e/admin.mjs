// End-to-end checks of the operators' revocation API (issue 21 §5) through a real Traefik v3 with
// headless Chromium, against the real OP:
//
//   node tests/e2e/admin.mjs        (scripts/test-e2e.sh runs it after run.mjs)
//
// Its own stack (OP, whoami, a sidecar with `admin:` on, Traefik with both doors). Per door (fa =
// Traefik's forwardAuth, plugin = the Yaegi shim), in a fresh browser context:
//   1. log in (demo/demo) and get whoami as demo;
//   2. control: with the OP's cookies removed from the browser (its IdP session out of reach, as
//      if it had ended), the next navigation is still whoami: the sidecar's session alone
//      carries it, so step 4 can only pass because of the revocation;
//   3. POST /admin/revoke {"sub": "demo"} on the admin listener answers 200 {"revoked": null}
//      (cookie mode cannot count), and without the token 401 problem+json;
//   4. the next navigation lands on the OP's login page, and fetch() gets 401;
//   5. a new login (a later second than the revocation) gets whoami again.
// The admin API is not reachable through the doors or the auth listener (checked once).
//
// Environment as run.mjs (SIDECAR_BIN, TRAEFIK_BIN, CHROMIUM, E2E_ARTIFACTS). Prints one
// PASS/FAIL/SKIP line per check and a summary; exits non-zero on any failure.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { ROOT, Stack, freePort, request, sleep, sidecarConfig } from './stack.mjs';
import { createReporter, assert, parseWhoami, headerValues, pageText, summarize } from './harness.mjs';

const NAV_TIMEOUT_MS = 15000;
const DOORS = ['fa', 'plugin'];
const DOOR_LABEL = { fa: 'forwardAuth', plugin: 'plugin' };

/** The suite's stack with `admin:` on in the sidecar's file (a random token, a loopback port). */
class AdminStack extends Stack {
  async startSidecar(bin, opts = {}) {
    if (opts.configText === undefined && (opts.name ?? 'sidecar') === 'sidecar') {
      this.secret ||= crypto.randomBytes(32).toString('hex');
      this.adminPort ||= await freePort();
      this.adminToken ||= crypto.randomBytes(24).toString('hex');
      const base = sidecarConfig({
        sidecarPort: this.ports.sidecar, metricsPort: this.ports.metrics, issuer: this.issuer, secret: this.secret,
      });
      opts = { ...opts, configText: `${base}admin:\n  listen: ${this.adminPort}   # a bare port binds 127.0.0.1\n  token: ${JSON.stringify(this.adminToken)}\n` };
    }
    return super.startSidecar(bin, opts);
  }

  /** Calls the admin API; returns status, content type and the parsed body. */
  async admin(method, p, { body, token = this.adminToken } = {}) {
    const res = await fetch(`http://127.0.0.1:${this.adminPort}${p}`, {
      method,
      headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    return { status: res.status, type: res.headers.get('content-type') || '', body: text ? JSON.parse(text) : null };
  }
}

async function expectLoginPage(page, issuer, what) {
  await page.waitForURL((u) => u.href.startsWith(issuer), { timeout: NAV_TIMEOUT_MS }).catch(() => {});
  assert(page.url().startsWith(issuer), `${what}: expected the OP (${issuer}), got ${page.url()}`);
  await page.locator('input[name="login"]').waitFor({ timeout: NAV_TIMEOUT_MS });
}

async function logIn(page, base, issuer) {
  await page.goto(`${base}/`);
  await expectLoginPage(page, issuer, 'anonymous navigation');
  await submitLogin(page, base);
}

/** Fills the OP's login form as demo/demo and waits until the browser is back on `base`. */
async function submitLogin(page, base) {
  await page.fill('input[name="login"]', 'demo');
  await page.fill('input[name="password"]', 'demo');
  await Promise.all([
    page.waitForNavigation({ timeout: NAV_TIMEOUT_MS, waitUntil: 'load' }).catch(() => {}),
    page.click('button[type="submit"]'),
  ]);
  await page.waitForURL((u) => u.href.startsWith(base), { timeout: NAV_TIMEOUT_MS }).catch(() => {});
}

async function whoamiUser(page) {
  const w = parseWhoami(await pageText(page));
  assert(w, `expected whoami's page, got ${page.url()}`);
  return headerValues(w, 'X-Forwarded-User').join('|');
}

/** Removes the OP's cookies from the context (its IdP session out of the browser's reach). */
async function forgetIdpSession(ctx, issuer) {
  const host = new URL(issuer).hostname;
  const keep = (await ctx.cookies()).filter((c) => c.domain.replace(/^\./, '') !== host);
  await ctx.clearCookies();
  await ctx.addCookies(keep);
}

/**
 * Runs the admin API checks with `check` (harness.mjs), in `browser`, on a stack of its own whose
 * logs go to `artifactsDir`.
 */
export async function adminChecks({ check, browser, artifactsDir, log = () => {} }) {
  const stack = new AdminStack({ artifactsDir, log });
  try {
    const ok = await check('admin: OP, whoami, sidecar with admin.listen and Traefik ready', async () => {
      await stack.start();
      return `admin API on 127.0.0.1:${stack.adminPort}`;
    });
    if (!ok) return;
    const { issuer } = stack.urls;

    await check('admin: the API needs its token and lives only on its own listener', async () => {
      const none = await stack.admin('POST', '/admin/revoke', { body: { sub: 'demo' }, token: null });
      assert(none.status === 401 && none.type.startsWith('application/problem+json'), `no token: ${none.status} ${none.type}`);
      const wrong = await stack.admin('GET', '/admin/sessions?sub=demo', { token: 'x'.repeat(48) });
      assert(wrong.status === 401, `wrong token: ${wrong.status}`);
      // The auth listener, and the fa door through Traefik (Host: fa.localhost).
      const auth = { Authorization: `Bearer ${stack.adminToken}`, Accept: 'application/json' };
      for (const [port, host] of [[stack.ports.sidecar, '127.0.0.1'], [stack.ports.traefik, 'fa.localhost']]) {
        const res = await request({ port, path: '/admin/sessions?sub=demo', headers: { ...auth, Host: host } });
        assert(res.status !== 200, `${host}:${port} answered 200`);
      }
      const listing = await stack.admin('GET', '/admin/sessions?sub=demo');
      assert(listing.status === 200, `listing: ${listing.status}`);
      assert(listing.body.scopes.every((s) => s.listable === false), `cookie mode lists nothing: ${JSON.stringify(listing.body)}`);
    });

    for (const door of DOORS) {
      const base = stack.urls[door];
      const L = `admin ${door} (${DOOR_LABEL[door]})`;
      const ctx = await browser.newContext();
      ctx.setDefaultNavigationTimeout(NAV_TIMEOUT_MS);
      ctx.setDefaultTimeout(NAV_TIMEOUT_MS);
      const page = await ctx.newPage();
      const cLogin = `${L}: login demo/demo gets whoami`;
      await check(cLogin, async () => {
        await logIn(page, base, issuer);
        const user = await whoamiUser(page);
        assert(user === 'demo', `X-Forwarded-User: ${user}`);
      }, { page });
      const cControl = `${L}: without the IdP's cookies the sidecar's session alone still serves whoami`;
      await check(cControl, async () => {
        await forgetIdpSession(ctx, issuer);
        await page.goto(`${base}/before-revoke`);
        assert(await whoamiUser(page) === 'demo', 'not whoami as demo');
      }, { deps: [cLogin], page });
      const cRevoke = `${L}: POST /admin/revoke {"sub":"demo"} answers 200 {"revoked": null}`;
      await check(cRevoke, async () => {
        const r = await stack.admin('POST', '/admin/revoke', { body: { sub: 'demo' } });
        assert(r.status === 200, `status ${r.status}: ${JSON.stringify(r.body)}`);
        assert(r.body.revoked === null, `revoked: ${JSON.stringify(r.body)}`);
        return JSON.stringify(r.body);
      }, { deps: [cControl] });
      await check(`${L}: after the revocation fetch() gets 401 and the next navigation goes to the login page`, async () => {
        const api = await page.evaluate(async () => (await fetch('/api', { headers: { Accept: 'application/json' }, redirect: 'manual' })).status);
        assert(api === 401, `fetch: ${api}`);
        await page.goto(`${base}/after-revoke`);
        await expectLoginPage(page, issuer, 'after the revocation');
        // A login in a later second than the revocation is a new session (the cutoff is the
        // revocation's second).
        await sleep(1100);
        await submitLogin(page, base);
        assert(await whoamiUser(page) === 'demo', 'a new login after the revocation does not work');
      }, { deps: [cRevoke], page });
      await ctx.close();
    }
  } finally {
    await stack.stop().catch(() => {});
  }
}

// Run on its own (scripts/test-e2e.sh).
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const started = Date.now();
  const artifactsDir = path.resolve(process.env.E2E_ARTIFACTS || path.join(ROOT, 'tests', 'e2e', 'artifacts'), 'admin');
  fs.rmSync(artifactsDir, { recursive: true, force: true });
  fs.mkdirSync(artifactsDir, { recursive: true });
  const { check, results, line } = createReporter({ artifactsDir, started });
  let crashed = false;
  let browser;
  const watchdog = setTimeout(() => { line('FAIL', 'suite', 'admin suite exceeded 150 s'); process.exit(2); }, 150000);
  try {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: 30000,
    });
    await adminChecks({ check, browser, artifactsDir, log: (m) => console.log(`     ${m}`) });
  } catch (err) {
    crashed = true;
    line('FAIL', 'suite', err.stack || String(err));
  } finally {
    clearTimeout(watchdog);
    await browser?.close().catch(() => {});
  }
  process.exit(summarize({ results, started, artifactsDir, crashed }));
}
