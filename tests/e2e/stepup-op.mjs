// Step-up (issue 21 §3) in the oidc-provider suite: run.mjs calls stepUpOpChecks() with its
// Chromium and reporter. A stack of its own (the OP, whoami, a sidecar with the middlewares
// `plain` and `strict` of one scope, a Traefik with both doors) so the suite's own sidecar and
// its single `default` middleware stay as they are.
//
// The OP (tests/op/op.mjs) records the acr a login form names in an extra `acr` field, and asks
// for a login again when `acr_values` name a value its session's acr is not. Per door: demo logs
// in at / (no acr); /strict sends the browser to the OP with acr_values=mfa; the login form
// answered with acr `pwd` comes back to a 403 (no second trip); a login answered with `mfa`
// (a fresh browser) passes /strict and /.
import crypto from 'node:crypto';
import path from 'node:path';
import { Stack } from './stack.mjs';
import { assert, parseWhoami } from './harness.mjs';
import { follow, stepUpDynamicYaml, stepUpSidecarYaml, submit } from './keycloak-stepup.mjs';

const DOORS = ['stepup-fa', 'stepup-plugin'];

/** follow() through the OP: on its login form, logs in as `user` naming `acr` (a hidden field the
 * test OP reads), at most twice. Adds the trips to the OP's authorization endpoint. */
async function drive(page, issuer, url, { user, acr } = {}) {
  let forms = 0;
  const r = await follow(page, url, async (p) => {
    if (!p.url().startsWith(issuer) || await p.locator('input[name="login"]').count().catch(() => 0) === 0) return false;
    assert(user, `the OP asked for a login at ${p.url()}`);
    assert(forms < 2, 'the OP showed its login form a third time: a loop');
    forms++;
    await p.fill('input[name="login"]', user);
    await p.fill('input[name="password"]', user);
    await p.evaluate((a) => {
      const i = document.createElement('input');
      Object.assign(i, { type: 'hidden', name: 'acr', value: a });
      document.querySelector('form').appendChild(i);
    }, acr);
    await submit(p, 'button[type="submit"]');
    return true;
  });
  return { ...r, forms, authz: r.navs.filter((u) => u.startsWith(`${issuer}/auth?`)) };
}

/** The step-up checks against oidc-provider (see the file's comment). */
export async function stepUpOpChecks({ browser, check, artifacts }) {
  const stack = new Stack({
    artifactsDir: path.join(artifacts, 'stepup'),
    doors: DOORS,
    dynamicConfig: ({ sidecarUrl, whoamiPort }) => stepUpDynamicYaml({ doors: DOORS, hostOf: (d) => `${d}.localhost`, names: ['plain', 'strict'], sidecarUrl, whoamiPort }),
    traefikLogLevel: 'INFO',
  });
  const secret = crypto.randomBytes(32).toString('hex');
  // The suite's single-middleware sidecar config is not this one's.
  stack.startSidecar = (bin) => Stack.prototype.startSidecar.call(stack, bin, {
    configText: stepUpSidecarYaml({
      port: stack.ports.sidecar, metricsPort: stack.ports.metrics, issuer: stack.issuer, clientId: 'sidecar', clientSecret: 'sidecar-secret',
      secret, prefix: 'OpStepUp', middlewares: { plain: '', strict: '    StepUp:\n      AcrValues: [mfa]\n' },
    }),
  });
  const cUp = 'step-up (oidc-provider): its OP, sidecar (plain, strict: AcrValues [mfa]) and Traefik (both doors)';
  try {
    const up = await check(cUp, () => stack.start().then(() => `doors ${DOORS.map((d) => stack.urls[d]).join(', ')}`), { timeoutMs: 90000 });
    if (!up) return;
    const { issuer } = stack.urls;
    for (const door of DOORS) {
      const base = stack.urls[door];
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      await check(`step-up ${door}: demo logs in at /; /strict goes to the OP with acr_values=mfa; answered with acr pwd, 403 and no second trip`, async () => {
        const home = await drive(page, issuer, `${base}/home`, { user: 'demo', acr: 'pwd' });
        assert(home.status === 200 && parseWhoami(home.body), `/home: ${home.status}`);
        const r = await drive(page, issuer, `${base}/strict/x`, { user: 'demo', acr: 'pwd' });
        assert(r.authz.length === 1 && new URL(r.authz[0]).searchParams.get('acr_values') === 'mfa', `trips: ${r.authz.join(' ')}`);
        assert(r.forms === 1, `login forms: ${r.forms}`);
        assert(r.status === 403 && !parseWhoami(r.body), `ended with ${r.status} at ${r.url}`);
        const again = await drive(page, issuer, `${base}/strict/y`);
        assert(again.status === 403 && again.authz.length === 0, `again: ${again.status}, ${again.authz.length} trips`);
        return r.navs.map((u) => new URL(u).pathname).join(' -> ');
      }, { deps: [cUp], page, timeoutMs: 60000 });
      await ctx.close().catch(() => {});
      const ctx2 = await browser.newContext();
      const page2 = await ctx2.newPage();
      await check(`step-up ${door}: demo logs in at /, steps up at /strict with acr mfa; the session then serves /strict and /`, async () => {
        const home = await drive(page2, issuer, `${base}/home`, { user: 'demo', acr: 'pwd' });
        assert(home.status === 200, `/home: ${home.status}`);
        const r = await drive(page2, issuer, `${base}/strict/x`, { user: 'demo', acr: 'mfa' });
        assert(r.status === 200 && parseWhoami(r.body), `ended with ${r.status} at ${r.url}`);
        for (const p of ['/strict/again', '/again']) {
          const x = await drive(page2, issuer, `${base}${p}`);
          assert(x.status === 200 && x.authz.length === 0, `${p}: ${x.status}, ${x.authz.length} trips`);
        }
        const f = await page2.evaluate(async () => (await fetch('/strict/api', { headers: { Accept: 'application/json' } })).status);
        assert(f === 200, `fetch /strict/api: ${f}`);
      }, { deps: [cUp], page: page2, timeoutMs: 60000 });
      await ctx2.close().catch(() => {});
    }
  } finally {
    await stack.stop().catch(() => {});
  }
}
