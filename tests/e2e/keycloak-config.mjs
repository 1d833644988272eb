// The configurations of the Keycloak suite (keycloak.mjs): the sidecars' middleware blocks, written
// as traefik-oidc-auth users write them (PascalCase keys, pasted unchanged), and Traefik's routers.
//
// Several sidecar processes, one per group of behaviour, so that a configuration one sidecar
// refuses (a feature that has not landed yet) cannot take the checks of the others down:
//
//   main      kc (plain login, TOA-style Headers), groups / realmroles / clientroles (one
//             AssertClaims each), refresh (20 s tokens), httpsfile / httpsinline (Keycloak's https
//             port, CA by CABundleFile / inline CABundle)
//   scope     shared: /alice /bob /admin / and a dedicated /oidc/callback router, five middlewares
//             sharing one Secret and client (one session scope); decide: the callback itself runs
//             the assertion (403 at the callback)
//             inline: the same scope's shared-anyone and shared-admins blocks pasted inline into
//             the plugin's configuration (plugin door only: forwardAuth cannot carry a block)
//   pages     pages: a traefik-oidc-auth-style ErrorPages.Unauthorized.FilePath with if-blocks
//   internal  internal: Provider.Url is Keycloak's internal address, discovery names the public one
//   jwt       jwt: private_key_jwt client authentication (Provider.ClientJwtPrivateKey[Id])
//
// Every site `s` is served twice by Traefik: s.fa.localhost through the built-in forwardAuth and
// s.plugin.localhost through our Yaegi plugin (a site with `doors` only through those). A route
// naming `inline:<block>` carries that sidecar block inline in the plugin's own configuration.
import path from 'node:path';
import { ROOT, PLUGIN_NAME } from './stack.mjs';
import { REALM } from './keycloak-server.mjs';

export const DOORS = ['fa', 'plugin'];
export const DOOR_LABEL = { fa: 'forwardAuth', plugin: 'plugin' };
export const SHORT_TOKEN_LIFESPAN_S = 20;
export const ERROR_PAGE_FILE = path.join(ROOT, 'tests', 'keycloak', 'unauthorized.html');
/** CookieNamePrefix of the refresh middleware: forwardAuth must be told the session cookie names
 * (addAuthCookiesToResponse) for a refreshed session on a 2xx answer to reach the browser. */
export const REFRESH_COOKIE_PREFIX = 'KcRefresh';

const q = (s) => JSON.stringify(String(s)); // a JSON string is a YAML double-quoted scalar

/** A YAML literal block holding `text`, indented by `indent` spaces. */
function block(text, indent) {
  const pad = ' '.repeat(indent);
  return `|\n${text.trimEnd().split('\n').map((l) => pad + l).join('\n')}`;
}

/** The sites: name -> sidecar and, per path prefix, the sidecar middleware judging it. */
export const SITES = {
  kc: { sidecar: 'main', routes: { '/': 'kc' } },
  groups: { sidecar: 'main', routes: { '/': 'kc-groups' } },
  realmroles: { sidecar: 'main', routes: { '/': 'kc-realm-roles' } },
  clientroles: { sidecar: 'main', routes: { '/': 'kc-client-roles' } },
  refresh: { sidecar: 'main', routes: { '/': 'kc-refresh' } },
  httpsfile: { sidecar: 'main', routes: { '/': 'kc-https-file' } },
  httpsinline: { sidecar: 'main', routes: { '/': 'kc-https-inline' } },
  shared: {
    sidecar: 'scope',
    routes: { '/': 'shared-anyone', '/alice': 'shared-team-a', '/bob': 'shared-team-b', '/admin': 'shared-admins', '=/oidc/callback': 'shared-callback' },
  },
  decide: { sidecar: 'scope', routes: { '/': 'decide-team-a' } },
  inline: { sidecar: 'scope', doors: ['plugin'], routes: { '/': 'inline:shared-anyone', '/admin': 'inline:shared-admins' } },
  pages: { sidecar: 'pages', routes: { '/': 'pages-team-a' } },
  internal: { sidecar: 'internal', routes: { '/': 'kc-internal' } },
  jwt: { sidecar: 'jwt', routes: { '/': 'kc-jwt' } },
};
export const SIDECARS = ['main', 'scope', 'pages', 'internal', 'jwt'];

export function siteUrl(site, door, traefikPort) {
  return `http://${site}.${door}.localhost:${traefikPort}`;
}

/** Every origin Keycloak must accept as a redirect URI (and, via "+", as post-logout target). */
export function redirectUris(traefikPort) {
  return Object.keys(SITES).flatMap((s) => doorsOf(s).map((d) => `${siteUrl(s, d, traefikPort)}/*`));
}

/** The doors that serve `site`. */
export function doorsOf(site) {
  return SITES[site].doors || DOORS;
}

// ---------------------------------------------------------------------------------------------
// Sidecar configurations.

/** Headers in traefik-oidc-auth's form: groups and both role claims, one header line per value. */
const TOA_HEADERS = `    Headers:
      - Name: "X-Oidc-Username"
        Value: "{{ .claims.preferred_username }}"
      - Name: "X-Oidc-Email"
        Value: "{{ .claims.email }}"
      - Name: "X-Oidc-Groups"
        Values: "{{ .claims.groups | mapToJsonArray }}"
      - Name: "X-Oidc-Realm-Roles"
        Values: "{{ .claims.realm_access.roles | mapToJsonArray }}"
      - Name: "X-Oidc-Client-Roles"
        Values: "{{ .claims.resource_access.sidecar.roles | mapToJsonArray }}"`;

function header({ port, metricsPort, logLevel = 'debug', inlineIssuer }) {
  // A sidecar that takes inline blocks names the IdPs they may use (registration is off without).
  const inline = inlineIssuer ? `inline:\n  allowedProviderUrls: [${q(inlineIssuer)}]\n` : '';
  return `# Generated by tests/e2e/keycloak-config.mjs
listen: 127.0.0.1:${port}
metricsListen: 127.0.0.1:${metricsPort}
logLevel: ${logLevel}
${inline}middlewares:
`;
}

/** One middleware block as a TOA user pastes it. `provider` and `extra` are YAML lines. */
function mw(name, { url, clientId = 'sidecar', secret, clientSecret, provider = '', extra = '', headers = TOA_HEADERS }) {
  return `  ${name}:
    Provider:
      Url: ${q(url)}
      ClientId: ${q(clientId)}${clientSecret ? `
      ClientSecret: ${q(clientSecret)}` : ''}
      UsePkce: true${provider}
    Secret: ${q(secret)}
    Scopes: ["openid", "profile", "email"]
    SessionCookie:
      Secure: false
${headers}${extra}
`;
}

const assertion = (claim, kind, values) => `
    Authorization:
      AssertClaims:
        - Name: ${q(claim)}
          ${kind}: [${values.map(q).join(', ')}]`;

/**
 * @param {object} o
 * @param {object} o.kc        the Keycloak (urls, issuer, tls)
 * @param {string} o.secret    the session Secret shared by every middleware of a scope
 * @param {string} o.clientSecret
 * @param {object} o.clientKey makeClientKey()'s result
 * @param {object} o.ports     sidecar -> { port, metricsPort }
 */
export function sidecarConfigs({ kc, secret, clientSecret, clientKey, ports }) {
  const pub = `${kc.urls.public}/realms/${REALM}`;
  const https = `${kc.urls.https}/realms/${REALM}`;
  const internal = `${kc.urls.internal}/realms/${REALM}`;
  const base = { url: pub, secret, clientSecret };
  const sharedAnyone = mw('shared-anyone', base);
  const sharedAdmins = mw('shared-admins', { ...base, extra: `${assertion('realm_access.roles', 'AnyOf', ['e2e-admin'])}
    UnauthorizedBehavior: Challenge` });
  // Keycloak names its public (http) issuer on every URL it is asked on; ValidIssuer pins it.
  const httpsProvider = `
      ValidIssuer: ${q(pub)}`;
  const httpsCookies = `
    CookieNamePrefix: "KcHttps"`;
  return {
    main: header(ports.main)
      + mw('kc', base)
      + mw('kc-groups', { ...base, extra: assertion('groups', 'AnyOf', ['team-a']) })
      + mw('kc-realm-roles', { ...base, extra: assertion('realm_access.roles', 'AllOf', ['e2e-user', 'e2e-admin']) })
      + mw('kc-client-roles', { ...base, extra: assertion('resource_access.sidecar.roles', 'AnyOf', ['viewer']) })
      + mw('kc-refresh', {
        ...base,
        clientId: 'sidecar-refresh',
        provider: `
      TokenRenewalThreshold: 0.5`,
        extra: `
    CookieNamePrefix: ${q(REFRESH_COOKIE_PREFIX)}`,
      })
      // Another Provider.Url is another session scope: its own cookie names, or the sidecar warns
      // that the two scopes would fight over one cookie in a browser that visits both.
      + mw('kc-https-file', { ...base, url: https, provider: `${httpsProvider}
      CABundleFile: ${q(kc.tls.caFile)}`, extra: httpsCookies })
      + mw('kc-https-inline', { ...base, url: https, provider: `${httpsProvider}
      CABundle: ${block(kc.tls.caPem, 8)}`, extra: httpsCookies }),

    // One session scope: same Secret, Provider.Url, ClientId and cookie settings.
    scope: header({ ...ports.scope, logLevel: 'info', inlineIssuer: pub })
      + sharedAnyone
      + mw('shared-team-a', { ...base, extra: `${assertion('groups', 'AnyOf', ['team-a'])}
    LogLevel: DEBUG` })
      + mw('shared-team-b', { ...base, extra: assertion('groups', 'AnyOf', ['team-b']) })
      + sharedAdmins
      + mw('shared-callback', base)
      + mw('decide-team-a', { ...base, extra: assertion('groups', 'AnyOf', ['team-a']) }),

    pages: header(ports.pages)
      + mw('pages-team-a', { ...base, extra: `${assertion('groups', 'AnyOf', ['team-a'])}
    ErrorPages:
      Unauthorized:
        FilePath: ${q(ERROR_PAGE_FILE)}` }),

    // The sidecar reaches Keycloak on its internal address; no ValidIssuer.
    internal: header(ports.internal) + mw('kc-internal', { ...base, url: internal }),

    jwt: header(ports.jwt) + mw('kc-jwt', {
      url: pub,
      secret,
      clientId: 'sidecar-jwt',
      provider: `
      ClientJwtPrivateKeyId: ${q(clientKey.kid)}
      ClientJwtPrivateKey: ${block(clientKey.privatePem, 8)}`,
    }),

    // Not a sidecar: the blocks the inline site pastes into the plugin's configuration.
    inline: { 'shared-anyone': sharedAnyone, 'shared-admins': sharedAdmins },
  };
}

// ---------------------------------------------------------------------------------------------
// Traefik's dynamic configuration.

const AUTH_HEADERS = ['X-Forwarded-User', 'X-Forwarded-Email', 'X-Forwarded-Groups', 'Cookie'];
const AUTH_HEADERS_REGEX = '(?i)^x-oidc-';

/** Routers and middlewares for every site and door. Router names: `<site>-<door>[-<n>]`. */
export function traefikDynamic({ sidecarPorts, whoamiPort, inline = {} }) {
  const routers = [];
  const middlewares = [];
  const seen = new Set();
  for (const [site, { sidecar, routes }] of Object.entries(SITES)) {
    const sidecarUrl = `http://127.0.0.1:${sidecarPorts[sidecar].port}`;
    for (const door of doorsOf(site)) {
      const host = `${site}.${door}.localhost`;
      Object.entries(routes).forEach(([prefix, name], i) => {
        const mwName = `${name.replace(':', '-')}-${door}`;
        const exact = prefix.startsWith('=');
        const p = exact ? prefix.slice(1) : prefix;
        const rule = p === '/' ? `Host(\`${host}\`)` : `Host(\`${host}\`) && ${exact ? 'Path' : 'PathPrefix'}(\`${p}\`)`;
        // The dedicated callback router wins over every prefix; prefixes win over the catch-all.
        const priority = exact ? 1000 : p === '/' ? 1 : 100;
        routers.push(`    ${site}-${door}${i ? `-${i}` : ''}:
      rule: ${q(rule)}
      priority: ${priority}
      entryPoints: [web]
      middlewares: [${mwName}]
      service: whoami`);
        if (seen.has(mwName)) return;
        seen.add(mwName);
        if (name.startsWith('inline:')) {
          middlewares.push(`    ${mwName}:
      plugin:
        ${PLUGIN_NAME}:
          sidecarUrl: ${q(sidecarUrl)}
          timeout: 5s
${inlineBlock(inline[name.slice('inline:'.length)])}`);
        } else if (door === 'fa') {
          const refresh = name === 'kc-refresh';
          middlewares.push(`    ${mwName}:
      forwardAuth:
        address: ${q(`${sidecarUrl}/auth/${name}`)}
        trustForwardHeader: true
        authResponseHeaders: [${AUTH_HEADERS.join(', ')}]
        authResponseHeadersRegex: ${q(AUTH_HEADERS_REGEX)}${refresh ? `
        addAuthCookiesToResponse: [${Array.from({ length: 8 }, (_, n) => `${REFRESH_COOKIE_PREFIX}.session.${n}`).join(', ')}]` : ''}`);
        } else {
          middlewares.push(`    ${mwName}:
      plugin:
        ${PLUGIN_NAME}:
          sidecarUrl: ${q(sidecarUrl)}
          middleware: ${q(name)}
          timeout: 5s
          authResponseHeadersRegex: ${q(AUTH_HEADERS_REGEX)}`);
        }
      });
    }
  }
  return `# Generated by tests/e2e/keycloak-config.mjs
http:
  routers:
${routers.join('\n')}
    api:
      rule: "Host(\`traefik.localhost\`)"
      entryPoints: [web]
      service: api@internal
  middlewares:
${middlewares.join('\n')}
  services:
    whoami:
      loadBalancer:
        servers:
          - url: ${q(`http://127.0.0.1:${whoamiPort}`)}
`;
}

/** The router names Traefik must show enabled. */
export function routerNames() {
  return Object.entries(SITES).flatMap(([site, { routes }]) => doorsOf(site).flatMap((door) => Object.keys(routes).map((_, i) => `${site}-${door}${i ? `-${i}` : ''}@file`)));
}

/**
 * A sidecar middleware block (mw's text) as the plugin's own keys: its name line dropped, its
 * keys moved under the plugin's, and "{{" written as {{`{{`}} because Traefik's file provider
 * runs the file through Go's text/template first (what the README tells users to do).
 */
function inlineBlock(text) {
  if (!text) throw new Error('no such inline block');
  return text.trimEnd().split('\n').slice(1).map((l) => `      ${l}`.replaceAll('{{', '{{`{{`}}')).join('\n');
}
