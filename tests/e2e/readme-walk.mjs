// The README's "Protect your app with Keycloak" section, walked as a reader would (issue 20):
// the sidecar file and the forwardAuth block are copied from the README itself, and changed only
// where the page names things that do not exist on a test machine (each change below says why,
// and must match the README exactly once, so a README edit that breaks the walk fails here
// instead of silently testing something else). keycloak.mjs starts them against the suite's
// Keycloak realm and drives Chromium through a login and a logout.
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './stack.mjs';

export const README = path.join(ROOT, 'README.md');
export const SECTION = '## Protect your app with Keycloak';
/** The host the walk serves the README's router on (a *.localhost name resolves to loopback). */
export const WALK_HOST = 'app.readme.localhost';

/** The fenced blocks `yaml <tag>` of the README's Keycloak section, in order. */
export function sectionBlocks(readmeText, tag) {
  const start = readmeText.indexOf(`\n${SECTION}\n`);
  if (start < 0) throw new Error(`README.md has no "${SECTION}" section`);
  const rest = readmeText.slice(start + SECTION.length + 2);
  const end = rest.search(/\n## /);
  const section = end < 0 ? rest : rest.slice(0, end);
  const re = new RegExp('^```yaml ' + tag + '\\n([\\s\\S]*?)^```$', 'gm');
  return [...section.matchAll(re)].map((m) => m[1]);
}

/** Applies `[from, to, why]` changes, each of which must match exactly once. */
function substitute(text, changes, what) {
  let out = text;
  for (const [from, to, why] of changes) {
    const n = out.split(from).length - 1;
    if (n !== 1) throw new Error(`README ${what}: expected "${from}" once (${why}), found it ${n} times`);
    out = out.replace(from, to);
  }
  return out;
}

/**
 * The README's sidecar file and Traefik dynamic configuration for this machine.
 * @param {object} o
 * @param {string} o.issuer      the suite realm's issuer (Keycloak on loopback)
 * @param {string} o.clientId    the suite realm's confidential client
 * @param {number} o.sidecarPort
 * @param {number} o.metricsPort
 * @param {number} o.whoamiPort
 */
export function walkConfigs({ issuer, clientId, sidecarPort, metricsPort, whoamiPort }) {
  const readme = fs.readFileSync(README, 'utf8');
  const [sidecar] = sectionBlocks(readme, 'sidecar');
  const [dynamic] = sectionBlocks(readme, 'traefik-dynamic');
  if (!sidecar || !dynamic) throw new Error('README Keycloak section: a `yaml sidecar` or `yaml traefik-dynamic` block is missing');
  const sidecarYaml = substitute(sidecar, [
    ['listen: 0.0.0.0:4181', `listen: 127.0.0.1:${sidecarPort}\nmetricsListen: 127.0.0.1:${metricsPort}`, 'free loopback ports on a shared test machine'],
    ['trustedProxies: [172.16.0.0/12]', 'trustedProxies: [127.0.0.0/8]', 'Traefik reaches the sidecar over loopback here'],
    ['https://keycloak.example.com/realms/main', issuer, "the suite's Keycloak and realm"],
    ['ClientId: traefik', `ClientId: ${clientId}`, "the realm's confidential client"],
  ], 'sidecar file');
  const dynamicYaml = substitute(dynamic, [
    ['http://traefik-oidc-sidecar:4181/auth/default', `http://127.0.0.1:${sidecarPort}/auth/default`, 'the sidecar on loopback'],
    ['Host(`app.example.com`)', `Host(\`${WALK_HOST}\`)`, 'a host name that resolves here'],
    ['http://app:80', `http://127.0.0.1:${whoamiPort}`, 'the suite\'s whoami stands for the app'],
  ], 'forwardAuth block');
  return { sidecarYaml, dynamicYaml };
}

/** A minimal static configuration (the README's section shows none): one entry point that
 * believes no client's X-Forwarded-*, as docs/forwardauth.md asks, and the dynamic file. */
export function walkStaticConfig({ traefikPort, dynamicFile }) {
  return `entryPoints:
  web:
    address: 127.0.0.1:${traefikPort}
    http:
      underscoreHeadersStrategy: delete
providers:
  file:
    filename: ${JSON.stringify(dynamicFile)}
global:
  checkNewVersion: false
  sendAnonymousUsage: false
log:
  level: INFO
  noColor: true
`;
}
