// Part 2 of the inline end-to-end suite (inline.mjs): the real OP, the Rust sidecar with an
// empty `middlewares:` (every block arrives inline, issue 12), Traefik with the shim, Chromium.
//
// Two doors carry the same traefik-oidc-auth block (the Configuration example's block, with this test's OP):
//   inline-file    pasted as the plugin's config, typed YAML (file provider)
//   inline-labels  the same block label-shaped: keys lower-cased, every value a string, lists
//                  comma-joined, lists of objects as indexed lists (what docker labels give)
// Per door: anonymous navigation goes to the OP; demo/demo logs in and lands on the original URL;
// whoami gets the sidecar's identity headers; the sidecar is restarted (forgetting every inline
// block) and the next request of the logged-in user still reaches whoami without a trip to the
// OP; /logout goes through the OP and login is asked again. Two more doors carry blocks the
// sidecar refuses with 422 (a typo; a provider outside allowedProviderUrls): they answer 500,
// never whoami, and Traefik's log names the problem once. One more, inline-migration, carries
// docs/inline-blocks.md's "Moving from traefik-oidc-auth" block as written there (read from the page, with
// this test's OP), plus a templated Authorization and a static header: whoami gets the block's
// Headers with their values, and client-sent copies of them never arrive (issue 18).
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { chromium } from 'playwright-core';
import { ROOT, Stack, request, waitFor } from './stack.mjs';
import { flowYaml, labelShape } from './inline-config.mjs';
import { headerValues, loginAtOp } from './harness.mjs';

const NAV_TIMEOUT_MS = 15000;
const COOKIE_PREFIX = 'TraefikOidcSidecar';
const DOORS = ['inline-file', 'inline-labels'];

/** The traefik-oidc-auth block of docs/configuration.md's first example (middlewares.default),
 * with this test's OP, client and a group demo has. Secrets stay out of Traefik's config:
 * ${VAR} is expanded by the sidecar from its own environment. */
export function readmeBlock(issuer) {
  return {
    Provider: {
      Url: issuer,
      ClientId: 'sidecar',
      ClientSecret: '${INLINE_CLIENT_SECRET}',
    },
    Secret: '${INLINE_SESSION_SECRET}',
    Scopes: ['openid', 'profile', 'email', 'groups'],
    SessionCookie: { Secure: false }, // plain-http localhost only
    Authorization: {
      AssertClaims: [{ Name: 'groups', AnyOf: ['users', 'admins'] }],
    },
  };
}

/** Where the migration diff lives (it moved from the README to the plugin door's page). */
const MIGRATION_PAGE = path.join('docs', 'inline-blocks.md');

/**
 * The plugin configuration of docs/inline-blocks.md's "Moving from traefik-oidc-auth" diff, as a
 * user ends up with it: the lines kept or added by the diff, from `SidecarUrl` on, as YAML lines
 * (Traefik's file provider parses them, Go-template escapes included). Fails if the page no
 * longer has it.
 */
export function migrationDiffLines() {
  const md = fs.readFileSync(path.join(ROOT, MIGRATION_PAGE), 'utf8');
  const at = md.indexOf('## Moving from traefik-oidc-auth');
  if (at < 0) throw new Error(`${MIGRATION_PAGE} has no "Moving from traefik-oidc-auth" section`);
  const diff = [...md.slice(at).matchAll(/```diff\n([\s\S]*?)```/g)].map((m) => m[1]).find((d) => /SidecarUrl:/.test(d));
  if (!diff) throw new Error('the migration section has no diff with SidecarUrl');
  const lines = diff.split('\n').filter((l) => l.startsWith(' ') || l.startsWith('+')).map((l) => l.slice(1));
  const first = lines.findIndex((l) => /^\s*SidecarUrl:/.test(l));
  const indent = lines[first].search(/\S/);
  const block = lines.slice(first).filter((l) => l.trim());
  if (block.some((l) => l.search(/\S/) < indent)) throw new Error('the migration block is not one mapping');
  return block.map((l) => l.slice(indent));
}

/** Replaces the first line matching `re` in `lines` with `by`, failing when none matches. */
function swap(lines, re, by) {
  const i = lines.findIndex((l) => re.test(l));
  if (i < 0) throw new Error(`the migration block of ${MIGRATION_PAGE} has no line like ${re}`);
  lines[i] = lines[i].replace(re, by);
}

/** The migration page's block pointed at this test's sidecar and OP, with a registration token,
 * plain-http cookies, and two more Headers entries (a templated access token, a static value). */
function migrationConfig({ issuer, sidecarUrl, token }) {
  const lines = migrationDiffLines();
  swap(lines, /^SidecarUrl: .*$/, `SidecarUrl: ${JSON.stringify(sidecarUrl)}`);
  swap(lines, /(^\s+Url: ).*$/, `$1${JSON.stringify(issuer)}`);
  swap(lines, /(^\s+ClientId: ).*$/, '$1"sidecar"');
  const h = lines.findIndex((l) => /^Headers:\s*$/.test(l));
  if (h < 0) throw new Error("the migration page's block has no Headers list");
  const item = lines[h + 1].slice(0, lines[h + 1].indexOf('-'));
  lines.splice(h + 1, 0,
    `${item}- Name: "Authorization"`, `${item}  Value: "Bearer: {{\`{{ .accessToken }}\`}}"`,
    `${item}- Name: "X-Static-Header"`, `${item}  Value: "42"`);
  lines.push(`RegistrationToken: ${JSON.stringify(token)}`, 'SessionCookie:', '  Secure: false # plain-http localhost only');
  return { rawYaml: lines };
}

/** flowYaml, except for migrationConfig's YAML lines, which go in as a block under the plugin. */
function pluginYaml(v) {
  if (v && v.rawYaml) return `\n${v.rawYaml.map((l) => `          ${l}`).join('\n')}`;
  return flowYaml(v);
}

function parseWhoami(text) {
  const lines = text.replace(/\r/g, '').split('\n');
  const reqIdx = lines.findIndex((l) => /^[A-Z]+ \S+ HTTP\/\d(\.\d)?$/.test(l));
  if (reqIdx < 0 || !lines.some((l) => l.startsWith('RemoteAddr:'))) return null;
  const headers = [];
  for (const l of lines.slice(reqIdx + 1)) {
    const i = l.indexOf(':');
    if (i > 0) headers.push([l.slice(0, i), l.slice(i + 1).trim()]);
  }
  return { headers };
}

const header = (w, name) => w.headers.filter(([k]) => k.toLowerCase() === name.toLowerCase()).map(([, v]) => v);

export async function partLogin({ check, assert, ARTIFACTS, CHROMIUM }) {
  const token = crypto.randomBytes(24).toString('hex');
  const stack = new Stack({
    artifactsDir: path.join(ARTIFACTS, 'login'),
    log: (m) => console.log(`     ${m}`),
    inline: {
      doors: DOORS,
      extraDoors: ['inline-typo', 'inline-forbidden', 'inline-migration'],
      env: {
        INLINE_REGISTRATION_TOKEN: token,
        INLINE_CLIENT_SECRET: 'sidecar-secret',
        INLINE_SESSION_SECRET: crypto.randomBytes(32).toString('hex'),
        // The names the migration page's block uses.
        OIDC_CLIENT_SECRET: 'sidecar-secret',
        SESSION_SECRET: crypto.randomBytes(32).toString('hex'),
      },
      toYaml: pluginYaml,
      config: ({ issuer, sidecarUrl, door }) => {
        if (door === 'inline-migration') return migrationConfig({ issuer, sidecarUrl, token });
        const block = readmeBlock(issuer);
        // Blocks the sidecar refuses: a typo, and an identity provider outside its
        // allowedProviderUrls.
        if (door === 'inline-typo') block.SessionCookie = { Secure: false, SameSit: 'lax' };
        if (door === 'inline-forbidden') block.Provider.Url = 'https://evil.example.com/realms/main';
        const own = { sidecarUrl, timeout: '5s', registrationToken: token };
        return door === 'inline-labels' ? { ...labelShape(own), ...labelShape(block) } : { ...own, ...block };
      },
    },
  });
  let browser;
  try {
    const okStack = await check('login: OP, whoami, sidecar (empty middlewares:, inline registration token) and Traefik with two inline doors ready', async () => {
      await stack.start();
      const cfg = fs.readFileSync(path.join(ARTIFACTS, 'login', 'sidecar.yaml'), 'utf8');
      assert(/^middlewares: \{\}$/m.test(cfg), 'the sidecar has middlewares of its own');
      return `sidecar ${stack.binaries.sidecar}`;
    });
    if (!okStack) return;
    const { issuer } = stack.urls;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
      timeout: 30000,
    });

    for (const [door, problem] of [['inline-typo', /SessionCookie\.samesit.*SameSite/i], ['inline-forbidden', /Provider\.Url/]]) {
      await check(`${door}: a block the sidecar refuses (422) answers 500, never whoami, and Traefik logs its problem once`, async () => {
        const statuses = [];
        for (let i = 0; i < 3; i++) {
          const r = await request({ port: stack.ports.traefik, path: '/private/page', headers: { Host: `${door}.localhost`, Accept: 'text/html' } });
          statuses.push(r.status);
          assert(!r.body.includes('RemoteAddr'), 'whoami answered');
        }
        assert(statuses.every((s) => s === 500), `statuses ${statuses.join(', ')}`);
        // The shim logs the refusal when its registration attempt ends, which can be just after
        // the 500 reached us: wait for the line, then make sure it is the only one.
        const logged = () => fs.readFileSync(path.join(ARTIFACTS, 'login', 'traefik.log'), 'utf8').split('\n')
          .filter((l) => l.includes(`traefik-oidc-sidecar[oidc-${door}@file]`) && l.includes('422'));
        await waitFor(`${door}: Traefik's log names the 422`, async () => logged().length > 0, { timeoutMs: 5000 }).catch(() => {});
        const lines = logged();
        assert(lines.length === 1, `expected one 422 log line, got ${lines.length}:\n${lines.join('\n')}`);
        assert(problem.test(lines[0]), `the log line does not name the problem: ${lines[0]}`);
        return lines[0].slice(lines[0].indexOf('(422)') + 7).slice(0, 200);
      });
    }

    await migrationChecks({ check, assert, stack, browser, issuer });

    for (const door of DOORS) {
      const base = stack.urls[door];
      const protectedUrl = `${base}/private/page?e2e=1`;
      const ctx = await browser.newContext();
      ctx.setDefaultNavigationTimeout(NAV_TIMEOUT_MS);
      ctx.setDefaultTimeout(NAV_TIMEOUT_MS);
      const page = await ctx.newPage();
      let toOp = 0;
      page.on('request', (r) => { if (r.isNavigationRequest() && r.url().startsWith(issuer)) toOp++; });

      const okLogin = await check(`${door}: anonymous → OP login, demo/demo → back at the original URL with X-Forwarded-User/Email/Groups`, async () => {
        const w = await loginAtOp(page, issuer, protectedUrl);
        assert(header(w, 'X-Forwarded-User').join('|') === 'demo', `X-Forwarded-User: ${header(w, 'X-Forwarded-User')}`);
        assert(header(w, 'X-Forwarded-Email').join('|') === 'demo@example.test', `X-Forwarded-Email: ${header(w, 'X-Forwarded-Email')}`);
        assert(header(w, 'X-Forwarded-Groups').join('|') === 'users', `X-Forwarded-Groups: ${header(w, 'X-Forwarded-Groups')}`);
        const leaked = header(w, 'Cookie').join(';').split(';').map((c) => c.trim()).filter((c) => c.startsWith(COOKIE_PREFIX));
        assert(leaked.length === 0, `session cookies reached whoami: ${leaked.join(', ')}`);
      });
      if (!okLogin) { await ctx.close(); continue; }

      await check(`${door}: sidecar restarted (inline blocks forgotten) between two requests → still logged in, no trip to the OP`, async () => {
        const before = toOp;
        const logFile = path.join(ARTIFACTS, 'login', 'sidecar.log');
        const registrations = () => (fs.readFileSync(logFile, 'utf8').match(/inline block registered/g) || []).length;
        const regBefore = registrations();
        await stack.restartSidecar();
        await page.reload();
        const w = parseWhoami(await page.evaluate(() => document.body.innerText));
        assert(w, `after the restart: not whoami's page but ${page.url()}`);
        assert(toOp === before, 'the request after the restart went to the OP');
        assert(header(w, 'X-Forwarded-User').join('|') === 'demo', `X-Forwarded-User: ${header(w, 'X-Forwarded-User')}`);
        assert(registrations() === regBefore + 1, `registrations in the sidecar log: ${regBefore} before the restart, ${registrations()} after`);
        return 'the shim re-registered the block once';
      });

      await check(`${door}: /logout → OP end_session → login asked again`, async () => {
        // The restarted sidecar loads the provider's discovery in the background after the
        // re-registration (~150 ms here); a /logout before that ends only the local session
        // (it redirects to / without the OP's end_session). A user's next click comes later.
        await new Promise((r) => setTimeout(r, 1500));
        const ends = [];
        const onReq = (r) => { if (r.isNavigationRequest() && r.url().startsWith(issuer) && r.url().includes('/session/end')) ends.push(r.url()); };
        page.on('request', onReq);
        await page.goto(`${base}/logout`);
        await page.waitForURL((u) => u.href.startsWith(issuer), { timeout: NAV_TIMEOUT_MS }).catch(() => {});
        page.off('request', onReq);
        assert(ends.length > 0, `/logout did not go to the OP's end_session: ${page.url()}`);
        const yes = page.getByRole('button', { name: /yes, sign me out/i });
        await yes.waitFor({ timeout: NAV_TIMEOUT_MS });
        await yes.click();
        await page.waitForLoadState('load').catch(() => {});
        const held = (await ctx.cookies(base)).filter((c) => c.name.startsWith(`${COOKIE_PREFIX}.session`));
        assert(held.length === 0, `session cookies after logout: ${held.map((c) => c.name).join(', ')}`);
        await page.goto(protectedUrl);
        await page.waitForURL((u) => u.href.startsWith(issuer), { timeout: NAV_TIMEOUT_MS }).catch(() => {});
        assert(page.url().startsWith(issuer), `after logout: ${page.url()}`);
      });
      await ctx.close();
    }
  } finally {
    await browser?.close().catch(() => {});
    await stack.stop().catch(() => {});
  }
}

/** The migration page's block through the real Traefik (issue 18): login, then what whoami
 * receives with and without client-sent copies of the block's headers. */
async function migrationChecks({ check, assert, stack, browser, issuer }) {
  const door = 'inline-migration';
  const base = stack.urls[door];
  const protectedUrl = `${base}/private/page?e2e=migration`;
  const ctx = await browser.newContext();
  ctx.setDefaultNavigationTimeout(NAV_TIMEOUT_MS);
  ctx.setDefaultTimeout(NAV_TIMEOUT_MS);
  try {
    const page = await ctx.newPage();
    const okLogin = await check(`${door}: the migration page's block pasted → demo/demo logs in; whoami gets X-Oidc-Username, the templated Authorization and X-Static-Header`, async () => {
      const w = await loginAtOp(page, issuer, protectedUrl);
      assert(headerValues(w, 'X-Oidc-Username').join('|') === 'demo', `X-Oidc-Username: ${JSON.stringify(headerValues(w, 'X-Oidc-Username'))}`);
      assert(headerValues(w, 'X-Static-Header').join('|') === '42', `X-Static-Header: ${JSON.stringify(headerValues(w, 'X-Static-Header'))}`);
      const authz = headerValues(w, 'Authorization');
      assert(authz.length === 1 && /^Bearer: \S{16,}$/.test(authz[0]), `Authorization: ${JSON.stringify(authz)}`);
      return `Authorization: Bearer: ${authz[0].slice(8, 14)}…`;
    });
    if (!okLogin) return;

    await check(`${door}: client-sent X-Oidc-Username / Authorization / X-Static-Header / X-Forwarded-User are not what whoami receives`, async () => {
      const cookie = (await ctx.cookies(base)).map((c) => `${c.name}=${c.value}`).join('; ');
      const r = await request({
        port: stack.ports.traefik,
        path: '/private/page?e2e=spoof',
        headers: {
          Host: `${door}.localhost`,
          Cookie: cookie,
          'X-Oidc-Username': 'mallory',
          Authorization: 'Bearer: forged',
          'X-Static-Header': '666',
          'X-Forwarded-User': 'mallory',
        },
      });
      const w = r.status === 200 ? parseWhoami(r.body) : null;
      assert(w, `expected whoami, got ${r.status}: ${r.body.slice(0, 200)}`);
      assert(headerValues(w, 'X-Oidc-Username').join('|') === 'demo', `X-Oidc-Username: ${JSON.stringify(headerValues(w, 'X-Oidc-Username'))}`);
      assert(headerValues(w, 'X-Static-Header').join('|') === '42', `X-Static-Header: ${JSON.stringify(headerValues(w, 'X-Static-Header'))}`);
      const authz = headerValues(w, 'Authorization');
      assert(authz.length === 1 && authz[0] !== 'Bearer: forged' && authz[0].startsWith('Bearer: '), `Authorization: ${JSON.stringify(authz)}`);
      assert(!r.body.includes('mallory') && !r.body.includes('666'), `a spoofed value reached whoami:\n${r.body}`);
    });
  } finally {
    await ctx.close();
  }
}
