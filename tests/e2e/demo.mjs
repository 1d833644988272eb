// The demo: the same stack as the end-to-end suite (stack.mjs), on a fixed port, left running
// until Ctrl-C.
//
//   node tests/e2e/demo.mjs     (scripts/demo.sh installs and builds what it needs, then runs this)
//
// Environment: DEMO_PORT (8080), SIDECAR_BIN, TRAEFIK_BIN, WHOAMI_BIN (see stack.mjs),
// DEMO_LOG_LEVEL (sidecar log level, info), DEMO_LOGS (where process logs go; a new temp dir).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Stack } from './stack.mjs';

const port = Number(process.env.DEMO_PORT || 8080);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`demo: DEMO_PORT=${process.env.DEMO_PORT} is not a port number`);
  process.exit(2);
}
const logs = process.env.DEMO_LOGS || fs.mkdtempSync(path.join(os.tmpdir(), 'traefik-oidc-sidecar-demo-'));
const stack = new Stack({
  artifactsDir: logs,
  traefikPort: port,
  log: (m) => console.log(`  ${m}`),
  logLevel: process.env.DEMO_LOG_LEVEL || 'info',
  traefikLogLevel: 'INFO',
});

let stopping = false;
async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  console.log('\nStopping Traefik, the sidecar, whoami and the OP...');
  await stack.stop().catch((e) => console.error(e.message));
  console.log(`Stopped. Logs kept in ${logs}`);
  process.exit(code);
}
process.on('SIGINT', () => shutdown(0));
process.on('SIGTERM', () => shutdown(0));

console.log(`Starting the demo (logs in ${logs})...`);
try {
  await stack.start();
} catch (err) {
  console.error(`\ndemo: could not start: ${err.message}`);
  await shutdown(1);
}

const { fa, plugin, issuer } = stack.urls;
console.log(`
  traefik-oidc-sidecar demo is running.

  Open either door in a browser on this machine (*.localhost resolves to 127.0.0.1 in
  Chromium and Firefox; for curl use --resolve or a Host header):

    Traefik forwardAuth  -> sidecar:  ${fa}/
    Traefik plugin (shim) -> sidecar: ${plugin}/

  Sign in at the demo OpenID Provider (${issuer}) with:
    demo  / demo    (groups: users)
    alice / alice   (groups: admins, users)
    bob   / bob     (groups: guests)

  whoami then shows what reached the application: X-Forwarded-User/Email/Groups, and a
  Cookie header without the sidecar's session cookies. Sign out at ${fa}/logout
  (or ${plugin}/logout).

  Logs: ${logs}/{op,sidecar,traefik,whoami}.log
  Press Ctrl-C to stop everything.
`);

// A piece that dies takes the demo down instead of leaving it half-working.
for (const [name, proc] of Object.entries(stack.procs)) {
  proc.exitPromise.then((info) => {
    if (stopping) return;
    console.error(`\ndemo: ${name} exited unexpectedly (${JSON.stringify(info)}); last log lines:\n${proc.tail(15)}`);
    shutdown(1);
  });
}
