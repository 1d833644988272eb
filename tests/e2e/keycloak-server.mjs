// A real Keycloak for the Keycloak end-to-end suite (keycloak.mjs): one per test run, in dev mode
// on loopback, with the realm of tests/keycloak/realm.json imported at start.
//
//   Keycloak home   scripts/install-keycloak.sh (cached, unpacked once); each run works on its own
//                   copy under <artifacts>/keycloak-run/, so the cache never sees a database.
//   ports           random free ports: http, https, management (kept off Keycloak's default 9000)
//   hostname        --hostname=http://localhost:<http> --hostname-backchannel-dynamic=true: the
//                   browser-facing URLs (issuer, authorization and end-session endpoints) always
//                   name http://localhost:<http>, the back-channel ones (token, JWKS, userinfo)
//                   name whatever URL asked (127.0.0.1, or the https port). This is the
//                   "internal URL" layout of a Keycloak behind a proxy with KC_HOSTNAME set.
//   https           a CA and a server certificate (localhost, 127.0.0.1) made with openssl per run
//   realm           realm.json is a template: ${E2E_...} placeholders are filled here (ports,
//                   secrets, the private_key_jwt client's JWKS); an array element that is exactly
//                   one placeholder whose value is an array is spliced in. Keycloak's own
//                   placeholders (${client_id} in the client-role mapper) are left alone.
//   admin API       through the realm's own service-account client `e2e-admin` (realm-admin).
//
// The database (dev-file H2) lives in the run copy, so restart() keeps the realm, its keys and the
// user sessions, as a production Keycloak with a database would.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, freePort, waitFor, request } from './stack.mjs';

export const REALM = 'sidecar-e2e';
export const REALM_TEMPLATE = path.join(ROOT, 'tests', 'keycloak', 'realm.json');

/** Fills ${E2E_*} placeholders of the parsed realm template. */
export function fillRealm(template, values) {
  const fill = (s) => s.replace(/\$\{(E2E_[A-Z0-9_]+)\}/g, (m, k) => {
    if (!(k in values)) throw new Error(`realm template: no value for ${m}`);
    const v = values[k];
    return typeof v === 'string' ? v : JSON.stringify(v);
  });
  const walk = (v) => {
    if (typeof v === 'string') return fill(v);
    if (Array.isArray(v)) {
      return v.flatMap((x) => {
        const m = typeof x === 'string' && /^\$\{(E2E_[A-Z0-9_]+)\}$/.exec(x);
        if (m && Array.isArray(values[m[1]])) return values[m[1]].map(String);
        return [walk(x)];
      });
    }
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return walk(template);
}

/** A CA and a server certificate for localhost/127.0.0.1, made with openssl in `dir`. */
export function makeCertificates(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const f = (n) => path.join(dir, n);
  const openssl = (...args) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2',
    '-subj', '/CN=traefik-oidc-sidecar e2e test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost');
  fs.writeFileSync(f('server.ext'), [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ].join('\n'));
  openssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-out', f('server.pem'), '-days', '2', '-sha256', '-extfile', f('server.ext'));
  return { caFile: f('ca.pem'), certFile: f('server.pem'), keyFile: f('server.key'), caPem: fs.readFileSync(f('ca.pem'), 'utf8') };
}

/** An RSA key pair for the private_key_jwt client: the private key as PKCS#8 PEM, the public one
 * as a JWKS with `kid`. Made per run; never committed. */
export function makeClientKey(kid = `e2e-${crypto.randomBytes(4).toString('hex')}`) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
  return { kid, privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }), jwks: { keys: [jwk] } };
}

export class Keycloak {
  /**
   * @param {object} o
   * @param {string} o.home        the installed Keycloak (scripts/install-keycloak.sh)
   * @param {string} o.javaHome    a Java 21+ JDK
   * @param {string} o.workDir     per-run directory (the copy, the certificates, the realm)
   * @param {(name, cmd, args, opts) => object} o.spawn  Stack#spawn (logs and pid bookkeeping)
   * @param {object} o.realmValues values of the realm template's placeholders (ports are added)
   * @param {(msg: string) => void} [o.log]
   */
  constructor({ home, javaHome, workDir, spawn, realmValues, log = () => {} }) {
    Object.assign(this, { home, javaHome, workDir, spawnProc: spawn, realmValues, say: log });
    this.starts = []; // seconds each start took
  }

  /** Picks the ports; call before the realm values that depend on them are known. */
  async allocatePorts() {
    this.ports = { http: await freePort(), https: await freePort(), management: await freePort() };
    this.urls = {
      public: `http://localhost:${this.ports.http}`,
      internal: `http://127.0.0.1:${this.ports.http}`,
      https: `https://localhost:${this.ports.https}`,
    };
    this.issuer = `${this.urls.public}/realms/${REALM}`;
    return this.ports;
  }

  /** Copies the distribution, makes the certificates, writes the realm. */
  prepare() {
    this.dir = path.join(this.workDir, 'keycloak');
    fs.rmSync(this.dir, { recursive: true, force: true });
    fs.cpSync(this.home, this.dir, { recursive: true });
    this.tls = makeCertificates(path.join(this.workDir, 'tls'));
    const realm = fillRealm(JSON.parse(fs.readFileSync(REALM_TEMPLATE, 'utf8')), this.realmValues);
    const importDir = path.join(this.dir, 'data', 'import');
    fs.mkdirSync(importDir, { recursive: true });
    fs.writeFileSync(path.join(importDir, `${REALM}-realm.json`), JSON.stringify(realm, null, 2), { mode: 0o600 });
  }

  args() {
    return [
      'start-dev',
      '--import-realm',
      '--http-enabled=true',
      '--http-host=127.0.0.1',
      `--http-port=${this.ports.http}`,
      `--https-port=${this.ports.https}`,
      `--https-certificate-file=${this.tls.certFile}`,
      `--https-certificate-key-file=${this.tls.keyFile}`,
      `--http-management-port=${this.ports.management}`,
      `--hostname=${this.urls.public}`,
      '--hostname-backchannel-dynamic=true',
      '--log-console-color=false',
      // One line per request: the suite counts the sidecar's JWKS fetches around a key rotation.
      '--http-access-log-enabled=true',
    ];
  }

  /** Starts Keycloak and waits (up to timeoutMs) until the realm's discovery answers on every URL
   * the suite uses. Returns the seconds it took. */
  async start({ timeoutMs = Number(process.env.KEYCLOAK_START_TIMEOUT_S || 300) * 1000 } = {}) {
    const t0 = Date.now();
    const n = this.starts.length;
    this.proc = this.spawnProc(n ? `keycloak-${n + 1}` : 'keycloak', path.join(this.dir, 'bin', 'kc.sh'), this.args(), {
      cwd: this.dir,
      env: {
        JAVA_HOME: this.javaHome,
        PATH: `${path.join(this.javaHome, 'bin')}:${process.env.PATH}`,
        // Two cores shared with the rest of the suite: a bounded heap keeps the machine usable.
        JAVA_OPTS_KC_HEAP: process.env.KEYCLOAK_HEAP || '-Xms128m -Xmx768m',
      },
    });
    const p = this.proc;
    try {
      await waitFor('Keycloak: the realm\'s discovery document', async () => {
        p.assertRunning();
        const d = await request({ port: this.ports.http, path: `/realms/${REALM}/.well-known/openid-configuration`, timeoutMs: 5000 });
        return d.status === 200;
      }, { timeoutMs, intervalMs: 1000 });
    } catch (e) {
      throw new Error(`${e.message}\nKeycloak log (${p.logFile}):\n${p.tail(60)}`);
    }
    const secs = (Date.now() - t0) / 1000;
    this.starts.push(secs);
    this.keepAugmentation();
    return secs;
  }

  /**
   * Dev mode re-augments the distribution (Quarkus build steps, about 45 s on two busy cores) the
   * first time it starts from a fresh unpack: lib/quarkus/ is rewritten for the dev profile. The
   * first run hands that result back to the cached home (once, marked by .dev-augmented, swapped
   * in by rename), so later runs start without it. Keycloak compares the build options it was
   * augmented with at every start and re-augments by itself when they differ, so a stale copy
   * only costs time. Failures here are ignored: the cache merely stays as it was.
   */
  keepAugmentation() {
    const marker = path.join(this.home, '.dev-augmented');
    const built = path.join(this.dir, 'lib', 'quarkus');
    if (fs.existsSync(marker) || !fs.existsSync(path.join(built, 'build-system.properties'))) return;
    const lib = path.join(this.home, 'lib');
    const tmp = path.join(lib, `.quarkus-new-${process.pid}`);
    const old = path.join(lib, `.quarkus-old-${process.pid}`);
    try {
      fs.cpSync(built, tmp, { recursive: true });
      fs.renameSync(path.join(lib, 'quarkus'), old);
      fs.renameSync(tmp, path.join(lib, 'quarkus'));
      fs.writeFileSync(marker, `${new Date().toISOString()}\n`);
      this.say(`kept Keycloak's dev-mode augmentation in ${lib}/quarkus for the next runs`);
    } catch (e) {
      this.say(`could not keep Keycloak's dev-mode augmentation (${e.message}); the next run augments again`);
      if (!fs.existsSync(path.join(lib, 'quarkus')) && fs.existsSync(old)) fs.renameSync(old, path.join(lib, 'quarkus'));
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
      fs.rmSync(old, { recursive: true, force: true });
    }
  }

  async stop() {
    await this.proc?.stop(20000);
  }

  /** The current end of the running Keycloak's log (for logSince). */
  logMark() {
    return { file: this.proc.logFile, offset: fs.statSync(this.proc.logFile).size };
  }

  /** What the running Keycloak logged since `mark`. */
  logSince(mark) {
    return fs.readFileSync(mark.file).subarray(mark.offset).toString('utf8');
  }

  /** Deletes the run's copy of the distribution (its database and the filled-in realm, with
   * the run's secrets, included); logs stay in the artifacts directory. Call once it has stopped. */
  removeCopy() {
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  async restart() {
    await this.stop();
    return this.start();
  }

  // ----- Admin API (service account of client e2e-admin) -----

  async adminToken() {
    const body = new URLSearchParams({ grant_type: 'client_credentials', client_id: 'e2e-admin', client_secret: this.realmValues.E2E_ADMIN_SECRET });
    const r = await fetch(`${this.urls.internal}/realms/${REALM}/protocol/openid-connect/token`, { method: 'POST', body });
    if (!r.ok) throw new Error(`admin token: ${r.status} ${await r.text()}`);
    return (await r.json()).access_token;
  }

  async admin(method, p, body) {
    const token = await this.adminToken();
    const r = await fetch(`${this.urls.internal}/admin/realms/${REALM}${p}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`admin ${method} ${p}: ${r.status} ${text.slice(0, 300)}`);
    return { status: r.status, headers: r.headers, json: text ? JSON.parse(text) : null };
  }

  /** The kids of the realm's active RS256 signing keys, highest priority first. */
  async activeRsaKids() {
    const { json } = await this.admin('GET', '/keys');
    return json.keys.filter((k) => k.algorithm === 'RS256' && k.use === 'SIG' && k.status === 'ACTIVE')
      .sort((a, b) => b.providerPriority - a.providerPriority).map((k) => k.kid);
  }

  /** Rotates the realm's RS256 signing key the way an operator does: a new generated RSA key
   * provider with a higher priority, then the old RS256 providers removed. Returns old and new kids. */
  async rotateSigningKey() {
    const before = await this.activeRsaKids();
    const { json: realm } = await this.admin('GET', '');
    const { json: providers } = await this.admin('GET', '/components?type=org.keycloak.keys.KeyProvider');
    const oldRsa = providers.filter((c) => c.providerId === 'rsa-generated' || c.providerId === 'rsa');
    const top = Math.max(100, ...oldRsa.map((c) => Number(c.config?.priority?.[0] || 0)));
    const name = `e2e-rotated-${Date.now()}`;
    await this.admin('POST', '/components', {
      name, providerId: 'rsa-generated', providerType: 'org.keycloak.keys.KeyProvider', parentId: realm.id,
      config: { priority: [String(top + 100)], enabled: ['true'], active: ['true'], keySize: ['2048'], algorithm: ['RS256'] },
    });
    for (const c of oldRsa) await this.admin('DELETE', `/components/${c.id}`);
    const after = await this.activeRsaKids();
    return { before, after, removedProviders: oldRsa.map((c) => c.name) };
  }
}
