// Step-up (issue 21 §3) against the suite's Keycloak 26, through both doors: keycloak.mjs calls
// stepUpChecks() once its own checks are done, with its Keycloak, Stack, Chromium and reporter.
//
// What it sets up, all of its own (the realm's existing clients and users are untouched, so
// their browser flow stays password only):
// - in the realm, through the admin API: a browser flow with levels of authentication
//   (Keycloak's "Condition - Level of Authentication": level 1 = username + password, level 2 =
//   an OTP form), a client `sidecar-stepup` bound to it with `acr.loa.map` {silver: 1, gold: 2}
//   and default acr `silver`, and a user `stepup-erin` (partial import) with a password and a
//   TOTP credential whose secret is made here, so this file computes her codes (RFC 6238);
// - a sidecar with one session scope of three middlewares: `plain` (no StepUp), `strict`
//   (StepUp.AcrValues [gold]) and `platinum` (StepUp.AcrValues [platinum], a value the realm
//   does not map: Keycloak cannot give it);
// - a Traefik of its own with both doors (forwardAuth and the plugin), routing /strict and
//   /platinum to those middlewares and everything else (the callback included) to `plain`.
//
// The checks, per door: erin logs in at / (password only, acr silver); /strict sends her back to
// Keycloak with acr_values=gold, Keycloak asks only for the OTP, and she comes back upgraded:
// /strict and / both serve her; a fetch() to /strict from a session that is not stepped up gets
// the RFC 9470 401 (no redirect); /platinum goes to Keycloak once, comes back without the acr
// and ends in 403, never a second trip.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PLUGIN_NAME, freePort, layoutLocalPlugin, request, resolveTraefik, sleep, traefikStaticConfig, waitFor } from './stack.mjs';
import { assert, parseWhoami } from './harness.mjs';
import { REALM } from './keycloak-server.mjs';

const CLIENT = 'sidecar-stepup';
const USER = 'stepup-erin';
const FLOW = 'e2e step-up browser';
const NAV_TIMEOUT_MS = 30000;
const DOORS = ['fa', 'plugin'];

/** The RFC 6238 TOTP code (HMAC-SHA1, 6 digits, 30 s) of `secret` at `ms`, as Keycloak computes
 * it: the key is the stored secret's UTF-8 bytes. */
export function totp(secret, ms = Date.now()) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(ms / 1000 / 30)));
  const h = crypto.createHmac('sha1', Buffer.from(secret, 'utf8')).update(counter).digest();
  const o = h[h.length - 1] & 0x0f;
  const n = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(n % 1_000_000).padStart(6, '0');
}

/** Builds the step-up browser flow in the realm; returns its id. */
async function createFlow(kc) {
  const A = (m, p, b) => kc.admin(m, p, b);
  const enc = encodeURIComponent;
  const exec = (flow, provider) => A('POST', `/authentication/flows/${enc(flow)}/executions/execution`, { provider });
  const sub = (flow, alias) => A('POST', `/authentication/flows/${enc(flow)}/executions/flow`, { alias, type: 'basic-flow', provider: 'registration-page-form', description: alias });
  await A('POST', '/authentication/flows', { alias: FLOW, description: 'e2e: levels of authentication', providerId: 'basic-flow', topLevel: true, builtIn: false });
  const forms = `${FLOW} forms`;
  const l1 = `${FLOW} level 1`;
  const l2 = `${FLOW} level 2`;
  await exec(FLOW, 'auth-cookie');
  await sub(FLOW, forms);
  await sub(forms, l1);
  await exec(l1, 'conditional-level-of-authentication');
  await exec(l1, 'auth-username-password-form');
  await sub(forms, l2);
  await exec(l2, 'conditional-level-of-authentication');
  await exec(l2, 'auth-otp-form');
  // New executions start DISABLED: set each requirement, and configure the two conditions.
  const { json: list } = await A('GET', `/authentication/flows/${enc(FLOW)}/executions`);
  const want = (e) => {
    if (e.providerId === 'auth-cookie') return 'ALTERNATIVE';
    if (e.authenticationFlow && e.displayName === forms) return 'ALTERNATIVE';
    if (e.authenticationFlow) return 'CONDITIONAL';
    return 'REQUIRED';
  };
  let level = 0;
  for (const e of list) {
    await A('PUT', `/authentication/flows/${enc(FLOW)}/executions`, { ...e, requirement: want(e) });
    if (e.providerId === 'conditional-level-of-authentication') {
      level++;
      await A('POST', `/authentication/executions/${e.id}/config`, {
        alias: `e2e-loa-${level}`,
        config: { 'loa-condition-level': String(level), 'loa-max-age': '36000' },
      });
    }
  }
  assert(level === 2, `expected two level conditions in the flow, found ${level}`);
  const { json: flows } = await A('GET', '/authentication/flows');
  const flow = flows.find((f) => f.alias === FLOW);
  assert(flow, 'the step-up flow is not listed');
  return { id: flow.id, executions: list.length };
}

/** The client (bound to the flow) and the user with a password and a TOTP credential. */
async function createClientAndUser(kc, { flowId, clientSecret, password, otpSecret, origins }) {
  await kc.admin('POST', '/clients', {
    clientId: CLIENT,
    name: CLIENT,
    enabled: true,
    protocol: 'openid-connect',
    publicClient: false,
    clientAuthenticatorType: 'client-secret',
    secret: clientSecret,
    standardFlowEnabled: true,
    directAccessGrantsEnabled: false,
    redirectUris: origins.map((o) => `${o}/*`),
    webOrigins: ['+'],
    attributes: {
      'post.logout.redirect.uris': '+',
      'pkce.code.challenge.method': 'S256',
      // Names the acr claim carries for each level (OIDC acr values), and the level a login
      // without acr_values gets.
      'acr.loa.map': JSON.stringify({ silver: 1, gold: 2 }),
      'default.acr.values': 'silver',
    },
    authenticationFlowBindingOverrides: { browser: flowId },
  });
  await kc.admin('POST', '/partialImport', {
    ifResourceExists: 'FAIL',
    users: [{
      username: USER,
      enabled: true,
      email: `${USER}@example.test`,
      emailVerified: true,
      firstName: 'Erin',
      lastName: 'Stepup',
      requiredActions: [],
      credentials: [
        { type: 'password', value: password, temporary: false },
        {
          type: 'otp',
          userLabel: 'e2e',
          secretData: JSON.stringify({ value: otpSecret }),
          credentialData: JSON.stringify({ subType: 'totp', digits: 6, counter: 0, period: 30, algorithm: 'HmacSHA1' }),
        },
      ],
    }],
  });
}

/** A sidecar file with one session scope: every middleware of `middlewares` ({name: extra YAML
 * lines}) shares the Secret, client and cookie prefix. Also used by stepup-op.mjs. */
export function stepUpSidecarYaml({ port, metricsPort, issuer, clientId, clientSecret, secret, prefix, middlewares }) {
  const block = (name, extra) => `  ${name}:
    Provider:
      Url: ${JSON.stringify(issuer)}
      ClientId: ${JSON.stringify(clientId)}
      ClientSecret: ${JSON.stringify(clientSecret)}
    Secret: ${JSON.stringify(secret)}
    CookieNamePrefix: ${prefix}
    Scopes: [openid, profile, email]
    SessionCookie:
      Secure: false
${extra}`;
  return `# Generated by tests/e2e/keycloak-stepup.mjs
listen: 127.0.0.1:${port}
metricsListen: 127.0.0.1:${metricsPort}
logLevel: debug
middlewares:
${Object.entries(middlewares).map(([n, extra]) => block(n, extra)).join('')}`;
}

/** Traefik's dynamic configuration for step-up sites: per door (`fa` in its name: forwardAuth,
 * else the plugin), host `hostOf(door)`; `/` goes to middleware `plain`, `/<name>` to each
 * other middleware of `names`. The `/` router is named after the door (Stack waits for
 * `<door>@file`). Also used by stepup-op.mjs. */
export function stepUpDynamicYaml({ doors, hostOf, names, sidecarUrl, whoamiPort }) {
  const routers = [];
  const middlewares = [];
  for (const door of doors) {
    const host = hostOf(door);
    for (const name of names) {
      const plain = name === 'plain';
      const rule = plain ? `Host(\`${host}\`)` : `Host(\`${host}\`) && PathPrefix(\`/${name}\`)`;
      const id = plain ? door : `${door}-${name}`;
      routers.push(`    ${id}:\n      rule: ${JSON.stringify(rule)}\n      priority: ${plain ? 1 : 100}\n      entryPoints: [web]\n      middlewares: [${id}]\n      service: whoami`);
      middlewares.push(door.includes('fa')
        ? `    ${id}:\n      forwardAuth:\n        address: "${sidecarUrl}/auth/${name}"\n        trustForwardHeader: true\n        authResponseHeaders: [X-Forwarded-User]`
        : `    ${id}:\n      plugin:\n        ${PLUGIN_NAME}:\n          sidecarUrl: "${sidecarUrl}"\n          middleware: ${name}\n          timeout: 5s`);
    }
  }
  // Traefik's API (Stack reads its routers to know the configuration loaded).
  routers.push('    api:\n      rule: "Host(`traefik.localhost`)"\n      entryPoints: [web]\n      service: api@internal');
  return `# Generated by tests/e2e/keycloak-stepup.mjs
http:
  routers:
${routers.join('\n')}
  middlewares:
${middlewares.join('\n')}
  services:
    whoami:
      loadBalancer:
        servers:
          - url: "http://127.0.0.1:${whoamiPort}"
`;
}

/**
 * Navigates to `url` and follows the browser until a document of `url`'s origin answers with a
 * final status; on every other page `step(page)` may act (fill an IdP's form) and returns whether
 * it did. Returns the status, body and every navigation. Also used by stepup-op.mjs.
 */
export async function follow(page, url, step) {
  const origin = new URL(url).origin;
  const navs = [];
  let final = null;
  const onReq = (r) => { if (r.isNavigationRequest() && r.frame() === page.mainFrame()) navs.push(r.url()); };
  const onResp = (r) => {
    const req = r.request();
    if (!req.isNavigationRequest() || req.frame() !== page.mainFrame()) return;
    if (r.url().startsWith(origin) && (r.status() < 300 || r.status() >= 400)) final = r;
  };
  page.on('request', onReq);
  page.on('response', onResp);
  try {
    await page.goto(url).catch(() => {});
    const deadline = Date.now() + NAV_TIMEOUT_MS;
    while (!final && Date.now() < deadline) {
      if (!await step(page)) await sleep(150);
    }
    assert(final, `no answer from ${origin} within ${NAV_TIMEOUT_MS} ms; at ${page.url()}; via ${navs.join(' -> ')}`);
    return { status: final.status(), url: final.url(), body: await final.text().catch(() => ''), navs };
  } finally {
    page.off('request', onReq);
    page.off('response', onResp);
  }
}

/** Submits the form of `page` with `button` and waits for the navigation it starts. */
export async function submit(page, button) {
  await Promise.all([page.waitForNavigation({ timeout: NAV_TIMEOUT_MS }).catch(() => {}), page.click(button)]);
}

/** follow() through Keycloak: fills its password form (`password`) and OTP form (`otp()`) when
 * they show, each at most twice (a third time is a loop). Adds the trips to the authorization
 * endpoint and the forms shown. */
async function drive(page, kc, url, { user, password, otp }) {
  const forms = [];
  const twice = (f) => assert(forms.filter((x) => x === f).length < 2, `Keycloak asked for the ${f} a third time: a loop`);
  const r = await follow(page, url, async (p) => {
    if (!p.url().startsWith(kc.urls.public)) return false;
    if (await p.locator('#otp').count().catch(() => 0) > 0) {
      assert(otp, 'Keycloak asked for an OTP and none was expected');
      twice('otp');
      forms.push('otp');
      await p.fill('#otp', await otp());
    } else if (await p.locator('#password').count().catch(() => 0) > 0) {
      assert(password, 'Keycloak asked for a password and none was expected');
      twice('password');
      forms.push('password');
      if (await p.locator('#username').count() > 0) await p.fill('#username', user);
      await p.fill('#password', password);
    } else {
      return false;
    }
    await submit(p, '#kc-login');
    return true;
  });
  const authz = r.navs.filter((u) => u.startsWith(`${kc.urls.public}/realms/${REALM}/protocol/openid-connect/auth`));
  return { ...r, authz, forms };
}

/** An XHR-like request from the page: a same-origin fetch() asking for JSON. */
function fetchFrom(page, p) {
  return page.evaluate(async (u) => {
    const r = await fetch(u, { headers: { Accept: 'application/json' }, redirect: 'manual' });
    return { status: r.status, www: r.headers.get('www-authenticate'), type: r.type };
  }, p);
}

/**
 * The step-up checks (see the file's comment). `check` is the suite's reporter; `password` the
 * realm's test password; `whoamiPort` the suite's whoami.
 */
export async function stepUpChecks({ kc, stack, browser, check, sidecarBin, password, whoamiPort, artifacts }) {
  const otpSecret = crypto.randomBytes(15).toString('hex');
  const clientSecret = crypto.randomBytes(16).toString('hex');
  const traefikPort = await freePort();
  const ports = { sidecar: await freePort(), metrics: await freePort() };
  const origin = (door) => `http://stepup.${door}.localhost:${traefikPort}`;
  // Keycloak refuses a code used before (its default OTP policy): a second door waits for the
  // next 30 s window rather than repeat the first door's code.
  let lastCode = null;
  const freshCode = async () => {
    while (totp(otpSecret) === lastCode) await sleep(1000);
    lastCode = totp(otpSecret);
    return lastCode;
  };
  const dir = path.join(artifacts, 'stepup');
  fs.mkdirSync(dir, { recursive: true });

  const cRealm = 'step-up: realm gets a browser flow with levels of authentication (password, then OTP), a client bound to it (acr.loa.map silver/gold) and a user with a TOTP credential';
  const realmOk = await check(cRealm, async () => {
    const flow = await createFlow(kc);
    await createClientAndUser(kc, { flowId: flow.id, clientSecret, password, otpSecret, origins: DOORS.map(origin) });
    return `flow ${flow.id} (${flow.executions} executions), client ${CLIENT}, user ${USER}`;
  }, { timeoutMs: 60000 });
  if (!realmOk) return;

  const cUp = 'step-up: its sidecar (plain, strict: AcrValues [gold], platinum) and its Traefik (both doors) start';
  const up = await check(cUp, async () => {
    const files = { sidecar: path.join(dir, 'sidecar.yaml'), dynamic: path.join(dir, 'dynamic.yml'), static: path.join(dir, 'traefik.yml') };
    fs.writeFileSync(files.sidecar, stepUpSidecarYaml({
      port: ports.sidecar, metricsPort: ports.metrics, issuer: kc.issuer, clientId: CLIENT, clientSecret,
      secret: crypto.randomBytes(32).toString('hex'), prefix: 'KcStepUp',
      middlewares: { plain: '', strict: '    StepUp:\n      AcrValues: [gold]\n', platinum: '    StepUp:\n      AcrValues: [platinum]\n' },
    }), { mode: 0o600 });
    fs.writeFileSync(files.dynamic, stepUpDynamicYaml({
      doors: DOORS, hostOf: (d) => `stepup.${d}.localhost`, names: ['plain', 'strict', 'platinum'],
      sidecarUrl: `http://127.0.0.1:${ports.sidecar}`, whoamiPort,
    }));
    fs.writeFileSync(files.static, traefikStaticConfig({ traefikPort, dynamicFile: files.dynamic, accessLogFile: path.join(dir, 'access.log'), logLevel: 'INFO' }));
    const sc = stack.spawn('stepup-sidecar', sidecarBin, ['--config', files.sidecar]);
    await waitFor('step-up sidecar /readyz', async () => {
      sc.assertRunning();
      return (await request({ port: ports.sidecar, path: '/readyz', timeoutMs: 2000 })).status === 200;
    }, { timeoutMs: 30000 });
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-stepup-traefik-'));
    layoutLocalPlugin(work);
    const t = stack.spawn('stepup-traefik', resolveTraefik(), [`--configFile=${files.static}`], { cwd: work });
    for (const door of DOORS) {
      await waitFor(`stepup.${door}.localhost through its middleware`, async () => {
        t.assertRunning();
        const r = await request({ port: traefikPort, path: '/', headers: { Host: `stepup.${door}.localhost`, Accept: 'text/html' }, timeoutMs: 5000 });
        return r.status === 302 && r.headers.location?.startsWith(kc.issuer) ? r : false;
      }, { timeoutMs: 60000 });
    }
    return `sidecar on ${ports.sidecar}, Traefik on ${traefikPort}`;
  }, { timeoutMs: 120000 });
  if (!up) return;

  for (const door of DOORS) {
    const L = `step-up ${door}`;
    const o = origin(door);
    const ctx = await browser.newContext();
    ctx.setDefaultNavigationTimeout(NAV_TIMEOUT_MS);
    ctx.setDefaultTimeout(NAV_TIMEOUT_MS);
    const page = await ctx.newPage();
    const opts = (deps) => ({ deps: [cUp, ...deps], page, timeoutMs: 120000 });
    const cLogin = `${L}: ${USER} logs in at / with her password only (no OTP asked, no acr_values sent)`;
    await check(cLogin, async () => {
      const r = await drive(page, kc, `${o}/home`, { user: USER, password });
      assert(r.status === 200 && parseWhoami(r.body), `ended with ${r.status} at ${r.url}`);
      assert(r.forms.join() === 'password', `forms shown: ${r.forms.join()}`);
      const q = new URL(r.authz[0]).searchParams;
      assert(!q.has('acr_values'), `the plain login asked acr_values ${q.get('acr_values')}`);
      return r.navs.map((u) => new URL(u).pathname).join(' -> ');
    }, opts([]));
    await check(`${L}: fetch() to /strict before stepping up: 401 with the RFC 9470 challenge, no redirect`, async () => {
      const r = await fetchFrom(page, '/strict/api');
      assert(r.status === 401, `status ${r.status} (${r.type})`);
      assert(/error="insufficient_user_authentication"/.test(r.www || '') && /acr_values="gold"/.test(r.www), `WWW-Authenticate: ${r.www}`);
      return r.www;
    }, opts([cLogin]));
    const cStep = `${L}: /strict sends her to Keycloak with acr_values=gold; Keycloak asks only for the OTP; back upgraded, /strict serves her`;
    await check(cStep, async () => {
      const r = await drive(page, kc, `${o}/strict/settings`, { user: USER, otp: freshCode });
      assert(r.authz.length === 1, `${r.authz.length} trips to Keycloak`);
      assert(new URL(r.authz[0]).searchParams.get('acr_values') === 'gold', `authorization request: ${r.authz[0]}`);
      assert(r.forms.join() === 'otp', `forms shown: ${r.forms.join()}`);
      const w = parseWhoami(r.body);
      assert(r.status === 200 && w, `ended with ${r.status} at ${r.url}`);
      assert(new URL(r.url).pathname === '/strict/settings', `ended at ${r.url}`);
      return r.navs.map((u) => new URL(u).pathname).join(' -> ');
    }, opts([cLogin]));
    await check(`${L}: the upgraded session serves / and /strict (navigation and fetch) without Keycloak`, async () => {
      for (const p of ['/again', '/strict/again']) {
        const r = await drive(page, kc, `${o}${p}`, {});
        assert(r.status === 200 && parseWhoami(r.body) && r.authz.length === 0, `${p}: ${r.status}, ${r.authz.length} trips`);
      }
      const f = await fetchFrom(page, '/strict/api');
      assert(f.status === 200, `fetch /strict/api: ${f.status} ${f.www}`);
    }, opts([cStep]));
    await check(`${L}: /platinum (an acr Keycloak cannot give): one trip to Keycloak, back without it, 403; again 403 without a trip`, async () => {
      const r = await drive(page, kc, `${o}/platinum/x`, {});
      assert(r.authz.length === 1, `${r.authz.length} trips to Keycloak: ${r.navs.join(' -> ')}`);
      assert(new URL(r.authz[0]).searchParams.get('acr_values') === 'platinum', r.authz[0]);
      assert(r.status === 403 && !parseWhoami(r.body), `ended with ${r.status} at ${r.url}`);
      const again = await drive(page, kc, `${o}/platinum/y`, {});
      assert(again.status === 403 && again.authz.length === 0, `second visit: ${again.status}, ${again.authz.length} trips`);
      const home = await drive(page, kc, `${o}/still`, {});
      assert(home.status === 200 && parseWhoami(home.body), `/ after the 403: ${home.status}`);
      return `${r.navs.map((u) => new URL(u).pathname).join(' -> ')}`;
    }, opts([cStep]));
    await ctx.close().catch(() => {});
  }
}
