// A real OpenID Provider (npm `oidc-provider`, OpenID Certified) for tests and the demo.
//
// Configuration is by environment variable so every harness (Rust integration tests, the browser
// end-to-end suite, the demo) starts the same provider:
//   OP_PORT                      port to listen on, 127.0.0.1 only (0 = pick a free port; default 0)
//   OP_CLIENT_ID / OP_CLIENT_SECRET   the confidential test client (default sidecar / sidecar-secret)
//   OP_REDIRECT_URIS             comma-separated redirect URIs of the client
//   OP_POST_LOGOUT_REDIRECT_URIS comma-separated post-logout redirect URIs of the client
//   OP_ID_TOKEN_TTL              ID/access token lifetime in seconds (default 3600)
//   OP_EXIT_ON_STDIN_CLOSE       1 = exit when stdin closes (the parent died)
//   OP_BACKCHANNEL_LOGOUT_URI    registers this backchannel_logout_uri on the first client, with
//                                backchannel_logout_session_required (so ID and logout tokens
//                                carry `sid`): ending the session at the OP POSTs a logout token
//                                there (OpenID Connect Back-Channel Logout 1.0)
//   OP_ISSUER                    issuer identifier, `{port}` replaced by the port (default
//                                http://127.0.0.1:{port}); e.g. http://localhost:{port} makes
//                                the issuer differ from the address clients are given (the
//                                internal-URL layout)
// GET /__test/stats answers token-endpoint counters ({"refreshGrants":n,"refreshErrors":n}).
// When listening it prints one JSON line on stdout:
//   {"issuer":"<issuer>","url":"http://127.0.0.1:PORT"}.
//
// A second client, `sidecar-jwt`, authenticates with private_key_jwt (RFC 7523): its JWKS holds
// the public halves of the test-only keys in tests/fixtures/test-keys (RSA, kid `test-rsa`;
// P-256, kid `test-ec`). Same redirect URIs as the first client.
//
// Step-up: the OP knows the acr values `pwd` and `mfa` (ACR_VALUES). A login records the acr its
// form POST names in an extra `acr` field (the test client adds it; the built-in form has none,
// so a browser login records no acr). A request whose `acr_values` the session's acr is not among
// asks for a login again (a real IdP's step-up), once per interaction: what the user submits
// then is what the ID token says, enough or not (the library puts acr in an ID token only when
// the authorization request asked acr_values). `max_age` and `prompt=login` work as the
// library implements them (auth_time is in the ID token whenever max_age was asked).
//
// Users: the built-in development login form accepts any login; the password must equal the login
// name's entry in USERS (demo/demo, alice/alice, bob/bob) so the demo shows real credentials.
// Claims come from USERS, so tests can assert on groups and names.
import http from 'node:http';
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Provider, { errors, interactionPolicy } from 'oidc-provider';

const USERS = {
  demo: { password: 'demo', name: 'Demo User', email: 'demo@example.test', groups: ['users'] },
  alice: { password: 'alice', name: 'Alice Admin', email: 'alice@example.test', groups: ['admins', 'users'] },
  bob: { password: 'bob', name: 'Bob Guest', email: 'bob@example.test', groups: ['guests'] },
};

const ACR_VALUES = ['pwd', 'mfa'];

// The default interaction policy plus one check on the login prompt: voluntary acr_values
// (OIDC Core §3.1.2.1) of this OP's the session's acr is not among ask for a new login, unless this
// interaction already has one (then the IdP answers with what it got, as real ones do).
const policy = interactionPolicy.base();
policy.get('login').checks.add(new interactionPolicy.Check(
  'acr_step_up',
  'a stronger authentication is requested',
  (ctx) => {
    const { oidc } = ctx;
    // Only values this OP knows: an unknown one (another test's `urn:test:loa:1`) is ignored.
    const asked = (oidc.params.acr_values || '').split(' ').filter((v) => ACR_VALUES.includes(v));
    if (!asked.length || oidc.result?.login || !oidc.session.accountId) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
    return asked.includes(oidc.session.acr) ? interactionPolicy.Check.NO_NEED_TO_PROMPT : interactionPolicy.Check.REQUEST_PROMPT;
  },
));

const list = (v) => (v || '').split(',').map((s) => s.trim()).filter(Boolean);
const ttl = Number(process.env.OP_ID_TOKEN_TTL || 3600);
// The public JWK of a committed test-only private key.
const testJwk = (file, kid) => ({
  ...createPublicKey(readFileSync(new URL(`../fixtures/test-keys/${file}`, import.meta.url))).export({ format: 'jwk' }),
  kid,
  use: 'sig',
});

const server = http.createServer();
server.listen(Number(process.env.OP_PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  const url = `http://127.0.0.1:${port}`;
  const issuer = (process.env.OP_ISSUER || 'http://127.0.0.1:{port}').replaceAll('{port}', String(port));
  const provider = new Provider(issuer, {
    clients: [{
      client_id: process.env.OP_CLIENT_ID || 'sidecar',
      client_secret: process.env.OP_CLIENT_SECRET || 'sidecar-secret',
      redirect_uris: list(process.env.OP_REDIRECT_URIS),
      post_logout_redirect_uris: list(process.env.OP_POST_LOGOUT_REDIRECT_URIS),
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...(process.env.OP_BACKCHANNEL_LOGOUT_URI ? {
        backchannel_logout_uri: process.env.OP_BACKCHANNEL_LOGOUT_URI,
        backchannel_logout_session_required: true,
      } : {}),
    }, {
      client_id: 'sidecar-jwt',
      redirect_uris: list(process.env.OP_REDIRECT_URIS),
      post_logout_redirect_uris: list(process.env.OP_POST_LOGOUT_REDIRECT_URIS),
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [testJwk('rsa-pkcs8.pem', 'test-rsa'), testJwk('ec-p256-pkcs8.pem', 'test-ec')] },
    }],
    pkce: { required: () => true },
    acrValues: ACR_VALUES,
    interactions: { policy },
    // The provider's outgoing requests refuse loopback addresses (SSRF protection); the
    // back-channel test's receiver is on 127.0.0.1, so only with OP_BACKCHANNEL_LOGOUT_URI set
    // is that guard dropped (this OP listens on loopback only and serves tests).
    ...(process.env.OP_BACKCHANNEL_LOGOUT_URI ? {
      fetch: (target, options) => {
        const { dispatcher, ...rest } = options;
        return globalThis.fetch(target, rest);
      },
    } : {}),
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      // Clients without a backchannel_logout_uri are unaffected.
      backchannelLogout: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      // Machine tokens for the bearer-token tests (opaque without a resource, JWT with one).
      clientCredentials: { enabled: true },
      // RFC 8707: any https resource is a known API; its access tokens are JWTs for it.
      resourceIndicators: {
        enabled: true,
        async getResourceServerInfo(ctx, resourceIndicator) {
          if (!resourceIndicator.startsWith('https://')) throw new errors.InvalidTarget();
          return { scope: 'api:read', audience: resourceIndicator, accessTokenTTL: ttl, accessTokenFormat: 'jwt' };
        },
      },
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'userinfo_only'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    async findAccount(ctx, id) {
      const user = USERS[id];
      if (!user) return undefined;
      return {
        accountId: id,
        async claims(use) {
          return {
            // Only the UserInfo endpoint has this one (tests UseClaimsFromUserInfo).
            ...(use === 'userinfo' ? { userinfo_only: `info-for-${id}` } : {}),
            sub: id,
            email: user.email,
            email_verified: true,
            name: user.name,
            preferred_username: id,
            groups: user.groups,
          };
        },
      };
    },
    // Scope claims go into the ID token too: the sidecar reads identity from the ID token.
    conformIdTokenClaims: false,
    cookies: { keys: ['op-test-cookie-key-0123456789abcdef'] },
    // First-party test client: skip the consent screen, the login form is the only interaction.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile groups offline_access');
      await grant.save();
      return grant;
    },
    ttl: { Session: 3600, Grant: 3600, IdToken: ttl, AccessToken: ttl, Interaction: 600, RefreshToken: 86400, ClientCredentials: 600 },
    // Refresh tokens for every login of a client allowed the grant (not only offline_access with
    // prompt=consent), and rotated on every use: reusing an old one revokes the grant, which is
    // what makes concurrent refreshes without single-flight fail.
    async issueRefreshToken(ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    rotateRefreshToken: () => true,
  });
  provider.proxy = false;

  // The development login form accepts any password; check ours before it runs so a wrong
  // password is refused the way a real IdP would.
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path.startsWith('/interaction/')) {
      const body = await readForm(ctx.req);
      ctx.req.body = body; // devInteractions reads the parsed body from here when present
      if (body.prompt === 'login') {
        const user = USERS[body.login];
        if (!user || user.password !== body.password) {
          ctx.status = 401;
          ctx.type = 'html';
          ctx.body = '<!DOCTYPE html><title>Login failed</title><p>Invalid login or password.</p>';
          return;
        }
        // A login naming its acr (step-up tests): finished here with that acr in the result.
        if (body.acr !== undefined) {
          if (!ACR_VALUES.includes(body.acr)) {
            ctx.status = 400;
            ctx.type = 'html';
            ctx.body = '<!DOCTYPE html><title>Bad acr</title><p>Unknown acr.</p>';
            return;
          }
          await provider.interactionFinished(ctx.req, ctx.res, {
            login: { accountId: body.login, acr: body.acr },
          }, { mergeWithLastSubmission: false });
          ctx.respond = false;
          return;
        }
      }
    }
    await next();
  });
  provider.on('server_error', (ctx, err) => console.error('op server_error', err));
  provider.on('backchannel.error', (ctx, err) => console.error('op backchannel.error', err.message));
  // Token-endpoint counters for tests (GET /__test/stats): how many refresh_token grants
  // succeeded and failed, e.g. to assert that concurrent requests on several sidecar replicas
  // redeemed a rotating refresh token exactly once.
  const stats = { refreshGrants: 0, refreshErrors: 0 };
  provider.on('grant.success', (ctx) => {
    if (ctx.oidc.params?.grant_type === 'refresh_token') stats.refreshGrants += 1;
  });
  provider.on('grant.error', (ctx) => {
    if (ctx.oidc?.params?.grant_type === 'refresh_token') stats.refreshErrors += 1;
  });
  provider.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === '/__test/stats') {
      ctx.type = 'json';
      ctx.body = JSON.stringify(stats);
      return;
    }
    await next();
  });
  server.on('request', provider.callback());
  console.log(JSON.stringify({ issuer, url }));
  // Harnesses read only that first line and may close the pipe: everything else goes to stderr,
  // and a closed stdout must never kill the provider.
  process.stdout.on('error', () => {});
  console.log = console.error;
  console.info = console.error;
});

function readForm(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      data += chunk;
      if (data.length > 65536) reject(new errors.InvalidRequest('form too large'));
    });
    req.on('end', () => resolve(Object.fromEntries(new URLSearchParams(data))));
    req.on('error', reject);
  });
}

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
// Test harnesses that cannot reliably kill us (a Rust test binary's statics are never dropped)
// set OP_EXIT_ON_STDIN_CLOSE=1 and keep our stdin open: when they exit, we exit.
if (process.env.OP_EXIT_ON_STDIN_CLOSE === '1') {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
