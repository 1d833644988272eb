// End-to-end suite against a real Keycloak 26: Keycloak (keycloak-server.mjs, started once), the
// sidecars (keycloak-config.mjs: traefik-oidc-auth-style blocks), a real Traefik with both doors
// (built-in forwardAuth and our Yaegi plugin) and whoami, driven by headless Chromium through
// Keycloak's own login form.
//
//   node tests/e2e/keycloak.mjs     (scripts/test-keycloak.sh installs what it needs, then runs this)
//
// Environment: KEYCLOAK_HOME and KEYCLOAK_JAVA_HOME (scripts/install-keycloak.sh), SIDECAR_BIN,
// TRAEFIK_BIN, WHOAMI_BIN, CHROMIUM, KEYCLOAK_E2E_ARTIFACTS (tests/e2e/artifacts-keycloak),
// KEYCLOAK_E2E_TIMEOUT_S (whole-suite limit, 1200), KEYCLOAK_START_TIMEOUT_S (300).
//
// Per door: login through Keycloak's form; identity headers from TOA-style Headers (username,
// email, groups, realm_access.roles, resource_access.sidecar.roles) at whoami; AssertClaims on
// groups, realm roles and client roles (200s and 403s); https Keycloak with the CA given by
// CABundleFile and by inline CABundle; refresh of a 20 s token; the Cookie header of a user with
// 50 groups and long role names; RP-initiated logout; Keycloak stopped (sessions keep working)
// and restarted (logins resume); the realm's signing key rotated (the next login works after one
// JWKS fetch). Then the behaviour of issue 10: one session scope shared by several middlewares
// with a dedicated callback router (200s, 403s, Challenge ending in 403 without a loop and, with
// Keycloak's SSO session, without a login form), the same blocks inline in the plugin,
// per-middleware LogLevel, the callback answering 403, a Go-template error page, the
// internal-URL layout and private_key_jwt.
//
// Prints one PASS/FAIL/SKIP line per check, the measured numbers, and a summary; exits non-zero
// on any failure or skip. Logs, configs and failure screenshots: the artifacts directory.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ROOT, Stack, freePort, request, resolveSidecar, resolveTraefik, resolveWhoami, sleep, waitFor } from './stack.mjs';
import { createReporter, assert, parseWhoami, headerValues, cookieNames, summarize } from './harness.mjs';
import { Keycloak, REALM, makeClientKey } from './keycloak-server.mjs';
import { WALK_HOST, walkConfigs, walkStaticConfig } from './readme-walk.mjs';
import { SILENT_REDIRECT_URIS, silentChecks } from './keycloak-silent.mjs';
import { rotationChecks, rotationOrigin } from './keycloak-rotation.mjs';
import { stepUpChecks } from './keycloak-stepup.mjs';
import { DOORS, DOOR_LABEL, SIDECARS, SITES, SHORT_TOKEN_LIFESPAN_S, REFRESH_COOKIE_PREFIX, redirectUris, routerNames, sidecarConfigs, siteUrl, traefikDynamic } from './keycloak-config.mjs';

const started = Date.now();
const ARTIFACTS = path.resolve(process.env.KEYCLOAK_E2E_ARTIFACTS || path.join(ROOT, 'tests', 'e2e', 'artifacts-keycloak'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SUITE_TIMEOUT_MS = Number(process.env.KEYCLOAK_E2E_TIMEOUT_S || 1200) * 1000;
const NAV_TIMEOUT_MS = 30000; // Keycloak on two busy cores can take seconds per page
const LOGIN_CHECK_MS = 90000;
const COOKIE_TARGET_BYTES = 4096;
const PASSWORD = `e2e-${crypto.randomBytes(6).toString('hex')}`;

fs.rmSync(ARTIFACTS, { recursive: true, force: true });
fs.mkdirSync(ARTIFACTS, { recursive: true });
const { check, results, line } = createReporter({ artifactsDir: ARTIFACTS, started });
const numbers = {}; // measured values, printed at the end

// ---------------------------------------------------------------------------------------------
// Browser steps.

/**
 * Runs `act` (a navigation) and follows the browser until a document from `origin` answers with
 * a non-redirect status, logging in on Keycloak's form as `user` if it shows up. Returns the
 * final status, URL and body, every navigation URL on the way, each response's status by URL,
 * and how many times Keycloak's authorization endpoint and login form were seen.
 */
async function follow(page, kc, origin, act, user) {
  const navs = [];
  const statuses = [];
  let final = null;
  let wake = () => {};
  const onReq = (r) => { if (r.isNavigationRequest() && r.frame() === page.mainFrame()) navs.push(r.url()); };
  const onResp = (r) => {
    const req = r.request();
    if (!req.isNavigationRequest() || req.frame() !== page.mainFrame()) return;
    statuses.push({ url: r.url(), status: r.status(), resp: r });
    if (r.url().startsWith(origin) && (r.status() < 300 || r.status() >= 400)) { final = r; wake(); }
  };
  page.on('request', onReq);
  page.on('response', onResp);
  let forms = 0;
  try {
    await act().catch(() => {}); // an error status with no body throws in goto; the response is what counts
    const deadline = Date.now() + NAV_TIMEOUT_MS;
    while (!final && Date.now() < deadline) {
      // The login form; on re-authentication (prompt=login with a Keycloak session, e.g. from
      // AuthorizationParams) it shows the user's name read-only (#kc-attempted-username) and asks only for the password.
      const onForm = page.url().startsWith(kc.urls.public) && await page.locator('#password').count().catch(() => 0) > 0;
      if (onForm) {
        assert(user, `Keycloak asked for a login at ${page.url().split('?')[0]} and no user was given`);
        assert(forms < 2, 'Keycloak showed its login form a third time: a login loop');
        forms++;
        final = null;
        if (await page.locator('#username').count() > 0) await page.fill('#username', user);
        else assert(await page.locator('#kc-attempted-username').inputValue() === user, 'Keycloak re-authenticates another user');
        await page.fill('#password', PASSWORD);
        await Promise.all([page.waitForNavigation({ timeout: NAV_TIMEOUT_MS }).catch(() => {}), page.click('#kc-login')]);
        continue;
      }
      await Promise.race([new Promise((r) => { wake = r; }), sleep(250)]);
    }
    assert(final, `no answer from ${origin} within ${NAV_TIMEOUT_MS} ms; navigations: ${navs.map(short).join(' -> ')}; now at ${page.url()}`);
    await page.waitForLoadState('load').catch(() => {});
    const body = await final.text().catch(() => '');
    const authz = navs.filter((u) => u.startsWith(`${kc.urls.public}/realms/${REALM}/protocol/openid-connect/auth`));
    return { status: final.status(), url: final.url(), body, navs, statuses, authz, forms };
  } finally {
    page.off('request', onReq);
    page.off('response', onResp);
  }
}

function short(u) {
  try { const x = new URL(u); return `${x.host}${x.pathname}`; } catch { return u; }
}

/** Navigates `page` to `url` (following a login as `user` if needed). */
function visit(page, kc, url, user) {
  return follow(page, kc, new URL(url).origin, () => page.goto(url), user);
}

/** The whoami answer in `r`, or a failure naming what came instead. */
function whoami(r, what) {
  const w = parseWhoami(r.body);
  assert(r.status === 200 && w, `${what}: expected whoami (200), got ${r.status} at ${short(r.url)}: ${r.body.replace(/\s+/g, ' ').slice(0, 160)}; via ${r.navs.map(short).join(' -> ')}`);
  return w;
}

function oneHeader(w, name) {
  const v = headerValues(w, name);
  assert(v.length === 1, `${name}: expected one value, got ${JSON.stringify(v)}`);
  return v[0];
}

/** Values of a header sent once per element (TOA's `Values`), or once comma-joined. */
function listHeader(w, name) {
  return headerValues(w, name).flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean);
}

async function newContext(browser) {
  const ctx = await browser.newContext();
  ctx.setDefaultNavigationTimeout(NAV_TIMEOUT_MS);
  ctx.setDefaultTimeout(NAV_TIMEOUT_MS);
  return ctx;
}

/** The Cookie header the browser sends to `url`, and the part of it that is the sidecar's session. */
async function cookieHeader(ctx, url, sessionPrefix) {
  const all = await ctx.cookies(url);
  const header = all.map((c) => `${c.name}=${c.value}`).join('; ');
  const session = all.filter((c) => c.name.includes('.session')).filter((c) => !sessionPrefix || c.name.startsWith(sessionPrefix));
  return { header, bytes: Buffer.byteLength(header), names: all.map((c) => c.name), sessionCookies: session };
}

// ---------------------------------------------------------------------------------------------
// The suite.

async function main() {
  const stack = new Stack({ artifactsDir: ARTIFACTS, log: (m) => console.log(`     ${m}`) });
  const clientKey = makeClientKey();
  const secret = crypto.randomBytes(32).toString('hex');
  const clientSecret = crypto.randomBytes(16).toString('hex');
  let kc;
  let browser;
  const ready = {}; // sidecar name -> true when its /readyz answered 200
  const cleanup = async () => {
    await browser?.close().catch(() => {});
    await stack.stop().catch(() => {});
    kc?.removeCopy();
  };
  const watchdog = setTimeout(async () => {
    line('FAIL', 'suite', `whole suite exceeded ${SUITE_TIMEOUT_MS / 1000} s`);
    await cleanup();
    process.exit(2);
  }, SUITE_TIMEOUT_MS);
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, async () => { await cleanup(); process.exit(130); });

  try {
    // ----- Keycloak, whoami, the sidecars, Traefik, Chromium. -----
    const traefikPort = await freePort();
    const url = (site, door, p = '/') => `${siteUrl(site, door, traefikPort)}${p}`;
    // The README walk's own Traefik (readme-walk.mjs): its origin is a redirect URI of the realm.
    const walkPort = await freePort();
    const walkOrigin = `http://${WALK_HOST}:${walkPort}`;
    const okKc = await check('keycloak: dev mode on loopback (http + https), realm imported, discovery answers', async () => {
      assert(process.env.KEYCLOAK_HOME, 'KEYCLOAK_HOME is not set (scripts/install-keycloak.sh prints it)');
      assert(process.env.KEYCLOAK_JAVA_HOME, 'KEYCLOAK_JAVA_HOME is not set (scripts/install-keycloak.sh --java-home prints it)');
      kc = new Keycloak({
        home: process.env.KEYCLOAK_HOME,
        javaHome: process.env.KEYCLOAK_JAVA_HOME,
        workDir: path.join(ARTIFACTS, 'keycloak-run'),
        spawn: (...a) => stack.spawn(...a),
        realmValues: {
          E2E_ADMIN_SECRET: crypto.randomBytes(16).toString('hex'),
          E2E_CLIENT_SECRET: clientSecret,
          E2E_USER_PASSWORD: PASSWORD,
          E2E_CLIENT_JWKS: clientKey.jwks,
          E2E_SHORT_TOKEN_LIFESPAN: String(SHORT_TOKEN_LIFESPAN_S),
          E2E_REDIRECT_URIS: [...redirectUris(traefikPort), `${walkOrigin}/*`, ...SILENT_REDIRECT_URIS, `${await rotationOrigin()}/*`],
        },
      });
      await kc.allocatePorts();
      kc.prepare();
      const whoamiPort = await freePort();
      stack.ports = { traefik: traefikPort, whoami: whoamiPort };
      const [secs] = await Promise.all([kc.start(), stack.startWhoami(resolveWhoami(), whoamiPort)]);
      numbers.keycloakStartSeconds = secs;
      return `Keycloak ${fs.readFileSync(path.join(process.env.KEYCLOAK_HOME, 'version.txt'), 'utf8').trim()} ready in ${secs.toFixed(1)} s at ${kc.urls.public} / ${kc.urls.https}`;
    }, { timeoutMs: 360000 });
    if (!okKc) return;

    await check('keycloak: discovery asked on the internal URL names the public issuer and internal back-channel endpoints', async () => {
      const d = JSON.parse((await request({ port: kc.ports.http, path: `/realms/${REALM}/.well-known/openid-configuration` })).body);
      assert(d.issuer === kc.issuer, `issuer ${d.issuer}, expected ${kc.issuer}`);
      assert(d.authorization_endpoint.startsWith(kc.urls.public), `authorization_endpoint ${d.authorization_endpoint}`);
      assert(d.token_endpoint.startsWith(kc.urls.internal), `token_endpoint ${d.token_endpoint}`);
      assert(d.jwks_uri.startsWith(kc.urls.internal), `jwks_uri ${d.jwks_uri}`);
      return `issuer ${d.issuer}; token_endpoint ${d.token_endpoint}; end_session_endpoint ${d.end_session_endpoint}`;
    });

    const sidecarBin = resolveSidecar();
    const sidecarPorts = {};
    for (const name of SIDECARS) sidecarPorts[name] = { port: await freePort(), metricsPort: await freePort() };
    const sidecarOk = (name) => `sidecar ${name}: starts and is ready (${Object.entries(SITES).filter(([, x]) => x.sidecar === name).map(([k]) => k).join(', ')})`;
    const configs = sidecarConfigs({ kc, secret, clientSecret, clientKey, ports: sidecarPorts });
    // All of them start at once; each is then judged on its own (a feature that has not landed
    // shows as one sidecar that exits or never becomes ready, with its log's reason).
    const procs = {};
    await Promise.all(SIDECARS.map(async (name) => {
      procs[name] = await stack.startSidecar(sidecarBin, { name: `sidecar-${name}`, port: sidecarPorts[name].port, configText: configs[name], waitReady: false })
        .catch((e) => e);
    }));
    for (const name of SIDECARS) {
      await check(sidecarOk(name), async () => {
        const p = procs[name];
        if (p instanceof Error) throw p;
        await waitFor(`sidecar-${name} /readyz`, async () => {
          p.assertRunning();
          return (await request({ port: sidecarPorts[name].port, path: '/readyz', timeoutMs: 2000 })).status === 200;
        }, { timeoutMs: 30000 }).catch((e) => {
          throw new Error(`${e.message}\n${p.tail(15).split('\n').filter((l) => /WARN|ERROR|error/.test(l)).slice(-3).join('\n')}`);
        });
        ready[name] = true;
      }, { timeoutMs: 60000 });
    }
    if (!ready.main) return;

    const okTraefik = await check('traefik: every router of both doors enabled (forwardAuth + local plugin)', async () => {
      await stack.startTraefik(resolveTraefik(), {
        dynamicConfig: traefikDynamic({ sidecarPorts, whoamiPort: stack.ports.whoami, inline: configs.inline }),
        routerNames: routerNames(),
        hosts: DOORS.map((d) => `kc.${d}.localhost`),
      });
      return `${routerNames().length} routers on 127.0.0.1:${traefikPort}`;
    }, { timeoutMs: 120000 });
    if (!okTraefik) return;

    const okBrowser = await check('browser: headless Chromium starts', async () => {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
          '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        timeout: 30000,
      });
      return `Chromium ${browser.version()}`;
    });
    if (!okBrowser) return;

    const opts = (page, deps = []) => ({ page, deps, timeoutMs: LOGIN_CHECK_MS });
    const users = {}; // door -> user -> { ctx, page }: one browser (and Keycloak SSO session) per user and door
    const as = async (door, user) => {
      users[door] ||= {};
      if (!users[door][user]) {
        const ctx = await newContext(browser);
        users[door][user] = { ctx, page: await ctx.newPage() };
      }
      return users[door][user];
    };

    // ----- Login, identity headers, role and group claims. -----
    const cLogin = {};
    for (const door of DOORS) {
      const L = `${door} (${DOOR_LABEL[door]})`;
      const { page, ctx } = await as(door, 'alice');
      cLogin[door] = `${L}: kc: anonymous -> Keycloak's login form -> alice -> back on the original URL, served by whoami`;
      let w;
      await check(cLogin[door], async () => {
        const target = url('kc', door, '/private/page?e2e=1');
        const r = await visit(page, kc, target, 'alice');
        w = whoami(r, 'after login');
        assert(r.forms === 1, `Keycloak's login form was shown ${r.forms} times`);
        assert(r.url === target, `landed on ${r.url}, expected ${target}`);
        return r.navs.map(short).join(' -> ');
      }, opts(page));
      await check(`${L}: kc: whoami gets username, email, groups, realm_access.roles and resource_access.sidecar.roles from TOA-style Headers`, async () => {
        assert(oneHeader(w, 'X-Oidc-Username') === 'alice', `X-Oidc-Username ${oneHeader(w, 'X-Oidc-Username')}`);
        assert(oneHeader(w, 'X-Oidc-Email') === 'alice@example.test', `X-Oidc-Email ${oneHeader(w, 'X-Oidc-Email')}`);
        const groups = listHeader(w, 'X-Oidc-Groups');
        assert(JSON.stringify(groups) === '["team-a"]', `X-Oidc-Groups ${JSON.stringify(groups)}`);
        const realmRoles = listHeader(w, 'X-Oidc-Realm-Roles');
        assert(realmRoles.includes('e2e-user') && realmRoles.includes('e2e-admin'), `X-Oidc-Realm-Roles ${JSON.stringify(realmRoles)}`);
        const clientRoles = listHeader(w, 'X-Oidc-Client-Roles');
        assert(JSON.stringify(clientRoles) === '["editor"]', `X-Oidc-Client-Roles ${JSON.stringify(clientRoles)}`);
        const leaked = cookieNames(w).filter((n) => n.startsWith('TraefikOidc'));
        assert(leaked.length === 0, `sidecar cookies reached whoami: ${leaked.join(', ')}`);
        return `groups ${groups}; realm roles ${realmRoles.join(',')}; client roles ${clientRoles}`;
      }, { deps: [cLogin[door]], page });
    }

    // ----- AssertClaims on groups, realm roles, client roles (Keycloak SSO: no second form). -----
    const expectations = [
      ['groups', 'groups AnyOf [team-a]', { alice: 200, bob: 403, carol: 403 }],
      ['realmroles', 'realm_access.roles AllOf [e2e-user, e2e-admin]', { alice: 200, bob: 403 }],
      ['clientroles', 'resource_access.sidecar.roles AnyOf [viewer]', { bob: 200, alice: 403 }],
    ];
    for (const door of DOORS) {
      const L = `${door} (${DOOR_LABEL[door]})`;
      for (const [site, what, byUser] of expectations) {
        for (const [user, want] of Object.entries(byUser)) {
          const { page } = await as(door, user);
          await check(`${L}: ${site} (${what}): ${user} -> ${want}`, async () => {
            const r = await visit(page, kc, url(site, door, '/x'), user);
            if (want === 200) {
              const w = whoami(r, user);
              assert(oneHeader(w, 'X-Oidc-Username') === user, `X-Oidc-Username ${oneHeader(w, 'X-Oidc-Username')}`);
            } else {
              assert(r.status === 403, `status ${r.status} at ${short(r.url)} (expected 403)`);
              assert(!parseWhoami(r.body), 'whoami answered');
            }
            return `${r.status} at ${short(r.url)}${r.forms ? ' (after the login form)' : ' (Keycloak SSO, no form)'}`;
          }, opts(page, user === 'alice' ? [cLogin[door]] : []));
        }
      }
    }

    // ----- https Keycloak: CA by file and inline. -----
    for (const door of DOORS) {
      const L = `${door} (${DOOR_LABEL[door]})`;
      for (const [site, how] of [['httpsfile', 'Provider.CABundleFile'], ['httpsinline', 'inline Provider.CABundle']]) {
        const { page } = await as(door, 'alice');
        await check(`${L}: ${site}: Keycloak over https with a run-time CA given by ${how}: alice logs in`, async () => {
          const w = whoami(await visit(page, kc, url(site, door, '/tls'), 'alice'), 'https Keycloak');
          assert(oneHeader(w, 'X-Oidc-Username') === 'alice', 'wrong user');
          return `discovery, JWKS and token endpoint at ${kc.urls.https}`;
        }, opts(page, [cLogin[door]]));
      }
    }

    // ----- Refresh: 20 s tokens, renewal threshold 0.5. Both doors share the wait. -----
    const refreshed = {};
    for (const door of DOORS) {
      const { page, ctx } = await as(door, 'alice');
      await check(`${DOOR_LABEL[door]}: refresh: alice logs in with the 20 s-token client`, async () => {
        whoami(await visit(page, kc, url('refresh', door, '/r'), 'alice'), 'refresh login');
        refreshed[door] = { at: Date.now(), before: (await cookieHeader(ctx, url('refresh', door), REFRESH_COOKIE_PREFIX)).sessionCookies.map((c) => c.value).join('|') };
      }, opts(page, [cLogin[door]]));
    }
    for (const door of DOORS) {
      const L = `${door} (${DOOR_LABEL[door]})`;
      const { page, ctx } = await as(door, 'alice');
      await check(`${L}: refresh: after half the token lifetime the session is refreshed at Keycloak and the new cookie reaches the browser`, async () => {
        assert(refreshed[door], 'no login');
        const due = refreshed[door].at + SHORT_TOKEN_LIFESPAN_S * 500 + 2000;
        if (Date.now() < due) await sleep(due - Date.now());
        whoami(await visit(page, kc, url('refresh', door, '/r2'), null), 'after renewal point');
        const after = (await cookieHeader(ctx, url('refresh', door), REFRESH_COOKIE_PREFIX)).sessionCookies.map((c) => c.value).join('|');
        assert(after && after !== refreshed[door].before, 'the session cookie did not change: no refreshed session reached the browser');
        // Past the first token's lifetime, the refreshed session alone keeps the user in.
        const end = refreshed[door].at + SHORT_TOKEN_LIFESPAN_S * 1000 + 1000;
        if (Date.now() < end) await sleep(end - Date.now());
        whoami(await visit(page, kc, url('refresh', door, '/r3'), null), 'past the first token lifetime');
      }, { page, deps: [`${DOOR_LABEL[door]}: refresh: alice logs in with the 20 s-token client`], timeoutMs: 120000 });
    }

    // ----- 50 groups and long role names: the Cookie header size with Keycloak's real tokens. -----
    for (const door of DOORS) {
      const L = `${door} (${DOOR_LABEL[door]})`;
      const { page, ctx } = await as(door, 'dave');
      await check(`${L}: dave (50 groups, long role names): logs in, the Cookie header stays <= ${COOKIE_TARGET_BYTES} bytes`, async () => {
        const w = whoami(await visit(page, kc, url('kc', door, '/big'), 'dave'), 'dave');
        const groups = listHeader(w, 'X-Oidc-Groups');
        assert(groups.length === 50, `X-Oidc-Groups has ${groups.length} values`);
        const roles = listHeader(w, 'X-Oidc-Realm-Roles');
        assert(roles.filter((r) => r.length > 60).length === 20, `long realm roles at whoami: ${roles.length}`);
        const c = await cookieHeader(ctx, url('kc', door, '/big'));
        const sessionBytes = Buffer.byteLength(c.sessionCookies.map((x) => `${x.name}=${x.value}`).join('; '));
        numbers[`cookieHeaderBytes50Groups_${door}`] = c.bytes;
        numbers[`sessionCookieBytes50Groups_${door}`] = sessionBytes;
        const alice = await cookieHeader((await as(door, 'alice')).ctx, url('kc', door, '/'));
        numbers[`cookieHeaderBytesAlice_${door}`] = alice.bytes;
        assert(c.bytes <= COOKIE_TARGET_BYTES, `Cookie header ${c.bytes} bytes (${c.names.join(', ')})`);
        return `Cookie header ${c.bytes} bytes (session cookies ${sessionBytes} bytes in ${c.sessionCookies.length} chunk(s)); alice's: ${alice.bytes} bytes`;
      }, opts(page));
    }

    // ----- RP-initiated logout. -----
    for (const door of DOORS) {
      const L = `${door} (${DOOR_LABEL[door]})`;
      const { page, ctx } = await as(door, 'dave');
      await check(`${L}: /logout -> Keycloak end_session (id_token_hint) -> back at / -> Keycloak asks for a login again`, async () => {
        const r = await follow(page, kc, kc.urls.public, () => page.goto(url('kc', door, '/logout')), null).catch((e) => e);
        const navs = r instanceof Error ? [] : r.navs;
        const endSession = navs.find((u) => u.includes('/protocol/openid-connect/logout'));
        assert(endSession, `no trip to Keycloak's end_session endpoint: ${navs.map(short).join(' -> ')} ${r instanceof Error ? r.message : ''}`);
        const q = new URL(endSession).searchParams;
        assert(q.get('id_token_hint')?.startsWith('eyJ'), 'end_session without id_token_hint');
        assert(q.get('post_logout_redirect_uri')?.startsWith(url('kc', door, '')), `post_logout_redirect_uri ${q.get('post_logout_redirect_uri')}`);
        await page.waitForURL((u) => u.href.startsWith(kc.urls.public) && u.pathname.endsWith('/auth'), { timeout: NAV_TIMEOUT_MS }).catch(() => {});
        await page.locator('#username').waitFor({ timeout: NAV_TIMEOUT_MS });
        const all = [...navs, page.url()];
        assert(all.some((u) => u === url('kc', door, '/')), `never back at ${url('kc', door, '/')}: ${all.map(short).join(' -> ')}`);
        const held = (await ctx.cookies(url('kc', door))).map((c) => c.name).filter((n) => n.includes('.session.'));
        assert(held.length === 0, `session cookies left: ${held.join(', ')}`);
        return all.map(short).join(' -> ');
      }, opts(page, [`${L}: dave (50 groups, long role names): logs in, the Cookie header stays <= ${COOKIE_TARGET_BYTES} bytes`]));
    }

    // ----- The README's "Protect your app with Keycloak", as a reader follows it (issue 20). -----
    const cWalkUp = "README walk: the Keycloak section's sidecar file and forwardAuth block, copied from README.md, start the sidecar and load in Traefik";
    const walkUp = await check(cWalkUp, async () => {
      const ports = { sidecar: await freePort(), metrics: await freePort() };
      const { sidecarYaml, dynamicYaml } = walkConfigs({ issuer: kc.issuer, clientId: 'sidecar', sidecarPort: ports.sidecar, metricsPort: ports.metrics, whoamiPort: stack.ports.whoami });
      const dir = path.join(ARTIFACTS, 'readme-walk');
      fs.mkdirSync(dir, { recursive: true });
      const files = { sidecar: path.join(dir, 'sidecar.yaml'), dynamic: path.join(dir, 'dynamic.yml'), static: path.join(dir, 'traefik.yml') };
      fs.writeFileSync(files.sidecar, sidecarYaml);
      fs.writeFileSync(files.dynamic, dynamicYaml);
      fs.writeFileSync(files.static, walkStaticConfig({ traefikPort: walkPort, dynamicFile: files.dynamic }));
      // The two variables the README tells the reader to set.
      const env = { KEYCLOAK_CLIENT_SECRET: clientSecret, SESSION_SECRET: crypto.randomBytes(48).toString('base64') };
      const sc = stack.spawn('readme-sidecar', sidecarBin, ['--config', files.sidecar], { env });
      await waitFor('README sidecar /readyz', async () => {
        sc.assertRunning();
        return (await request({ port: ports.sidecar, path: '/readyz', timeoutMs: 2000 })).status === 200;
      }, { timeoutMs: 30000 });
      const t = stack.spawn('readme-traefik', resolveTraefik(), [`--configFile=${files.static}`]);
      const r = await waitFor(`${WALK_HOST} answering through the README's forwardAuth`, async () => {
        t.assertRunning();
        const res = await request({ port: walkPort, path: '/', headers: { Host: WALK_HOST, Accept: 'text/html' }, timeoutMs: 5000 });
        return res.status === 404 || res.status >= 500 ? false : res;
      }, { timeoutMs: 30000 });
      assert(r.status === 302 && r.headers.location?.startsWith(`${kc.issuer}/protocol/openid-connect/auth`), `anonymous navigation: ${r.status} ${r.headers.location || ''}`);
      return `the sidecar is ready; ${WALK_HOST} answers 302 to Keycloak's authorization endpoint`;
    }, { timeoutMs: 90000 });
    if (walkUp) {
      const ctx = await newContext(browser);
      const page = await ctx.newPage();
      const cWalkLogin = "README walk: anonymous -> Keycloak's login form -> alice -> the app, with X-Forwarded-User and no session cookie upstream";
      await check(cWalkLogin, async () => {
        const r = await visit(page, kc, `${walkOrigin}/`, 'alice');
        const w = whoami(r, 'README walk');
        assert(r.forms === 1, `Keycloak's form shown ${r.forms} times`);
        assert(oneHeader(w, 'X-Forwarded-User') === 'alice', `X-Forwarded-User ${JSON.stringify(headerValues(w, 'X-Forwarded-User'))}`);
        const leaked = headerValues(w, 'Cookie').join('; ').split(/;\s*/).filter((c) => c.startsWith('TraefikOidcSidecar.'));
        assert(leaked.length === 0, `session cookies reached the app: ${leaked.map((c) => c.split('=')[0]).join(', ')}`);
        return `X-Forwarded-User alice, X-Forwarded-Email ${JSON.stringify(headerValues(w, 'X-Forwarded-Email'))}`;
      }, opts(page, [cWalkUp]));
      await check("README walk: /logout -> Keycloak's end_session -> back at / -> Keycloak asks for a login again", async () => {
        const r = await follow(page, kc, kc.urls.public, () => page.goto(`${walkOrigin}/logout`), null).catch((e) => e);
        const navs = r instanceof Error ? [] : r.navs;
        assert(navs.some((u) => u.includes('/protocol/openid-connect/logout')), `no trip to Keycloak's end_session endpoint: ${navs.map(short).join(' -> ')} ${r instanceof Error ? r.message : ''}`);
        await page.locator('#username').waitFor({ timeout: NAV_TIMEOUT_MS });
        const held = (await ctx.cookies(walkOrigin)).map((c) => c.name).filter((n) => n.includes('.session.'));
        assert(held.length === 0, `session cookies left: ${held.join(', ')}`);
        return [...navs, page.url()].map(short).join(' -> ');
      }, opts(page, [cWalkLogin]));
      await ctx.close().catch(() => {});
    }

    await silentChecks({ check, kc, stack, browser, clientSecret, password: PASSWORD, artifactsDir: ARTIFACTS });
    await rotationChecks({ browser, kc, check, stack, clientSecret, visit, newContext, artifacts: ARTIFACTS, opts });

    // ----- Keycloak stopped and restarted mid-session. -----
    const cDown = 'keycloak: stopped mid-session';
    await check(cDown, async () => { await kc.stop(); });
    for (const door of DOORS) {
      const L = `${door} (${DOOR_LABEL[door]})`;
      const { page } = await as(door, 'alice');
      await check(`${L}: Keycloak down: alice's session still works`, async () => {
        whoami(await visit(page, kc, url('kc', door, '/while-down'), null), 'Keycloak down');
      }, opts(page, [cDown, cLogin[door]]));
    }
    const cUp = 'keycloak: restarted';
    await check(cUp, async () => {
      const secs = await kc.start();
      numbers.keycloakRestartSeconds = secs;
      return `ready again in ${secs.toFixed(1)} s`;
    }, { deps: [cDown], timeoutMs: 360000 });
    for (const door of DOORS) {
      const L = `${door} (${DOOR_LABEL[door]})`;
      const { page } = await as(door, 'alice');
      await check(`${L}: after the restart alice's session still works`, async () => {
        whoami(await visit(page, kc, url('kc', door, '/after-restart'), null), 'after restart');
      }, opts(page, [cUp, cLogin[door]]));
      const bob = await as(door, 'bob');
      await check(`${L}: after the restart a new login works (bob)`, async () => {
        await bob.ctx.clearCookies();
        const r = await visit(bob.page, kc, url('kc', door, '/new-after-restart'), 'bob');
        const w = whoami(r, 'login after restart');
        assert(oneHeader(w, 'X-Oidc-Username') === 'bob', 'wrong user');
        return `login form shown ${r.forms}x`;
      }, opts(bob.page, [cUp]));
    }

    // ----- The realm's signing key rotated through the admin API. -----
    let mark;
    const cRotate = 'keycloak: realm signing key rotated (new rsa-generated provider with higher priority, old ones removed)';
    await check(cRotate, async () => {
      mark = kc.logMark();
      const { before, after, removedProviders } = await kc.rotateSigningKey();
      assert(after.length === 1 && !before.includes(after[0]), `active RS256 kids before ${before}, after ${after}`);
      return `kid ${before.join(',')} -> ${after[0]} (removed ${removedProviders.join(', ')})`;
    }, { deps: [cUp] });
    for (const door of DOORS) {
      const L = `${door} (${DOOR_LABEL[door]})`;
      const carol = await as(door, 'carol');
      await check(`${L}: after the key rotation a new login works (carol, ID token signed with the new key)`, async () => {
        await carol.ctx.clearCookies();
        const w = whoami(await visit(carol.page, kc, url('kc', door, '/after-rotation'), 'carol'), 'login after rotation');
        assert(oneHeader(w, 'X-Oidc-Username') === 'carol', 'wrong user');
      }, opts(carol.page, [cRotate]));
      const { page } = await as(door, 'alice');
      await check(`${L}: after the key rotation alice's older session still works`, async () => {
        whoami(await visit(page, kc, url('kc', door, '/after-rotation'), null), 'old session after rotation');
      }, opts(page, [cRotate, cLogin[door]]));
    }
    await check('keycloak: the sidecar fetched the JWKS exactly once after the rotation', async () => {
      await sleep(500);
      const fetches = kc.logSince(mark).split('\n').filter((l) => /GET \/realms\/[^ ]+\/protocol\/openid-connect\/certs/.test(l));
      numbers.jwksFetchesAfterRotation = fetches.length;
      assert(fetches.length === 1, `${fetches.length} JWKS fetches:\n${fetches.join('\n')}`);
      return fetches[0].trim().slice(0, 160);
    }, { deps: DOORS.map((door) => `${door} (${DOOR_LABEL[door]}): after the key rotation a new login works (carol, ID token signed with the new key)`) });

    // ----- Issue 10 behaviour. -----
    await issueTenChecks({ kc, url, as, opts, sidecarOk });
    await stepUpChecks({ kc, stack, browser, check, sidecarBin, password: PASSWORD, whoamiPort: stack.ports.whoami, artifacts: ARTIFACTS });
  } finally {
    clearTimeout(watchdog);
    await cleanup();
  }
}

/** A Challenge of a user with a Keycloak SSO session (visit's result `r`): exactly one trip to
 * the authorization endpoint, without prompt, no login form, ending in 403 (issue 18). */
function assertChallengedOnce(r) {
  assert(r.authz.length === 1, `${r.authz.length} trips to Keycloak's authorization endpoint: ${r.navs.map(short).join(' -> ')}`);
  assert(!new URL(r.authz[0]).searchParams.has('prompt'), `the challenge asked a prompt: ${r.authz[0]}`);
  assert(r.forms === 0, `Keycloak showed its login form ${r.forms} times`);
  assert(r.status === 403 && !parseWhoami(r.body), `ended with ${r.status} at ${short(r.url)}`);
}

/** The checks of the behaviour issue 10 adds (session scopes, decide at the callback, page
 * templates, the internal-URL issuer, private_key_jwt, per-middleware LogLevel). */
async function issueTenChecks({ kc, url, as, opts, sidecarOk }) {
  // One session scope: /alice, /bob, /admin (Challenge), / and a dedicated callback router.
  for (const door of DOORS) {
    const L = `${door} (${DOOR_LABEL[door]}) shared`;
    // Browsers of their own: the Keycloak SSO sessions of earlier checks must not help here.
    const fresh = (user) => as(door, `${user}-shared`);
    const a = await fresh('alice');
    const cA = `${L}: alice logs in at /alice; the callback router's middleware finishes the flow; /alice serves her`;
    await check(cA, async () => {
      const r = await follow(a.page, kc, url('shared', door, '').replace(/\/$/, ''), () => a.page.goto(url('shared', door, '/alice/x')), 'alice');
      const cb = r.statuses.find((s) => new URL(s.url).pathname === '/oidc/callback');
      assert(cb && cb.status === 302, `callback answered ${cb ? cb.status : 'nothing'} (via ${r.navs.map(short).join(' -> ')})`);
      const w = whoami(r, '/alice after login');
      assert(oneHeader(w, 'X-Oidc-Username') === 'alice', 'wrong user');
      return r.navs.map(short).join(' -> ');
    }, opts(a.page, [sidecarOk('scope')]));
    for (const [p, want] of [['/bob/x', 403], ['/', 200], ['/admin/x', 200]]) {
      await check(`${L}: alice at ${p} -> ${want} with no new login (the session is shared)`, async () => {
        const r = await visit(a.page, kc, url('shared', door, p), null);
        assert(r.authz.length === 0, `went to Keycloak ${r.authz.length} time(s)`);
        if (want === 200) whoami(r, p); else assert(r.status === 403 && !parseWhoami(r.body), `status ${r.status}`);
      }, opts(a.page, [cA]));
    }
    const b = await fresh('bob');
    const cB = `${L}: bob logs in at /bob -> 200`;
    await check(cB, async () => {
      const r = await visit(b.page, kc, url('shared', door, '/bob/x'), 'bob');
      assert(oneHeader(whoami(r, '/bob'), 'X-Oidc-Username') === 'bob', 'wrong user');
    }, opts(b.page, [sidecarOk('scope')]));
    await check(`${L}: bob at /alice -> 403, at / -> 200, no new login`, async () => {
      const r1 = await visit(b.page, kc, url('shared', door, '/alice/x'), null);
      assert(r1.status === 403 && r1.authz.length === 0, `/alice: ${r1.status}, ${r1.authz.length} trip(s) to Keycloak`);
      const r2 = await visit(b.page, kc, url('shared', door, '/'), null);
      whoami(r2, '/');
      assert(r2.authz.length === 0, 'went to Keycloak');
    }, opts(b.page, [cB]));
    const cChallenge = `${L}: bob at /admin (UnauthorizedBehavior: Challenge): one trip to Keycloak without prompt, his SSO session answers (no form), then 403, no loop`;
    await check(cChallenge, async () => {
      // No user: a login form would fail the check (as traefik-oidc-auth, no prompt=login).
      const r = await visit(b.page, kc, url('shared', door, '/admin/x'), null);
      assertChallengedOnce(r);
      const again = await visit(b.page, kc, url('shared', door, '/admin/y'), null);
      assert(again.status === 403 && again.authz.length === 0, `second visit: ${again.status}, ${again.authz.length} trip(s) to Keycloak`);
      return `${r.navs.map(short).join(' -> ')} (form shown ${r.forms}x)`;
    }, opts(b.page, [cB]));
  }

  // The same blocks inline in the plugin's configuration (issue 12), the session scope of the
  // blocks above: bob, with his Keycloak SSO session, logs in at / with no form and gets the
  // block's own Headers; /admin challenges once without prompt, then 403.
  {
    const b = await as('plugin', 'bob-shared');
    const cInline = 'plugin (inline block): bob (Keycloak SSO session) at / -> no login form, whoami gets the block\'s X-Oidc-Username';
    await check(cInline, async () => {
      const r = await visit(b.page, kc, url('inline', 'plugin', '/x'), null);
      assert(r.forms === 0, `Keycloak's login form was shown ${r.forms} times`);
      const w = whoami(r, 'inline /');
      assert(oneHeader(w, 'X-Oidc-Username') === 'bob', 'wrong user');
      return r.navs.map(short).join(' -> ');
    }, opts(b.page, ['plugin (plugin) shared: bob logs in at /bob -> 200']));
    await check('plugin (inline block): bob at /admin (UnauthorizedBehavior: Challenge): one trip to Keycloak without prompt, no form, then 403, no loop', async () => {
      const r = await visit(b.page, kc, url('inline', 'plugin', '/admin/x'), null);
      assertChallengedOnce(r);
      const again = await visit(b.page, kc, url('inline', 'plugin', '/admin/y'), null);
      assert(again.status === 403 && again.authz.length === 0, `second visit: ${again.status}, ${again.authz.length} trip(s) to Keycloak`);
      return `${r.navs.map(short).join(' -> ')} (form shown ${r.forms}x)`;
    }, opts(b.page, [cInline]));
  }
  await check('scope sidecar: LogLevel: DEBUG on shared-team-a logs its decisions; shared-team-b (no LogLevel, global info) does not', async () => {
    const log = fs.readFileSync(path.join(ARTIFACTS, 'sidecar-scope.log'), 'utf8').split('\n');
    const debugA = log.filter((l) => /DEBUG/.test(l) && l.includes('shared-team-a'));
    const debugB = log.filter((l) => /DEBUG/.test(l) && l.includes('shared-team-b'));
    assert(debugA.length > 0, 'no DEBUG line names shared-team-a');
    assert(debugB.length === 0, `DEBUG lines name shared-team-b:\n${debugB.slice(0, 3).join('\n')}`);
    return `${debugA.length} DEBUG line(s) for shared-team-a, e.g. ${debugA[0].slice(0, 140)}`;
  }, { deps: [sidecarOk('scope')] });

  // The callback itself runs the assertion: 403 at /oidc/callback, the session still written.
  for (const door of DOORS) {
    const L = `${door} (${DOOR_LABEL[door]})`;
    const b = await as(door, 'bob-decide');
    await check(`${L}: decide: bob (not in team-a) logs in; the callback answers 403 itself, the session is written`, async () => {
      const r = await visit(b.page, kc, url('decide', door, '/x'), 'bob');
      const cb = r.statuses.find((s) => new URL(s.url).pathname === '/oidc/callback');
      assert(cb, `no callback seen: ${r.navs.map(short).join(' -> ')}`);
      assert(cb.status === 403, `the callback answered ${cb.status}; final ${r.status} at ${short(r.url)}`);
      const held = (await b.ctx.cookies(url('decide', door))).filter((c) => c.name.includes('.session.'));
      assert(held.length > 0, 'no session cookie after the 403 callback');
      return `callback 403; session cookies ${held.map((c) => c.name).join(', ')}`;
    }, opts(b.page, [sidecarOk('scope')]));
    const a = await as(door, 'alice-decide');
    await check(`${L}: decide: alice (team-a) -> the callback answers 302 to the original URL -> 200`, async () => {
      const r = await visit(a.page, kc, url('decide', door, '/x'), 'alice');
      const cb = r.statuses.find((s) => new URL(s.url).pathname === '/oidc/callback');
      assert(cb && cb.status === 302, `callback answered ${cb?.status}`);
      whoami(r, 'alice at decide');
    }, opts(a.page, [sidecarOk('scope')]));
  }

  // A traefik-oidc-auth error page with Go template blocks.
  for (const door of DOORS) {
    const L = `${door} (${DOOR_LABEL[door]})`;
    const b = await as(door, 'bob');
    await check(`${L}: pages: bob gets 403 rendered from ErrorPages.Unauthorized.FilePath (if/else if/with/and/not blocks)`, async () => {
      const r = await visit(b.page, kc, url('pages', door, '/x'), 'bob');
      assert(r.status === 403, `status ${r.status} at ${short(r.url)}`);
      assert(!r.body.includes('{{'), 'template actions left in the page');
      const text = (id) => b.page.locator(`#${id}`).textContent({ timeout: 2000 }).catch(() => null);
      assert((await text('status'))?.includes('403'), `#status: ${await text('status')}`);
      assert(await text('corp'), 'not our page (no #corp)');
      assert(await text('description'), '{{ with .description }} did not render');
      const primary = await b.page.locator('#primary').getAttribute('href', { timeout: 2000 }).catch(() => null);
      assert(primary && primary.endsWith('/logout'), `#primary href ${primary} (the if-branch for primaryButtonUrl)`);
      assert(await b.page.locator('#no-primary').count() === 0, 'the else-branch of primaryButtonUrl rendered too');
      assert(await b.page.locator('#secondary').count() === 0 && await text('no-secondary'), 'secondary button branches wrong (no LoginUri: expected the else if not branch)');
      return `${await text('status')}; primary -> ${primary}`;
    }, opts(b.page, [sidecarOk('pages')]));
  }

  // The internal-URL layout and private_key_jwt.
  for (const [site, what] of [['internal', `Provider.Url ${kc.urls.internal}/realms/${REALM}, discovery names ${kc.issuer}`], ['jwt', 'private_key_jwt (Provider.ClientJwtPrivateKey/Id, client-jwt at Keycloak)']]) {
    for (const door of DOORS) {
      const L = `${door} (${DOOR_LABEL[door]})`;
      const { page } = await as(door, 'alice');
      await check(`${L}: ${site}: ${what}: alice logs in`, async () => {
        const w = whoami(await visit(page, kc, url(site, door, '/x'), 'alice'), site);
        assert(oneHeader(w, 'X-Oidc-Username') === 'alice', 'wrong user');
      }, opts(page, [sidecarOk(site)]));
    }
  }
  await check('internal sidecar: one warning names both the Provider.Url and the discovered issuer', async () => {
    const log = fs.readFileSync(path.join(ARTIFACTS, 'sidecar-internal.log'), 'utf8').split('\n');
    const warns = log.filter((l) => /WARN/.test(l) && l.includes(kc.urls.internal) && l.includes(kc.urls.public));
    assert(warns.length === 1, `${warns.length} such warnings`);
    return warns[0].slice(0, 200);
  }, { deps: [sidecarOk('internal')] });
}

let crashed = false;
try {
  await main();
} catch (err) {
  crashed = true;
  line('FAIL', 'suite', err.stack || String(err));
}
console.log('');
for (const [k, v] of Object.entries(numbers)) console.log(`number: ${k} = ${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(1) : v}`);
process.exit(summarize({ results, started, artifactsDir: ARTIFACTS, crashed, label: 'keycloak e2e' }));
