#!/usr/bin/env python3
"""Extracts every traefik-oidc-auth middleware block of README.md and examples/ into the
golden fixtures of traefik-plugin/testdata/inline/ (layout in README.md next to this file).

Run from anywhere: python3 traefik-plugin/testdata/inline/extract.py
It writes NAME.yaml, NAME.json, NAME.labels and NAME.indexed.labels; the canonical bytes
(NAME.canonical.json, NAME.sha256) are written by the Go test with UPDATE_GOLDEN=1 and the
label maps (NAME*.labels.json) by the load test with -update-golden. Needs PyYAML.
"""
import json
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
PLUGIN = "oidcsidecar"


def blocks_in(doc, source):
    """Yields (name, block) for every middleware block under a sidecar `middlewares:` key."""
    if isinstance(doc, dict):
        mws = doc.get("middlewares")
        if isinstance(mws, dict):
            for name, block in mws.items():
                if isinstance(block, dict) and any(k.lower() == "provider" for k in block):
                    yield name, block
        for v in doc.values():
            if isinstance(v, dict):
                yield from blocks_in(v, source)
            if isinstance(v, str) and "middlewares:" in v:
                try:
                    inner = yaml.safe_load(v)
                except yaml.YAMLError:
                    continue
                yield from blocks_in(inner, source)


# One block written for these fixtures: every key shape the README's blocks leave out (Headers
# with templates, AuthorizationParams, lists of URLs, floats, integers, booleans, error pages).
HANDWRITTEN = """
Provider:
  Url: https://sso.example.com/realms/main
  ClientId: traefik
  ClientSecret: "${file:/run/secrets/kc}"
  UsePkce: true
  ValidateAudience: false
  TokenRenewalThreshold: 0.8
  TokenValidation: IdToken
Secret: "${SESSION_SECRET}"
Scopes: [openid, profile, email, offline_access]
CallbackUri: /oidc/callback
LogoutUri: /oidc/logout
PostLogoutRedirectUri: https://www.example.com/bye
ValidPostLogoutRedirectUris: [https://www.example.com/bye, https://app.example.com/]
ValidPostLoginRedirectUris: [https://app.example.com/]
CookieNamePrefix: MyApp
SessionCookie:
  Path: /
  Domain: .example.com
  Secure: true
  HttpOnly: true
  SameSite: lax
  MaxAge: 86400
UnauthenticatedBehavior: Auto
LogLevel: INFO
AuthorizationParams:
  acr_values: mfa
  ui_locales: de
RequestedResources: [https://api.example.com]
AuthorizationCookie:
  Name: access_token
Authorization:
  CheckOnEveryRequest: true
  AssertClaims:
    - Name: groups
      AnyOf: [admins, ops]
    - Name: roles
      AllOf: [reader, writer]
Headers:
  - Name: X-Oidc-Username
    Value: "{{ .claims.preferred_username }}"
  - Name: X-Roles
    Values: '{{ .claims.groups | withPrefix "role:" | mapToJsonArray }}'
    IncludeWhen: Always
"""


def sources():
    yield "handwritten-every-shape", yaml.safe_load(HANDWRITTEN)
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    for i, m in enumerate(re.finditer(r"```yaml\n(.*?)```", readme, re.S)):
        text = m.group(1)
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        for name, block in blocks_in(doc, "README"):
            yield "readme-%d-%s" % (i, name), block
    for sub in sorted(os.listdir(os.path.join(ROOT, "examples"))):
        d = os.path.join(ROOT, "examples", sub)
        for fn in sorted(os.listdir(d)):
            if not fn.endswith((".yaml", ".yml")):
                continue
            with open(os.path.join(d, fn)) as f:
                for doc in yaml.safe_load_all(f):
                    for name, block in blocks_in(doc, fn):
                        yield "examples-%s-%s-%s" % (sub, fn.rsplit(".", 1)[0], name), block


def scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    return str(v)


def flatten(prefix, v, indexed, out):
    """Docker labels for v. Key case is lower-cased on purpose (labels are matched
    case-insensitively). Lists of scalars are comma-joined unless indexed (or an element holds
    a comma); lists of objects use [i] (or .i when indexed)."""
    if isinstance(v, dict):
        for k, e in v.items():
            flatten(prefix + "." + str(k).lower(), e, indexed, out)
    elif isinstance(v, list):
        simple = all(not isinstance(e, (dict, list)) for e in v)
        if simple and not indexed and v and all("," not in scalar(e) for e in v):
            out.append((prefix, ",".join(scalar(e) for e in v)))
            return
        for i, e in enumerate(v):
            key = "%s.%d" % (prefix, i) if indexed else "%s[%d]" % (prefix, i)
            flatten(key, e, indexed, out)
    else:
        out.append((prefix, scalar(v)))


def main():
    seen = set()
    for name, block in sources():
        name = re.sub(r"[^a-z0-9-]+", "-", name.lower())
        if name in seen:
            sys.exit("duplicate fixture name " + name)
        seen.add(name)
        base = os.path.join(HERE, name)
        with open(base + ".yaml", "w") as f:
            yaml.safe_dump(block, f, sort_keys=False, allow_unicode=True)
        with open(base + ".json", "w") as f:
            json.dump(block, f, indent=2, ensure_ascii=False)
            f.write("\n")
        for suffix, indexed in ((".labels", False), (".indexed.labels", True)):
            out = []
            flatten("traefik.http.middlewares.%s.plugin.%s" % (name, PLUGIN), block, indexed, out)
            with open(base + suffix, "w") as f:
                for k, v in out:
                    if "\n" in v:
                        sys.exit("%s: %s has a newline, which a label cannot hold" % (name, k))
                    f.write("%s=%s\n" % (k, v))
        print(name)


if __name__ == "__main__":
    main()
