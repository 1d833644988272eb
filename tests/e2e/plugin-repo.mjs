// The plugin's own repository (scripts/plugin-repo.sh) in a real Traefik, as a user gets it:
// the tree is laid out as a local plugin under its catalog module name, the middleware is
// configured with the manifest's testData (only sidecarUrl changes, to the real sidecar), and
// requests through the router must get the sidecar's verdict.
//
//   node tests/e2e/plugin-repo.mjs TREE_DIR   (MODULE: the module line of TREE_DIR/go.mod)
//
// The stack (the real OP, the sidecar, whoami, Traefik) is tests/e2e/stack.mjs's. Artifacts go
// to $E2E_ARTIFACTS/plugin-repo (default tests/e2e/artifacts/plugin-repo). Exits non-zero on any
// failed check.
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, PLUGIN_NAME, Stack, request, traefikInlineDynamicConfig } from './stack.mjs';

const DOOR = 'catalog';
/** Paths the sidecar lets through without a session: where header stripping is observable. */
const PUBLIC_PREFIX = '/public';
/** A name a client must never be able to claim. */
const SPOOFED_USER = 'mallory-spoofed';

const tree = process.argv[2];
if (!tree) {
  console.error('usage: node tests/e2e/plugin-repo.mjs TREE_DIR');
  process.exit(2);
}
const goMod = fs.readFileSync(path.join(tree, 'go.mod'), 'utf8');
const module = goMod.match(/^module\s+(\S+)\s*$/m)?.[1];
if (!module) throw new Error(`${tree}/go.mod has no module line`);

/**
 * The manifest's testData as YAML lines (its own indentation removed), with the sidecarUrl value
 * replaced: a YAML reader is not among Node's built-ins, and the block is copied as written so
 * that what Traefik decodes is what the catalog decodes.
 */
function testDataWith(manifestText, sidecarUrl) {
  const lines = manifestText.split('\n');
  const start = lines.findIndex((l) => /^testData:\s*$/.test(l));
  if (start < 0) throw new Error('.traefik.yml has no block testData');
  const block = [];
  for (const l of lines.slice(start + 1)) {
    if (l.trim() !== '' && !/^\s/.test(l)) break; // the next top-level key
    if (l.trim() !== '') block.push(l);
  }
  const indent = Math.min(...block.map((l) => l.match(/^ */)[0].length));
  const out = block.map((l) => l.slice(indent));
  const urls = out.filter((l) => /^sidecarUrl:/i.test(l));
  if (urls.length !== 1) throw new Error(`testData has ${urls.length} top-level sidecarUrl keys, want 1`);
  return out.map((l) => (/^sidecarUrl:/i.test(l) ? `sidecarUrl: ${JSON.stringify(sidecarUrl)}` : l));
}

const manifest = fs.readFileSync(path.join(tree, '.traefik.yml'), 'utf8');
const artifactsDir = path.join(process.env.E2E_ARTIFACTS || path.join(ROOT, 'tests', 'e2e', 'artifacts'), 'plugin-repo');
fs.rmSync(artifactsDir, { recursive: true, force: true });

let failed = 0;
let passed = 0;
function check(name, cond, detail = '') {
  if (cond) {
    passed++;
    console.log(`ok    ${name}`);
  } else {
    failed++;
    console.log(`FAIL  ${name}${detail ? `: ${detail}` : ''}`);
  }
}

const stack = new Stack({
  artifactsDir,
  log: (m) => console.log(`  ${m}`),
  traefikLogLevel: 'INFO',
  doors: [DOOR],
  plugin: { module, from: tree },
  bypassRule: `PathPrefix(\`${PUBLIC_PREFIX}\`)`,
  // One router whose plugin middleware is testData (stack.mjs writes the routers and services).
  dynamicConfig: ({ sidecarUrl, whoamiPort }) => traefikInlineDynamicConfig({
    whoamiPort,
    doors: [{ name: DOOR, config: testDataWith(manifest, sidecarUrl) }],
    toYaml: (lines) => `\n${lines.map((l) => `          ${l}`).join('\n')}`,
  }),
});

try {
  console.log(`plugin repository ${tree} as local plugin ${module}`);
  await stack.start();
  const port = stack.ports.traefik;
  const host = `${DOOR}.localhost`;

  // The router's middleware is the plugin from the tree, loaded under the catalog module name.
  const mws = JSON.parse((await request({ port, path: '/api/http/middlewares', headers: { Host: 'traefik.localhost' } })).body);
  const mw = mws.find((m) => m.name === `oidc-${DOOR}@file`);
  check('Traefik runs the middleware as the plugin from the tree', mw?.type === PLUGIN_NAME && mw?.status === 'enabled', JSON.stringify(mw));

  // A browser navigation without a session: the sidecar sends it to the IdP's login.
  const nav = await request({ port, path: '/some/page', headers: { Host: host, Accept: 'text/html', 'Sec-Fetch-Mode': 'navigate' } });
  const location = nav.headers.location || '';
  check('navigation without a session: 302 to the IdP login (the sidecar\'s verdict)',
    nav.status === 302 && location.startsWith(`${stack.issuer}/`) && location.includes('client_id='),
    `${nav.status} ${location}`);

  // Not a navigation (an API call): 401, never the upstream.
  const api = await request({ port, path: '/api/data', headers: { Host: host, Accept: 'application/json' } });
  check('API call without a session: 401 from the sidecar', api.status === 401 && !api.body.includes('Hostname:'), `${api.status} ${api.body.slice(0, 200)}`);

  // A spoofed identity on a path the sidecar lets through: the request reaches whoami, the
  // client's identity headers do not, in any spelling.
  const pub = await request({
    port,
    path: `${PUBLIC_PREFIX}/hello`,
    headers: { Host: host, 'X-Forwarded-User': SPOOFED_USER, 'X-Forwarded-Email': `${SPOOFED_USER}@example.com`, 'X.Forwarded.Groups': 'admins' },
  });
  check('bypassed path reaches whoami through the plugin', pub.status === 200 && pub.body.includes(`GET ${PUBLIC_PREFIX}/hello`), `${pub.status} ${pub.body.slice(0, 200)}`);
  check('spoofed X-Forwarded-User / -Email / X.Forwarded.Groups are stripped', !pub.body.includes(SPOOFED_USER) && !/forwarded.groups:\s*admins/i.test(pub.body), pub.body);

  // Sidecar down: fail closed.
  await stack.stopSidecar();
  const down = await request({ port, path: `${PUBLIC_PREFIX}/hello`, headers: { Host: host } });
  check('sidecar down: 503, not the upstream', down.status === 503 && !down.body.includes('Hostname:'), `${down.status}`);
} catch (e) {
  failed++;
  console.log(`FAIL  ${e.stack || e}`);
} finally {
  await stack.stop();
}
console.log(`\nplugin-repo: ${passed} passed, ${failed} failed (logs: ${artifactsDir})`);
process.exit(failed ? 1 : 0);
