// The whole stack on loopback, shared by the end-to-end suite (run.mjs) and the demo (demo.mjs):
//
//   browser ──> Traefik entry point 127.0.0.1:<traefik>
//                 Host(fa.localhost)      forwardAuth ──> sidecar /auth/default ──┐
//                 Host(plugin.localhost)  our Yaegi plugin ──> sidecar ──────────┤──> whoami
//                 Host(traefik.localhost) Traefik's API (read-only, for readiness checks)
//   sidecar ──> the OpenID Provider (tests/op/op.mjs) on 127.0.0.1:<op>
//
// validateExampleConfig() also starts Traefik on examples/traefik/ (rewritten only for local
// addresses) to prove the published configuration loads with the plugin from this tree.
//
// Every process is a child in its own process group. Their stdout/stderr go to
// <artifactsDir>/<name>.log, their pids to <artifactsDir>/pids (so the calling shell script can
// clean up even if Node dies hard), and stop() or the process exit kills them all.
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PLUGIN_MODULE = 'github.com/traefik-oidc-sidecar/traefik-oidc-sidecar';
/** Name of the local plugin in Traefik's static config (experimental.localPlugins.<name>). */
export const PLUGIN_NAME = 'oidcsidecar';
export const CLIENT_ID = 'sidecar';
export const CLIENT_SECRET = 'sidecar-secret';
/** Headers forwardAuth copies from a 2xx sidecar answer onto the upstream request. Cookie must be
 * listed: the sidecar answers with the request's cookies minus its own session cookies, and only
 * a listed name makes Traefik replace the browser's header with the sidecar's. */
export const AUTH_RESPONSE_HEADERS = ['X-Forwarded-User', 'X-Forwarded-Email', 'X-Forwarded-Groups', 'Cookie'];
/** forwardAuth deletes only the exact (canonical) names of authResponseHeaders from the client's
 * request, so a client-sent X_Forwarded_User would reach the upstream, and upstreams that read
 * '_' as '-' (PHP, CGI, some Node/Python stacks) would take it for the user. A regex makes
 * forwardAuth delete every request header it matches (any spelling) before copying the sidecar's
 * matching headers. Anchored, case-insensitive, '-' '_' '.' alike. */
export const AUTH_RESPONSE_HEADERS_REGEX = '(?i)^x[-_.]forwarded[-_.](user|email|groups)$';
/** The session cookie chunks of middleware `default`'s session scope, under the default
 * CookieNamePrefix `TraefikOidcSidecar` (the sidecar writes at most 8). forwardAuth
 * drops every Set-Cookie of a 2xx auth answer unless its name is listed in
 * addAuthCookiesToResponse; listing them lets a session the sidecar refreshed on an allowed
 * request reach the browser. */
export const SESSION_COOKIE_NAMES = Array.from({ length: 8 }, (_, i) => `TraefikOidcSidecar.session.${i}`);
/** A documentation address (RFC 5737) standing for the load balancer that would sit in front
 * of Traefik. Loopback is deliberately *not* trusted: on this machine the browser itself
 * connects from 127.0.0.1, and it is the client whose X-Forwarded-* must not be believed. */
export const TRUSTED_FRONT_PROXY = '192.0.2.10/32';

// ---------------------------------------------------------------------------------------------
// Small helpers.

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A port that was free a moment ago (the kernel picks it; we close the socket again). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function portInUse(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.setTimeout(1000);
    sock.on('connect', () => { sock.destroy(); resolve(true); });
    sock.on('timeout', () => { sock.destroy(); resolve(false); });
    sock.on('error', () => resolve(false));
  });
}

/** One HTTP/1.1 request to 127.0.0.1 (a Host header can be set, unlike with fetch). */
export function request({ port, path: p = '/', method = 'GET', headers = {}, timeoutMs = 5000 }) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms: ${method} ${p}`)));
    req.on('error', reject);
    req.end();
  });
}

/** Polls fn until it returns a truthy value; throws the last error (or `what`) after timeoutMs. */
export async function waitFor(what, fn, { timeoutMs = 30000, intervalMs = 200 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      if (e.fatal) throw e; // e.g. the process we wait for has exited: no point in waiting
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    }
    await sleep(intervalMs);
  }
}

function yamlString(s) {
  return JSON.stringify(String(s)); // JSON strings are valid YAML double-quoted scalars
}

// ---------------------------------------------------------------------------------------------
// Binaries.

/** The Traefik binary: TRAEFIK_BIN, else scripts/build-traefik.sh (cached after the first build). */
export function resolveTraefik() {
  if (process.env.TRAEFIK_BIN) return process.env.TRAEFIK_BIN;
  const out = execFileSync('bash', [path.join(ROOT, 'scripts', 'build-traefik.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return out.trim().split('\n').pop();
}

/** The sidecar binary: SIDECAR_BIN, else target/release, else target/debug. */
export function resolveSidecar() {
  const candidates = [
    process.env.SIDECAR_BIN,
    path.join(ROOT, 'target', 'release', 'traefik-oidc-sidecar'),
    path.join(ROOT, 'target', 'debug', 'traefik-oidc-sidecar'),
  ].filter(Boolean);
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`no sidecar binary (tried ${candidates.join(', ')}); run cargo build --release --bin traefik-oidc-sidecar or set SIDECAR_BIN`);
  return found;
}

/** The upstream: WHOAMI_BIN, else traefik/whoami in $GOPATH/bin, else the Node stand-in.
 * (Never /usr/bin/whoami: that is coreutils' "print effective user name".) */
export function resolveWhoami() {
  if (process.env.WHOAMI_BIN) return { cmd: process.env.WHOAMI_BIN, args: [], kind: 'traefik/whoami' };
  let gopath = path.join(os.homedir(), 'go');
  try {
    gopath = execFileSync('go', ['env', 'GOPATH'], { encoding: 'utf8' }).trim().split(path.delimiter)[0] || gopath;
  } catch { /* no go: keep the default */ }
  const bin = path.join(gopath, 'bin', 'whoami');
  if (fs.existsSync(bin)) return { cmd: bin, args: [], kind: 'traefik/whoami' };
  return { cmd: process.execPath, args: [path.join(ROOT, 'tests', 'e2e', 'whoami.mjs')], kind: 'Node stand-in (tests/e2e/whoami.mjs)' };
}

// ---------------------------------------------------------------------------------------------
// Configuration generation.

/** The sidecar's YAML configuration. */
export function sidecarConfig({ sidecarPort, metricsPort, issuer, secret, logLevel = 'debug', renewalThreshold, inline, bypassRule }) {
  const refresh = renewalThreshold !== undefined;
  if (inline) {
    // Issue 12: no middleware of its own; every block arrives inline from the plugin.
    return `# Generated by tests/e2e/stack.mjs (inline blocks only)
listen: 127.0.0.1:${sidecarPort}
metricsListen: 127.0.0.1:${metricsPort}
logLevel: ${logLevel}
middlewares: {}
inline:
  registrationToken: "\${INLINE_REGISTRATION_TOKEN}"
  allowedProviderUrls: [${yamlString(issuer)}]
  # The README's safe form: each variable a block may name, confined to the key it belongs in.
  allowedVariables:
    INLINE_CLIENT_SECRET: [Provider.ClientSecret]
    INLINE_SESSION_SECRET: [Secret]
    # The names the README's blocks use (its quick-start and migration examples).
    OIDC_CLIENT_SECRET: [Provider.ClientSecret]
    SESSION_SECRET: [Secret]
`;
  }
  return `# Generated by tests/e2e/stack.mjs
listen: 127.0.0.1:${sidecarPort}
metricsListen: 127.0.0.1:${metricsPort}
logLevel: ${logLevel}
middlewares:
  default:
    Provider:
      Url: ${yamlString(issuer)}
      ClientId: ${yamlString(CLIENT_ID)}
      ClientSecret: ${yamlString(CLIENT_SECRET)}${refresh ? `
      # Refresh the session once this fraction of the token lifetime has passed.
      TokenRenewalThreshold: ${renewalThreshold}` : ''}
    Secret: ${yamlString(secret)}
    # groups: the OP releases the groups claim (X-Forwarded-Groups) only for this scope${refresh ? `
    # offline_access: a refresh token, so sessions can be renewed` : ''}
    Scopes: [openid, profile, email, groups${refresh ? ', offline_access' : ''}]${bypassRule ? `
    # Requests it matches pass without a session (still through the door's middleware).
    BypassAuthenticationRule: ${yamlString(bypassRule)}` : ''}
    SessionCookie:
      Secure: false   # plain-http localhost only; in production the cookie must be Secure
`;
}

/** Traefik's static configuration. */
export function traefikStaticConfig({ traefikPort, dynamicFile, accessLogFile, logLevel = 'DEBUG', extraEntryPoints = '', pluginModule = PLUGIN_MODULE }) {
  return `# Generated by tests/e2e/stack.mjs
global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  web:
    address: 127.0.0.1:${traefikPort}
    forwardedHeaders:
      # Only the (absent) front load balancer may set X-Forwarded-*; from anyone else, the
      # browser included, Traefik drops them and sets its own, which is what the sidecar reads.
      trustedIPs:
        - ${TRUSTED_FRONT_PROXY}
${extraEntryPoints}providers:
  file:
    filename: ${yamlString(dynamicFile)}
    watch: false
api:
  dashboard: false
log:
  level: ${logLevel}
  noColor: true
accessLog:
  filePath: ${yamlString(accessLogFile)}
  fields:
    headers:
      defaultMode: drop
experimental:
  # Fail loudly: a plugin that does not load stops Traefik instead of leaving its routes dead.
  abortOnPluginFailure: true
  localPlugins:
    ${PLUGIN_NAME}:
      moduleName: ${pluginModule}
`;
}

/** Traefik's dynamic configuration for inline doors (issue 12): one router per door, each with
 * the plugin configured by `config` (sidecarUrl etc. plus the inline block), written as a YAML
 * flow mapping by `toYaml`. */
export function traefikInlineDynamicConfig({ whoamiPort, doors, toYaml }) {
  return `# Generated by tests/e2e/stack.mjs (inline doors)
http:
  routers:
${doors.map((d) => `    ${d.name}:
      rule: "Host(\`${d.name}.localhost\`)"
      entryPoints: [web]
      middlewares: [oidc-${d.name}]
      service: whoami`).join('\n')}
    api:
      rule: "Host(\`traefik.localhost\`)"
      entryPoints: [web]
      service: api@internal
  middlewares:
${doors.map((d) => `    oidc-${d.name}:
      plugin:
        ${PLUGIN_NAME}: ${toYaml(d.config)}`).join('\n')}
  services:
    whoami:
      loadBalancer:
        servers:
          - url: ${yamlString(`http://127.0.0.1:${whoamiPort}`)}
`;
}

/** Traefik's dynamic configuration (file provider): both doors in front of whoami. */
export function traefikDynamicConfig({ sidecarPort, whoamiPort }) {
  const sidecar = `http://127.0.0.1:${sidecarPort}`;
  return `# Generated by tests/e2e/stack.mjs
http:
  routers:
    fa:
      rule: "Host(\`fa.localhost\`)"
      entryPoints: [web]
      middlewares: [oidc-forwardauth]
      service: whoami
    plugin:
      rule: "Host(\`plugin.localhost\`)"
      entryPoints: [web]
      middlewares: [oidc-plugin]
      service: whoami
    api:
      rule: "Host(\`traefik.localhost\`)"
      entryPoints: [web]
      service: api@internal
  middlewares:
    oidc-forwardauth:
      forwardAuth:
        address: ${yamlString(`${sidecar}/auth/default`)}
        trustForwardHeader: true
        authResponseHeaders:
${AUTH_RESPONSE_HEADERS.map((h) => `          - ${h}`).join('\n')}
        authResponseHeadersRegex: ${yamlString(AUTH_RESPONSE_HEADERS_REGEX)}
        maxResponseBodySize: 1048576
        addAuthCookiesToResponse:
${SESSION_COOKIE_NAMES.map((h) => `          - ${h}`).join('\n')}
    oidc-plugin:
      plugin:
        ${PLUGIN_NAME}:
          sidecarUrl: ${yamlString(sidecar)}
          middleware: default
          timeout: 5s
  services:
    whoami:
      loadBalancer:
        servers:
          - url: ${yamlString(`http://127.0.0.1:${whoamiPort}`)}
`;
}

/** Lays out plugins-local/src/<module>/ from the working tree (go.mod, .traefik.yml and the
 * package directory), the way Traefik expects a local plugin under its working directory.
 * With `from`, the module root `from` (e.g. the plugin's own repository, scripts/plugin-repo.sh)
 * is copied there whole instead, as module `module`. */
export function layoutLocalPlugin(workDir, { module = PLUGIN_MODULE, from } = {}) {
  const dest = path.join(workDir, 'plugins-local', 'src', ...module.split('/'));
  fs.rmSync(dest, { recursive: true, force: true });
  fs.mkdirSync(dest, { recursive: true });
  if (from) {
    fs.cpSync(from, dest, { recursive: true, filter: (src) => path.basename(src) !== '.git' });
    return dest;
  }
  for (const f of ['go.mod', '.traefik.yml']) {
    fs.copyFileSync(path.join(ROOT, f), path.join(dest, f));
  }
  fs.cpSync(path.join(ROOT, 'traefik-plugin'), path.join(dest, 'traefik-plugin'), { recursive: true });
  return dest;
}

// ---------------------------------------------------------------------------------------------
// Processes.

class Proc {
  constructor(name, cmd, args, { cwd, env, logFile, pidsFile, stdin = 'ignore' }) {
    this.name = name;
    this.logFile = logFile;
    this.log = fs.createWriteStream(logFile, { flags: 'a' });
    this.log.write(`# ${new Date().toISOString()} ${cmd} ${args.join(' ')}\n`);
    this.child = spawn(cmd, args, { cwd, env, detached: true, stdio: [stdin, 'pipe', 'pipe'] });
    this.pid = this.child.pid;
    this.exited = false;
    this.exitInfo = null;
    this.exitPromise = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exited = true;
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
      this.child.on('error', (err) => {
        this.exited = true;
        this.exitInfo = { error: err.message };
        this.log.write(`# spawn error: ${err.message}\n`);
        resolve(this.exitInfo);
      });
    });
    this.child.stdout.on('data', (d) => this.log.write(d));
    this.child.stderr.on('data', (d) => this.log.write(d));
    if (pidsFile && this.pid) fs.appendFileSync(pidsFile, `${this.pid} ${name}\n`);
  }

  /** The last lines of the log, for error messages. */
  tail(lines = 25) {
    try {
      return fs.readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  assertRunning() {
    if (this.exited) {
      const err = new Error(`${this.name} exited (${JSON.stringify(this.exitInfo)}); last log lines:\n${this.tail()}`);
      err.fatal = true;
      throw err;
    }
  }

  killGroup(signal) {
    if (this.exited || !this.pid) return;
    try {
      process.kill(-this.pid, signal); // the whole process group: nothing it started survives
    } catch {
      try { process.kill(this.pid, signal); } catch { /* already gone */ }
    }
  }

  async stop(graceMs = 5000) {
    if (this.exited) return;
    this.killGroup('SIGTERM');
    const t = setTimeout(() => this.killGroup('SIGKILL'), graceMs);
    await this.exitPromise;
    clearTimeout(t);
    this.log.end();
  }
}

const live = new Set();
process.on('exit', () => {
  for (const p of live) p.killGroup('SIGKILL');
});

export class Stack {
  /**
   * @param {object} o
   * @param {string} o.artifactsDir  logs and generated configs go here
   * @param {number} [o.traefikPort] 0/undefined = a random free port
   * @param {(msg: string) => void} [o.log]
   * @param {string} [o.logLevel]   sidecar log level (debug)
   * @param {string} [o.traefikLogLevel] DEBUG
   * @param {number} [o.tokenTtl]   the OP's token lifetime in seconds (OP default: 3600)
   * @param {number} [o.renewalThreshold] sidecar Provider.TokenRenewalThreshold; also asks for
   *                                  offline_access so sessions carry a refresh token
   * @param {object} [o.inline]       issue 12: instead of the fa and plugin doors, the sidecar
   *   has no middlewares and each door is the plugin with an inline block. `doors` is a list of
   *   door names; `config({ issuer, sidecarUrl, door })` returns that door's plugin config;
   *   `toYaml` writes it; `env` is extra sidecar environment (the ${VAR}s the blocks name);
   *   `extraDoors` are routed the same way (and registered at the OP) but not waited for (doors
   *   expected to refuse, or checked on their own).
   * @param {object} [o.opEnv]        extra environment of the OP (e.g. OP_BACKCHANNEL_LOGOUT_URI)
   * @param {string[]} [o.doors]      the door (router) names instead of fa and plugin; with
   *                                  `dynamicConfig`, which writes their routers
   * @param {(p: {sidecarUrl: string, whoamiPort: number}) => string} [o.dynamicConfig]
   *                                  Traefik's dynamic configuration instead of the two doors'
   * @param {{module: string, from: string}} [o.plugin] load the plugin as module `module` from
   *                                  the module root `from` instead of this working tree
   * @param {string} [o.bypassRule]   the sidecar middleware's BypassAuthenticationRule
   */
  constructor({ artifactsDir, traefikPort = 0, log = () => {}, logLevel = 'debug', traefikLogLevel = 'DEBUG', tokenTtl, renewalThreshold, inline, opEnv = {}, doors, dynamicConfig, plugin, bypassRule }) {
    this.inline = inline;
    this.customDoors = doors;
    this.dynamicConfig = dynamicConfig;
    this.plugin = plugin;
    this.bypassRule = bypassRule;
    this.opEnv = opEnv;
    this.tokenTtl = tokenTtl;
    this.renewalThreshold = renewalThreshold;
    this.artifactsDir = artifactsDir;
    this.requestedTraefikPort = traefikPort;
    this.say = log;
    this.logLevel = logLevel;
    this.traefikLogLevel = traefikLogLevel;
    this.procs = {};
    fs.mkdirSync(artifactsDir, { recursive: true });
    this.pidsFile = path.join(artifactsDir, 'pids');
    fs.writeFileSync(this.pidsFile, '');
  }

  spawn(name, cmd, args, opts = {}) {
    const p = new Proc(name, cmd, args, {
      cwd: opts.cwd || ROOT,
      env: { ...process.env, ...(opts.env || {}) },
      logFile: path.join(this.artifactsDir, `${name}.log`),
      pidsFile: this.pidsFile,
      stdin: opts.stdin,
    });
    live.add(p);
    p.exitPromise.then(() => live.delete(p));
    this.procs[name] = p;
    return p;
  }

  /** Starts everything and waits until every piece is ready. */
  async start() {
    const traefikBin = resolveTraefik();
    const sidecarBin = resolveSidecar();
    const whoami = resolveWhoami();
    this.binaries = { traefik: traefikBin, sidecar: sidecarBin, whoami: whoami.kind === 'traefik/whoami' ? whoami.cmd : whoami.kind };

    const traefikPort = this.requestedTraefikPort || await freePort();
    if (this.requestedTraefikPort && await portInUse(traefikPort)) {
      throw new Error(`port ${traefikPort} is already in use on 127.0.0.1 (set another one)`);
    }
    const [sidecarPort, metricsPort, whoamiPort] = [await freePort(), await freePort(), await freePort()];
    this.ports = { traefik: traefikPort, sidecar: sidecarPort, metrics: metricsPort, whoami: whoamiPort };
    this.doors = this.inline ? this.inline.doors : (this.customDoors || ['fa', 'plugin']);
    // Routed like the doors (and known to the OP), but not waited for (e.g. an invalid inline
    // block, or a door checked on its own).
    this.extraDoors = this.inline?.extraDoors || [];
    this.urls = {
      ...Object.fromEntries([...this.doors, ...this.extraDoors].map((d) => [d, `http://${d}.localhost:${traefikPort}`])),
      api: `http://traefik.localhost:${traefikPort}/api`,
      sidecar: `http://127.0.0.1:${sidecarPort}`,
      metrics: `http://127.0.0.1:${metricsPort}/metrics`,
    };

    await Promise.all([this.startOp(), this.startWhoami(whoami, whoamiPort)]);
    await this.startSidecar(sidecarBin);
    await this.startTraefik(traefikBin);
    return this;
  }

  async startOp() {
    // Extra doors too: one of them may be expected to log users in (the inline migration door).
    const bases = [...this.doors, ...(this.extraDoors || [])].map((d) => this.urls[d]);
    const op = this.spawn('op', process.execPath, [path.join(ROOT, 'tests', 'op', 'op.mjs')], {
      env: {
        OP_PORT: '0',
        OP_REDIRECT_URIS: bases.map((b) => `${b}/oidc/callback`).join(','),
        OP_POST_LOGOUT_REDIRECT_URIS: bases.map((b) => `${b}/`).join(','),
        OP_EXIT_ON_STDIN_CLOSE: '1', // if we die without cleaning up, the OP follows
        ...(this.tokenTtl ? { OP_ID_TOKEN_TTL: String(this.tokenTtl) } : {}),
        ...this.opEnv,
      },
      stdin: 'pipe',
    });
    this.issuer = await new Promise((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`the OP printed no issuer within 20 s; log:\n${op.tail()}`)), 20000);
      op.child.stdout.on('data', (d) => {
        buf += d.toString('utf8');
        for (const line of buf.split('\n').slice(0, -1)) {
          try {
            const j = JSON.parse(line);
            if (j.issuer) { clearTimeout(timer); resolve(j.issuer); return; }
          } catch { /* not the JSON line */ }
        }
      });
      op.exitPromise.then(() => { clearTimeout(timer); reject(new Error(`the OP exited before it was ready; log:\n${op.tail()}`)); });
    });
    this.urls.issuer = this.issuer;
    this.say(`OP ready: ${this.issuer}`);
  }

  async startWhoami(whoami, port) {
    const p = this.spawn('whoami', whoami.cmd, [...whoami.args, '--port', String(port)]);
    await waitFor('whoami', async () => {
      p.assertRunning();
      return (await request({ port, path: '/health', timeoutMs: 1000 })).status === 200;
    }, { timeoutMs: 15000 });
    this.say(`whoami ready on 127.0.0.1:${port} (${whoami.kind})`);
  }

  /** Starts a sidecar. Without options: the suite's own (config from sidecarConfig()). With
   * `configText`, another sidecar process named `name` on `port` (the Keycloak suite runs several,
   * so that a configuration one of them refuses cannot take the others down). Waits for /readyz,
   * or only for /healthz with `waitReady: false` (the caller then judges readiness itself). */
  async startSidecar(bin, { name = 'sidecar', port = this.ports.sidecar, configText, waitReady = true } = {}) {
    const configFile = path.join(this.artifactsDir, `${name}.yaml`);
    if (configText === undefined) {
      // Kept across restartSidecar(): sessions must outlive a sidecar restart.
      this.secret ||= crypto.randomBytes(32).toString('hex');
      configText = sidecarConfig({
        sidecarPort: this.ports.sidecar,
        metricsPort: this.ports.metrics,
        issuer: this.issuer,
        secret: this.secret,
        logLevel: this.logLevel,
        renewalThreshold: this.renewalThreshold,
        inline: Boolean(this.inline),
        bypassRule: this.bypassRule,
      });
    }
    if (name === 'sidecar') this.sidecarBin = bin;
    fs.writeFileSync(configFile, configText, { mode: 0o600 });
    const p = this.spawn(name, bin, ['--config', configFile], { env: { RUST_BACKTRACE: '1', ...(this.inline?.env || {}) } });
    const probe = waitReady ? '/readyz' : '/healthz';
    await waitFor(`${name} ${probe}`, async () => {
      p.assertRunning();
      return (await request({ port, path: probe, timeoutMs: 1000 })).status === 200;
    }, { timeoutMs: 30000 });
    this.say(`${name} ${waitReady ? 'ready' : 'up'}: http://127.0.0.1:${port} (${bin})`);
    return p;
  }

  /** Starts Traefik. Without options: the suite's dynamic configuration (traefikDynamicConfig()),
   * routers fa@file and plugin@file (or the inline doors). `dynamicConfig`, `routerNames` and `hosts` let another
   * suite bring its own routers and say which must be enabled and answer. */
  async startTraefik(bin, { dynamicConfig, extraEntryPoints, routerNames = (this.doors || ['fa', 'plugin']).map((d) => `${d}@file`), hosts = (this.doors || ['fa', 'plugin']).map((d) => `${d}.localhost`) } = {}) {
    // Traefik's working directory: plugins-local/ must sit right under it.
    this.traefikWorkDir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-traefik-'));
    layoutLocalPlugin(this.traefikWorkDir, this.plugin);
    const dynamicFile = path.join(this.artifactsDir, 'traefik-dynamic.yml');
    const staticFile = path.join(this.artifactsDir, 'traefik-static.yml');
    dynamicConfig ??= this.dynamicConfig?.({ sidecarUrl: this.urls.sidecar, whoamiPort: this.ports.whoami });
    fs.writeFileSync(dynamicFile, dynamicConfig ?? (this.inline
      ? traefikInlineDynamicConfig({
        whoamiPort: this.ports.whoami,
        toYaml: this.inline.toYaml,
        doors: [...this.doors, ...this.extraDoors].map((door) => ({ name: door, config: this.inline.config({ issuer: this.issuer, sidecarUrl: this.urls.sidecar, door }) })),
      })
      : traefikDynamicConfig({ sidecarPort: this.ports.sidecar, whoamiPort: this.ports.whoami })));
    fs.writeFileSync(staticFile, traefikStaticConfig({
      traefikPort: this.ports.traefik,
      dynamicFile,
      accessLogFile: path.join(this.artifactsDir, 'traefik-access.log'),
      logLevel: this.traefikLogLevel,
      extraEntryPoints,
      pluginModule: this.plugin?.module,
    }));
    const p = this.spawn('traefik', bin, [`--configFile=${staticFile}`], { cwd: this.traefikWorkDir });
    const port = this.ports.traefik;

    // 1. The entry point answers, and the file provider's routers are in the API.
    const routers = await waitFor(`Traefik routers ${routerNames.join(', ')}`, async () => {
      p.assertRunning();
      const r = await request({ port, path: '/api/http/routers', headers: { Host: 'traefik.localhost' }, timeoutMs: 2000 });
      if (r.status !== 200) return false;
      const list = JSON.parse(r.body);
      const byName = Object.fromEntries(list.map((x) => [x.name, x]));
      return routerNames.every((n) => byName[n]) ? byName : false;
    }, { timeoutMs: 60000 });

    // 2. Both routers and their middlewares are enabled (a plugin that failed to load shows here).
    const problems = [];
    for (const name of routerNames) {
      const r = routers[name];
      if (r.status !== 'enabled') problems.push(`router ${name}: status ${r.status} ${JSON.stringify(r.error || [])}`);
    }
    const mws = JSON.parse((await request({ port, path: '/api/http/middlewares', headers: { Host: 'traefik.localhost' } })).body);
    for (const m of mws) {
      if (m.status && m.status !== 'enabled') problems.push(`middleware ${m.name}: status ${m.status} ${JSON.stringify(m.error || [])}`);
    }
    const pluginErrors = this.traefikPluginErrors();
    if (problems.length || pluginErrors.length) {
      throw new Error(`Traefik did not load the configuration cleanly:\n${[...problems, ...pluginErrors].join('\n')}`);
    }

    // 3. Each door answers through its middleware: not a 404 (router missing) nor a 5xx.
    for (const host of hosts) {
      const r = await waitFor(`${host} answering through its middleware`, async () => {
        p.assertRunning();
        const res = await request({ port, path: '/', headers: { Host: host, Accept: 'text/html' }, timeoutMs: 10000 });
        return res.status === 404 || res.status >= 500 ? false : res;
      }, { timeoutMs: 20000 }).catch((e) => {
        throw new Error(`${e.message}\nTraefik plugin errors: ${this.traefikPluginErrors().join('\n') || '(none logged)'}`);
      });
      this.say(`Traefik ${host} answers ${r.status}${r.headers.location ? ` -> ${r.headers.location.split('?')[0]}` : ''}`);
    }
    this.say(`Traefik ready on 127.0.0.1:${port}: ${hosts.join(', ')} (${bin})`);
  }

  /** Error-level lines of Traefik's log that mention plugins (load or runtime failures). */
  traefikPluginErrors() {
    let text = '';
    try { text = fs.readFileSync(path.join(this.artifactsDir, 'traefik.log'), 'utf8'); } catch { return []; }
    return text.split('\n').filter((l) => /\b(ERR|FTL|error|fatal)\b/i.test(l) && /plugin|yaegi|traefik-oidc-sidecar/i.test(l));
  }

  /** Stops the sidecar only (the "sidecar down" checks). */
  async stopSidecar() {
    await this.procs.sidecar?.stop();
  }

  /** Stops the sidecar and starts it again on the same port with the same configuration (it
   * forgets every inline block, as a real restart does). */
  async restartSidecar() {
    await this.stopSidecar();
    await this.startSidecar(this.sidecarBin);
  }

  /** Stops everything, Traefik first (it holds the client-facing port). */
  async stop() {
    for (const name of ['traefik', 'sidecar', 'whoami', 'op']) {
      await this.procs[name]?.stop();
    }
    // Whatever else was started through spawn() (the Keycloak suite's sidecars, Keycloak).
    for (const p of Object.values(this.procs)) await p.stop();
    if (this.traefikWorkDir) fs.rmSync(this.traefikWorkDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// examples/traefik/: prove the published configuration loads in the same Traefik.

/**
 * Starts Traefik with examples/traefik/<staticName> and dynamic.yml, rewritten only where the
 * example names things that do not exist here (listen addresses, the dynamic file's path, the
 * sidecar's host name), and checks that both example routers answer through their middleware:
 * a router whose middleware failed to load answers 404. The catalog form cannot download the
 * plugin here, so it is checked with `plugins:` read as `localPlugins:`, its moduleName laid out
 * from the plugin's own repository as scripts/plugin-repo.sh writes it (the catalog's module).
 * Returns a summary; throws with Traefik's log on failure.
 */
export async function validateExampleConfig({ traefikBin, artifactsDir, staticName }) {
  const exDir = path.join(ROOT, 'examples', 'traefik');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-example-'));
  const logFile = path.join(artifactsDir, `example-${path.basename(staticName, '.yml')}.log`);
  let proc;
  try {
    let st = fs.readFileSync(path.join(exDir, staticName), 'utf8');
    if (/^\s+plugins:\s*$/m.test(st)) {
      const repo = path.join(work, 'plugin-repo');
      execFileSync('bash', [path.join(ROOT, 'scripts', 'plugin-repo.sh'), repo], { stdio: ['ignore', 'ignore', 'inherit'] });
      const module = fs.readFileSync(path.join(repo, 'go.mod'), 'utf8').match(/^module\s+(\S+)\s*$/m)?.[1];
      assert(st.includes(`moduleName: ${module}\n`), `${staticName} does not name the catalog module ${module} (scripts/plugin-repo.sh)`);
      layoutLocalPlugin(work, { module, from: repo });
    } else {
      layoutLocalPlugin(work);
    }
    const [web, websecure, closed] = [await freePort(), await freePort(), await freePort()];
    let dyn = fs.readFileSync(path.join(exDir, 'dynamic.yml'), 'utf8');
    assert(dyn.includes('traefik-oidc-sidecar:4181'), 'dynamic.yml no longer names traefik-oidc-sidecar:4181');
    dyn = dyn.replaceAll('traefik-oidc-sidecar:4181', `127.0.0.1:${closed}`); // refused at once
    fs.writeFileSync(path.join(work, 'dynamic.yml'), dyn);
    for (const [from, to] of [['address: ":80"', `address: "127.0.0.1:${web}"`], ['address: ":443"', `address: "127.0.0.1:${websecure}"`], ['/etc/traefik/dynamic.yml', path.join(work, 'dynamic.yml')]]) {
      assert(st.includes(from), `${staticName} no longer contains ${from}`);
      st = st.replace(from, to);
    }
    if (/^\s+plugins:\s*$/m.test(st)) {
      st = st.replace(/^(\s+)plugins:\s*$/m, '$1localPlugins:').replace(/^\s+version:.*$/m, '');
    }
    st += `\nlog:\n  level: DEBUG\n  noColor: true\n`;
    fs.writeFileSync(path.join(work, 'traefik.yml'), st);

    const log = fs.openSync(logFile, 'w');
    proc = spawn(traefikBin, [`--configFile=${path.join(work, 'traefik.yml')}`], { cwd: work, detached: true, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    let exited = null;
    proc.on('exit', (code) => { exited = code; });
    const errLines = () => fs.readFileSync(logFile, 'utf8').split('\n')
      .filter((l) => / (ERR|FTL) /.test(l) && !/Error calling http:\/\/127\.0\.0\.1/.test(l));
    const tail = () => {
      const errs = errLines();
      return errs.length ? errs.join('\n') : fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => !/ DBG /.test(l)).slice(-15).join('\n');
    };
    const results = {};
    for (const host of ['app.example.com', 'app-plugin.example.com']) {
      results[host] = await waitFor(`${staticName}: ${host} answering through its middleware`, async () => {
        if (exited !== null || errLines().length) {
          const e = new Error(`Traefik ${exited !== null ? `exited (${exited})` : 'logged errors'} with ${staticName}:\n${tail()}`);
          e.fatal = true;
          throw e;
        }
        const r = await new Promise((resolve, reject) => {
          const req = https.request({ host: '127.0.0.1', port: websecure, path: '/', servername: host, headers: { Host: host, Accept: 'text/html' }, rejectUnauthorized: false, agent: false }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode));
          });
          req.setTimeout(5000, () => req.destroy(new Error('timeout')));
          req.on('error', reject);
          req.end();
        });
        return r === 404 ? false : r;
      }, { timeoutMs: 20000 }).catch((e) => { throw e.fatal ? e : new Error(`${e.message}\n${tail()}`); });
    }
    // The sidecar is unreachable here, so both doors must fail closed, never reach the app.
    assert(results['app.example.com'] >= 500 && results['app-plugin.example.com'] >= 500,
      `expected 5xx from both doors with no sidecar, got ${JSON.stringify(results)}`);
    const errs = errLines();
    assert(errs.length === 0, `Traefik logged errors with ${staticName}:\n${errs.join('\n')}`);
    return `app.example.com ${results['app.example.com']}, app-plugin.example.com ${results['app-plugin.example.com']} (sidecar absent: fail closed)`;
  } finally {
    if (proc && proc.exitCode === null) {
      try { process.kill(-proc.pid, 'SIGKILL'); } catch { /* gone */ }
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.on('exit', r)));
    }
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
