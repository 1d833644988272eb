// What the browser suites share (run.mjs against the test OP, keycloak.mjs against Keycloak):
// one PASS/FAIL/SKIP line per check with dependencies between checks and a screenshot of the page
// of each failed browser check; reading whoami's text answer; a navigation that reports the
// document's status even when Chromium refuses to render it.
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './stack.mjs';

const CHECK_TIMEOUT_MS = 30000;
const NAV_TIMEOUT_MS = 15000;

export function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function slug(name) {
  return name.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase().slice(0, 80);
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms); }),
  ]);
}

/**
 * The check runner of one suite. `check(name, fn, { deps, page, timeoutMs })` runs fn, prints
 * PASS (with fn's string result), FAIL (with the error; the page, or what a function `page`
 * returns, is screenshotted into artifactsDir) or SKIP (a check named in `deps` did not pass).
 */
export function createReporter({ artifactsDir, started = Date.now() }) {
  const results = [];
  const blocked = new Set(); // names of failed checks, for dependent checks to skip on

  function line(status, name, detail) {
    const secs = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
    console.log(`${status.padEnd(4)} [${secs}s] ${name}${detail ? ` -- ${detail}` : ''}`);
  }

  async function check(name, fn, { deps = [], page, timeoutMs = CHECK_TIMEOUT_MS } = {}) {
    const missing = deps.filter((d) => blocked.has(d) || !results.some((r) => r.name === d && r.status === 'PASS'));
    if (missing.length) {
      results.push({ name, status: 'SKIP' });
      blocked.add(name);
      line('SKIP', name, `needs: ${missing.join('; ')}`);
      return false;
    }
    try {
      const detail = await withTimeout(Promise.resolve().then(fn), timeoutMs, name);
      results.push({ name, status: 'PASS', detail });
      line('PASS', name, typeof detail === 'string' ? detail : '');
      return true;
    } catch (err) {
      results.push({ name, status: 'FAIL', error: err });
      blocked.add(name);
      line('FAIL', name, err.message.split('\n')[0]);
      const more = err.message.split('\n').slice(1).join('\n');
      if (more) console.log(more.replace(/^/gm, '       '));
      const pg = typeof page === 'function' ? page() : page;
      if (pg && !pg.isClosed()) {
        const base = path.join(artifactsDir, `fail-${slug(name)}`);
        await pg.screenshot({ path: `${base}.png`, fullPage: true, timeout: 5000 }).catch(() => {});
        await pg.content().then((html) => fs.writeFileSync(`${base}.html`, `<!-- ${pg.url()} -->\n${html}`)).catch(() => {});
        console.log(`       page: ${pg.url()} (screenshot: ${path.relative(ROOT, base)}.png)`);
      }
      return false;
    }
  }

  return { check, results, line };
}

// ---------------------------------------------------------------------------------------------
// whoami's answer: "Name: value" lines after the request line.

/** Parses whoami's text answer; null if the text is not a whoami answer. */
export function parseWhoami(text) {
  const lines = text.replace(/\r/g, '').split('\n');
  const reqIdx = lines.findIndex((l) => /^[A-Z]+ \S+ HTTP\/\d(\.\d)?$/.test(l));
  if (reqIdx < 0 || !lines.some((l) => l.startsWith('RemoteAddr:'))) return null;
  const headers = [];
  for (const l of lines.slice(reqIdx + 1)) {
    const i = l.indexOf(':');
    if (i > 0) headers.push([l.slice(0, i), l.slice(i + 1).trim()]);
  }
  return { requestLine: lines[reqIdx], headers, text };
}

/** Header values whose name reads the same as `name` with _ . and - alike, any case. */
export function headerValues(w, name) {
  const norm = (s) => s.toLowerCase().replace(/[_.]/g, '-');
  return w.headers.filter(([k]) => norm(k) === norm(name)).map(([, v]) => v);
}

export function cookieNames(w) {
  return headerValues(w, 'Cookie').flatMap((v) => v.split(';')).map((c) => c.trim().split('=')[0]).filter(Boolean);
}

export function looksLikeWhoami(text) {
  return parseWhoami(text) !== null;
}

export async function pageText(page) {
  return page.evaluate(() => document.body ? document.body.innerText : '');
}

/** Navigates and returns the document's status and body. Chromium turns an error status with an
 * empty body into net::ERR_HTTP_RESPONSE_CODE_FAILURE, which page.goto() throws; the response
 * itself is still what we want to see. */
export async function gotoStatus(page, url) {
  const respP = page.waitForResponse((r) => r.request().isNavigationRequest() && r.url() === url, { timeout: NAV_TIMEOUT_MS });
  const navError = await page.goto(url).then(() => null, (e) => e);
  const res = await respP.catch((e) => { throw navError || e; });
  const body = await res.text().catch(() => '');
  return { status: res.status(), body, navError };
}

/** Anonymous navigation to `protectedUrl` → the test OP's login form (tests/op) → `user` logs in
 * → back at `protectedUrl`; returns whoami's answer there (parseWhoami). */
export async function loginAtOp(page, issuer, protectedUrl, user = 'demo', password = user) {
  await page.goto(protectedUrl);
  await page.waitForURL((u) => u.href.startsWith(issuer), { timeout: NAV_TIMEOUT_MS }).catch(() => {});
  assert(page.url().startsWith(issuer), `expected the OP, got ${page.url()}`);
  await page.fill('input[name="login"]', user);
  await page.fill('input[name="password"]', password);
  await Promise.all([
    page.waitForURL((u) => u.href === protectedUrl, { timeout: NAV_TIMEOUT_MS }).catch(() => {}),
    page.click('button[type="submit"]'),
  ]);
  const w = parseWhoami(await page.evaluate(() => document.body.innerText));
  assert(w && page.url() === protectedUrl, `not whoami at the original URL: ${page.url()}`);
  return w;
}

/** Prints the summary lines and returns the process exit status (non-zero on any failure/skip). */
export function summarize({ results, started, artifactsDir, crashed = false, label = 'e2e' }) {
  const count = (s) => results.filter((r) => r.status === s).length;
  const failed = count('FAIL') + (crashed ? 1 : 0);
  console.log('');
  console.log(`artifacts: ${path.relative(process.cwd(), artifactsDir) || artifactsDir} (process logs, generated configs, failure screenshots)`);
  console.log(`total time: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`${label}: ${count('PASS')} passed, ${failed} failed, ${count('SKIP')} skipped`);
  return failed || count('SKIP') ? 1 : 0;
}
