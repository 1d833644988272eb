// End-to-end suite: the real OpenID Provider, the sidecar, a real Traefik v3 with both doors
// (built-in forwardAuth and our Yaegi plugin) and whoami, driven by headless Chromium.
//
//   node tests/e2e/run.mjs          (scripts/test-e2e.sh installs what it needs, then runs this)
//
// Environment: SIDECAR_BIN, TRAEFIK_BIN, WHOAMI_BIN (see stack.mjs), CHROMIUM (/usr/bin/chromium),
// E2E_ARTIFACTS (tests/e2e/artifacts), E2E_TIMEOUT_S (whole-suite limit, 170).
//
// Per door (fa = Traefik's forwardAuth, plugin = our Yaegi shim): anonymous navigation goes to the
// OP login page; demo/demo logs in and lands on the original URL; whoami gets the sidecar's
// identity headers, no client-spoofed ones (X-Forwarded-User, X_Forwarded_User...), no
// TraefikOidcSidecar* cookie but the application's own cookie; reload stays logged in; a session
// due for renewal is refreshed and the new cookie reaches the browser; a websocket echoes;
// /logout goes through the OP's end_session confirmation back to `/`, after which login is asked
// again; alice gets comma-joined groups; fetch() without session gets 401 problem+json and a
// websocket is refused; with the sidecar stopped both doors answer 5xx, never whoami. Also: the
// examples in examples/traefik/ load in the same Traefik.
//
// Prints one PASS/FAIL/SKIP line per check and "N passed, N failed, N skipped" at the end; exits
// non-zero on any failure. Logs of every process, the generated configs and a screenshot and
// the HTML of the page of each failed browser check are kept in the artifacts directory.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { chromium } from 'playwright-core';
import { ROOT, Stack, sleep, validateExampleConfig } from './stack.mjs';
import { createReporter, assert, parseWhoami, headerValues, cookieNames, looksLikeWhoami, pageText, gotoStatus, summarize } from './harness.mjs';
import { stepUpOpChecks } from './stepup-op.mjs';

const started = Date.now();
const ARTIFACTS = path.resolve(process.env.E2E_ARTIFACTS || path.join(ROOT, 'tests', 'e2e', 'artifacts'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SUITE_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_S || 170) * 1000;
const NAV_TIMEOUT_MS = 15000;
const COOKIE_PREFIX = 'TraefikOidcSidecar';
const TOKEN_TTL_S = 12; // the OP's token lifetime (sessions end with it unless refreshed)
const RENEWAL_THRESHOLD = 0.5; // the sidecar refreshes a session older than 6 s (0.5..1.0 allowed)
const DOORS = ['fa', 'plugin'];
const DOOR_LABEL = { fa: 'forwardAuth', plugin: 'plugin' };
// A client trying to pass itself off as someone: every spelling must be gone or overwritten by
// the time the request reaches whoami.
const SPOOF_HEADERS = {
  'X-Forwarded-User': 'mallory',
  X_Forwarded_User: 'mallory',
  'X-Forwarded-Email': 'mallory@evil.test',
  'X-Forwarded-Groups': 'admins',
};

fs.rmSync(ARTIFACTS, { recursive: true, force: true });
fs.mkdirSync(ARTIFACTS, { recursive: true });

// ---------------------------------------------------------------------------------------------
// Reporting and whoami parsing: harness.mjs (shared with the Keycloak suite).

const { check, results, line } = createReporter({ artifactsDir: ARTIFACTS, started });

// ---------------------------------------------------------------------------------------------
// Browser steps.

function isLoginPage(page, issuer) {
  return page.url().startsWith(issuer) && page.locator('input[name="login"]').count().then((n) => n > 0);
}

async function expectLoginPage(page, issuer, what) {
  await page.waitForURL((u) => u.href.startsWith(issuer), { timeout: NAV_TIMEOUT_MS }).catch(() => {});
  assert(page.url().startsWith(issuer), `${what}: expected the OP (${issuer}), got ${page.url()}`);
  await page.locator('input[name="login"]').waitFor({ timeout: NAV_TIMEOUT_MS });
  assert(await isLoginPage(page, issuer), `${what}: the OP page has no login form`);
}

async function login(page, user, password) {
  await page.fill('input[name="login"]', user);
  await page.fill('input[name="password"]', password);
  await Promise.all([
    page.waitForNavigation({ timeout: NAV_TIMEOUT_MS, waitUntil: 'load' }).catch(() => {}),
    page.click('button[type="submit"]'),
  ]);
}

/** Opens a same-origin blank page on `base` without touching the network (Playwright serves it),
 * so fetch()/WebSocket calls from it are same-origin browser requests with no session. */
async function blankPageOn(ctx, base) {
  const page = await ctx.newPage();
  const url = `${base}/__e2e_blank`;
  await page.route(url, (route) => route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>e2e</title><p>blank' }));
  await page.goto(url, { timeout: NAV_TIMEOUT_MS });
  return page;
}

/** Opens a websocket from the page, sends one message and returns what came back. */
function wsRoundTrip(page, url, message) {
  return page.evaluate(([u, m]) => new Promise((resolve) => {
    const ws = new WebSocket(u);
    const done = (r) => { try { ws.close(); } catch { /* closed */ } resolve(r); };
    const t = setTimeout(() => done({ ok: false, why: 'no echo within 8 s' }), 8000);
    ws.onopen = () => ws.send(m);
    ws.onmessage = (e) => { clearTimeout(t); done({ ok: true, data: String(e.data) }); };
    ws.onerror = () => { clearTimeout(t); done({ ok: false, why: 'error event (handshake refused or connection failed)' }); };
    ws.onclose = (e) => { clearTimeout(t); done({ ok: false, why: `closed (code ${e.code})` }); };
  }), [url, message]);
}

// ---------------------------------------------------------------------------------------------
// The suite.

async function main() {
  // Short tokens and an early renewal point, so a session refresh happens during the suite.
  const stack = new Stack({
    artifactsDir: ARTIFACTS,
    log: (m) => console.log(`     ${m}`),
    tokenTtl: TOKEN_TTL_S,
    renewalThreshold: RENEWAL_THRESHOLD,
  });
  let browser;
  const cleanup = async () => {
    await browser?.close().catch(() => {});
    await stack.stop().catch(() => {});
  };
  const watchdog = setTimeout(async () => {
    line('FAIL', 'suite', `whole suite exceeded ${SUITE_TIMEOUT_MS / 1000} s`);
    await cleanup();
    process.exit(2);
  }, SUITE_TIMEOUT_MS);
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, async () => { await cleanup(); process.exit(130); });
  }

  try {
    const okStack = await check('stack: OP, whoami, sidecar and Traefik (forwardAuth + local plugin) ready', async () => {
      await stack.start();
      return `Traefik ${stack.binaries.traefik}, sidecar ${stack.binaries.sidecar}, whoami ${stack.binaries.whoami}`;
    }, { timeoutMs: 120000 });
    if (!okStack) return;
    const { issuer } = stack.urls;

    const okBrowser = await check('browser: headless Chromium starts', async () => {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        // Playwright gives every launch a fresh temporary --user-data-dir of its own.
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
          '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        timeout: 30000,
      });
      return `Chromium ${browser.version()}`;
    });
    if (!okBrowser) return;

    // ----- The published examples load in this Traefik, with the plugin from this tree. -----
    for (const staticName of ['traefik-local-plugin.yml', 'traefik.yml']) {
      await check(`examples/traefik/${staticName} + dynamic.yml load in Traefik (both doors routed)`, () => validateExampleConfig({
        traefikBin: stack.binaries.traefik, artifactsDir: ARTIFACTS, staticName,
      }));
    }

    // ----- Per door: login, headers, cookies, reload, websocket, logout, login again. -----
    for (const door of DOORS) {
      const base = stack.urls[door];
      const L = `${door} (${DOOR_LABEL[door]})`;
      const protectedUrl = `${base}/private/page?e2e=1`;
      const ctx = await browser.newContext({ extraHTTPHeaders: SPOOF_HEADERS });
      ctx.setDefaultNavigationTimeout(NAV_TIMEOUT_MS);
      ctx.setDefaultTimeout(NAV_TIMEOUT_MS);
      // A cookie of the application itself: it must still reach the upstream.
      await ctx.addCookies([{ name: 'app_pref', value: 'e2e-keep-me', url: base }]);
      const page = await ctx.newPage();
      let who;
      let loggedInAt = 0;
      const sessionValue = async () => (await ctx.cookies(base))
        .filter((c) => c.name.startsWith(`${COOKIE_PREFIX}.session`))
        .sort((a, b) => a.name.localeCompare(b.name)).map((c) => c.value).join('|');

      const cAnon = `${L}: anonymous navigation to ${new URL(protectedUrl).pathname} redirects to the OP login page`;
      await check(cAnon, async () => {
        await page.goto(protectedUrl);
        await expectLoginPage(page, issuer, 'anonymous navigation');
        return page.url().split('?')[0];
      }, { page });

      const cLogin = `${L}: login demo/demo at the OP returns to the original URL, served by whoami`;
      await check(cLogin, async () => {
        await login(page, 'demo', 'demo');
        await page.waitForURL((u) => u.href === protectedUrl, { timeout: NAV_TIMEOUT_MS }).catch(() => {});
        loggedInAt = Date.now();
        const text = await pageText(page);
        who = parseWhoami(text);
        assert(who, `expected whoami's page after login, got ${page.url()}: ${text.slice(0, 200)}`);
        fs.writeFileSync(path.join(ARTIFACTS, `whoami-${door}-after-login.txt`), text);
        assert(page.url() === protectedUrl, `landed on ${page.url()}, expected the original URL ${protectedUrl}`);
        return who.requestLine;
      }, { deps: [cAnon], page });

      await check(`${L}: whoami gets X-Forwarded-User: demo, X-Forwarded-Email, X-Forwarded-Groups from the sidecar`, async () => {
        const exact = (name) => who.headers.filter(([k]) => k.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
        const users = exact('X-Forwarded-User');
        assert(users.length === 1 && users[0] === 'demo', `X-Forwarded-User values at whoami: ${JSON.stringify(users)}`);
        const email = exact('X-Forwarded-Email');
        assert(email.length === 1 && email[0] === 'demo@example.test', `X-Forwarded-Email values: ${JSON.stringify(email)}`);
        const groups = exact('X-Forwarded-Groups');
        assert(groups.length === 1 && groups[0] === 'users', `X-Forwarded-Groups values: ${JSON.stringify(groups)}`);
        return `X-Forwarded-User: ${users[0]}; X-Forwarded-Email: ${email[0]}; X-Forwarded-Groups: ${groups[0]}`;
      }, { deps: [cLogin], page });

      await check(`${L}: client-sent identity headers (X-Forwarded-User/Email/Groups, X_Forwarded_User) never reach whoami`, async () => {
        const spoofed = who.headers.filter(([, v]) => /mallory/i.test(v) || v === 'admins');
        assert(spoofed.length === 0, `whoami received: ${spoofed.map(([k, v]) => `${k}: ${v}`).join(', ')}`);
        const under = who.headers.filter(([k]) => k.includes('_'));
        assert(under.length === 0, `underscore spellings reached whoami: ${under.map(([k, v]) => `${k}: ${v}`).join(', ')}`);
      }, { deps: [cLogin], page });

      await check(`${L}: no ${COOKIE_PREFIX}* cookie reaches whoami, the application's own cookie does`, async () => {
        const held = (await ctx.cookies(base)).map((c) => c.name);
        assert(held.some((n) => n.startsWith(`${COOKIE_PREFIX}.session`)), `the browser holds no ${COOKIE_PREFIX}.session.* cookie (has: ${held.join(', ')})`);
        const names = cookieNames(who);
        const leaked = names.filter((n) => n.startsWith(COOKIE_PREFIX));
        assert(leaked.length === 0, `whoami received ${leaked.join(', ')}`);
        assert(names.includes('app_pref'), `the app's cookie app_pref did not reach whoami (Cookie names there: ${names.join(', ') || 'none'})`);
        return `browser holds ${held.filter((n) => n.startsWith(COOKIE_PREFIX)).join(', ')}; whoami got Cookie: ${names.join(', ')}`;
      }, { deps: [cLogin], page });

      await check(`${L}: session cookie is HttpOnly and SameSite=Lax`, async () => {
        const sess = (await ctx.cookies(base)).filter((c) => c.name.startsWith(`${COOKIE_PREFIX}.session`));
        assert(sess.length > 0, 'no session cookie');
        const bad = sess.filter((c) => !c.httpOnly || c.sameSite !== 'Lax');
        assert(bad.length === 0, bad.map((c) => `${c.name}: httpOnly=${c.httpOnly} sameSite=${c.sameSite}`).join(', '));
      }, { deps: [cLogin], page });

      await check(`${L}: reload stays logged in (no trip to the OP)`, async () => {
        let toOp = 0;
        const onReq = (r) => { if (r.isNavigationRequest() && r.url().startsWith(issuer)) toOp++; };
        page.on('request', onReq);
        await page.reload();
        page.off('request', onReq);
        const w = parseWhoami(await pageText(page));
        assert(w, `after reload: not whoami's page but ${page.url()}`);
        assert(toOp === 0, `the reload went to the OP ${toOp} time(s)`);
        const users = w.headers.filter(([k]) => k.toLowerCase() === 'x-forwarded-user').map(([, v]) => v);
        assert(users.join('|') === 'demo', `X-Forwarded-User after reload: ${JSON.stringify(users)}`);
      }, { deps: [cLogin], page });

      await check(`${L}: a session due for renewal is refreshed and the new cookie reaches the browser`, async () => {
        const before = await sessionValue();
        assert(before, 'no session cookie before the refresh');
        const due = loggedInAt + TOKEN_TTL_S * RENEWAL_THRESHOLD * 1000 + 1500;
        if (Date.now() < due) await sleep(due - Date.now());
        await page.reload();
        const w = parseWhoami(await pageText(page));
        assert(w, `after the refresh: not whoami's page but ${page.url()}`);
        const after = await sessionValue();
        assert(after && after !== before, 'the session cookie did not change: the refreshed session never reached the browser');
        // The refreshed cookie is a working session on its own.
        await page.reload();
        const w2 = parseWhoami(await pageText(page));
        assert(w2, `with the refreshed cookie: not whoami's page but ${page.url()}`);
        const users = w2.headers.filter(([k]) => k.toLowerCase() === 'x-forwarded-user').map(([, v]) => v);
        assert(users.join('|') === 'demo', `X-Forwarded-User with the refreshed cookie: ${JSON.stringify(users)}`);
      }, { deps: [cLogin], page });

      await check(`${L}: websocket ws://${door}.localhost/echo echoes a message after login`, async () => {
        const msg = `hello-${crypto.randomBytes(6).toString('hex')}`;
        const r = await wsRoundTrip(page, `${base.replace('http:', 'ws:')}/echo`, msg);
        assert(r.ok, `websocket failed: ${r.why}`);
        assert(r.data === msg, `echo was ${JSON.stringify(r.data)}, sent ${JSON.stringify(msg)}`);
        return `echoed ${msg}`;
      }, { deps: [cLogin], page });

      const cLogout = `${L}: /logout -> OP end_session confirm -> back at ${door}.localhost/`;
      await check(cLogout, async () => {
        // The ID token rides in the logout-hint cookie, which the browser sends to /logout only.
        const hint = (await ctx.cookies(`${base}/logout`)).filter((c) => c.name.startsWith(`${COOKIE_PREFIX}.hint.`));
        assert(hint.length > 0 && hint.every((c) => c.path === '/logout'), `logout-hint cookies: ${JSON.stringify(hint.map((c) => [c.name, c.path]))}`);
        const toOp = [];
        const onOut = (r) => { if (r.isNavigationRequest() && r.url().startsWith(issuer)) toOp.push(r.url()); };
        page.on('request', onOut);
        await page.goto(`${base}/logout`);
        await page.waitForURL((u) => u.href.startsWith(issuer), { timeout: NAV_TIMEOUT_MS }).catch(() => {});
        page.off('request', onOut);
        assert(page.url().startsWith(issuer), `/logout did not go to the OP: ${page.url()}`);
        const endSession = toOp.find((u) => u.includes('/session/end'));
        assert(endSession && new URL(endSession).searchParams.get('id_token_hint')?.startsWith('eyJ'), `end_session without id_token_hint: ${endSession}`);
        const yes = page.getByRole('button', { name: /yes, sign me out/i });
        await yes.waitFor({ timeout: NAV_TIMEOUT_MS });
        const navs = [];
        const onNav = (f) => { if (f === page.mainFrame()) navs.push(f.url()); };
        const onReq = (r) => { if (r.isNavigationRequest() && r.frame() === page.mainFrame()) navs.push(r.url()); };
        page.on('request', onReq);
        page.on('framenavigated', onNav);
        await yes.click();
        // Back at the door's `/`, which now sends the anonymous browser to the OP's login page.
        await page.waitForURL((u) => u.href.startsWith(issuer) && !u.pathname.includes('session/end'), { timeout: NAV_TIMEOUT_MS }).catch(() => {});
        await page.waitForLoadState('load').catch(() => {});
        page.off('request', onReq);
        page.off('framenavigated', onNav);
        assert(navs.includes(`${base}/`), `the post-logout redirect did not reach ${base}/ (navigations: ${[...new Set(navs)].join(' -> ')})`);
        // Session cookies are gone. (A new flow cookie is expected: `/` started a new login.)
        const held = (await ctx.cookies([base, `${base}/logout`])).map((c) => c.name)
          .filter((n) => n.startsWith(`${COOKIE_PREFIX}.session`) || n.startsWith(`${COOKIE_PREFIX}.hint`));
        assert(held.length === 0, `the browser still holds ${held.join(', ')} after logout`);
        return `via ${[...new Set(navs)].map((u) => u.split('?')[0]).join(' -> ')}`;
      }, { deps: [cLogin], page });

      await check(`${L}: after logout the protected URL asks to log in again`, async () => {
        await page.goto(protectedUrl);
        await expectLoginPage(page, issuer, 'after logout');
      }, { deps: [cLogout], page });

      await ctx.close();
    }

    // ----- A second user per door, kept logged in for the "sidecar down" checks. -----
    const aliceCtx = {};
    for (const door of DOORS) {
      const base = stack.urls[door];
      const L = `${door} (${DOOR_LABEL[door]})`;
      const ctx = await browser.newContext();
      ctx.setDefaultNavigationTimeout(NAV_TIMEOUT_MS);
      ctx.setDefaultTimeout(NAV_TIMEOUT_MS);
      const page = await ctx.newPage();
      const ok = await check(`${L}: login alice/alice gives X-Forwarded-Groups: admins,users`, async () => {
        await page.goto(`${base}/`);
        await expectLoginPage(page, issuer, 'anonymous navigation');
        await login(page, 'alice', 'alice');
        await page.waitForURL((u) => u.href.startsWith(base), { timeout: NAV_TIMEOUT_MS }).catch(() => {});
        const w = parseWhoami(await pageText(page));
        assert(w, `expected whoami's page, got ${page.url()}`);
        assert(headerValues(w, 'X-Forwarded-User').join('|') === 'alice', `X-Forwarded-User: ${headerValues(w, 'X-Forwarded-User')}`);
        const groups = headerValues(w, 'X-Forwarded-Groups').join('|');
        assert(groups === 'admins,users', `X-Forwarded-Groups: ${JSON.stringify(groups)}`);
      }, { page });
      if (ok) aliceCtx[door] = { ctx, page };
    }

    // ----- No session: fetch gets 401 problem+json, websocket is refused. -----
    for (const door of DOORS) {
      const base = stack.urls[door];
      const L = `${door} (${DOOR_LABEL[door]})`;
      const ctx = await browser.newContext();
      let page;
      await check(`${L}: fetch() without session (Accept: application/json) gets 401 application/problem+json`, async () => {
        page = await blankPageOn(ctx, base);
        const r = await page.evaluate(async () => {
          const res = await fetch('/api/items?x=1', { headers: { Accept: 'application/json' }, redirect: 'manual' });
          return { status: res.status, type: res.type, contentType: res.headers.get('content-type'), body: await res.text() };
        });
        assert(r.status === 401, `status ${r.status} (${r.type}), content-type ${r.contentType}: ${r.body.slice(0, 200)}`);
        assert(/^application\/problem\+json/.test(r.contentType || ''), `content-type ${r.contentType}`);
        assert(!looksLikeWhoami(r.body), 'the body is whoami\'s answer');
        return `401 ${r.contentType}`;
      }, { page: () => page });
      await check(`${L}: websocket without session is refused`, async () => {
        page = page || await blankPageOn(ctx, base);
        const r = await wsRoundTrip(page, `${base.replace('http:', 'ws:')}/echo`, 'should-not-echo');
        assert(!r.ok, `the websocket echoed ${JSON.stringify(r.data)} without a session`);
        return r.why;
      }, { page: () => page });
      await ctx.close();
    }

    await stepUpOpChecks({ browser, check, artifacts: ARTIFACTS });

    // ----- The sidecar goes away: both doors fail closed. -----
    await check('sidecar stopped', async () => {
      await stack.stopSidecar();
    });
    for (const door of DOORS) {
      const base = stack.urls[door];
      const L = `${door} (${DOOR_LABEL[door]})`;
      const a = aliceCtx[door];
      await check(`${L}: sidecar down -> logged-in browser gets 5xx, never whoami`, async () => {
        assert(a, 'no logged-in context (alice login failed)');
        const { status, body } = await gotoStatus(a.page, `${base}/after-sidecar-down`);
        assert(!looksLikeWhoami(body), `whoami answered (status ${status})`);
        assert(status >= 500 && status <= 599, `status ${status}: ${body.slice(0, 200)}`);
        return `status ${status}`;
      }, { deps: ['sidecar stopped'], page: () => a?.page });
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      await check(`${L}: sidecar down -> anonymous browser gets 5xx, never whoami`, async () => {
        const { status, body } = await gotoStatus(page, `${base}/`);
        assert(!looksLikeWhoami(body), `whoami answered (status ${status})`);
        assert(status >= 500 && status <= 599, `status ${status}: ${body.slice(0, 200)}`);
        return `status ${status}`;
      }, { deps: ['sidecar stopped'], page });
      await ctx.close();
    }
    for (const a of Object.values(aliceCtx)) await a.ctx.close().catch(() => {});
  } finally {
    clearTimeout(watchdog);
    await cleanup();
  }
}

let crashed = false;
try {
  await main();
} catch (err) {
  crashed = true;
  line('FAIL', 'suite', err.stack || String(err));
}
process.exit(summarize({ results, started, artifactsDir: ARTIFACTS, crashed }));
