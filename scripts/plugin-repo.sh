#!/usr/bin/env bash
# Writes the Traefik plugin's own repository: the tree the Plugin Catalog can index.
#
#   scripts/plugin-repo.sh OUT_DIR [TAG]
#
# The catalog lists public GitHub repositories whose language is Go and that carry the
# `traefik-plugin` topic, and reads `.traefik.yml` and `go.mod` from the ROOT of a tagged module.
# This repository is mostly Rust and keeps the shim in traefik-plugin/, so the shim is published
# from a second repository whose module root IS the shim package. traefik-plugin/ here stays the
# only source: this script copies it, nothing generated is committed here.
#
# OUT_DIR must not exist or be empty. It becomes a git repository with one commit on `main` and
# an annotated tag (default: v<version of Cargo.toml>). Author, committer and tagger, their
# dates (SOURCE_DATE_EPOCH, else the date of this repository's HEAD commit), file modes and the
# git configuration are fixed, so the same sources give the same tree, commit and tag ids.
# stdout: the commit id and the tag, on one line. docs/plugin-catalog.md has the release steps.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PLUGIN="$ROOT/traefik-plugin"
# The published module. Yaegi binds `import` to the package clause (basePkg), and the catalog
# wants module and import to start with github.com/<owner>/<repo> of the repository it scanned.
MODULE="${PLUGIN_MODULE:-github.com/traefik-oidc-sidecar/traefik-oidc-sidecar-plugin}"
MAIN_PROJECT="https://github.com/traefik-oidc-sidecar/traefik-oidc-sidecar"

die() {
	printf 'plugin-repo: %s\n' "$*" >&2
	exit 1
}

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: scripts/plugin-repo.sh OUT_DIR [TAG]"
OUT="$1"
version="$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n 1)"
TAG="${2:-v$version}"
# The catalog refuses a repository with any tag that is not strict semver (vX.Y.Z[-pre][+build]).
[[ "$TAG" =~ ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$ ]] ||
	die "tag $TAG is not strict semver (vX.Y.Z): the catalog would refuse the repository"
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
	die "$OUT exists and is not empty; refusing to write over it"
fi

# The package clause every file shares is the manifest's basePkg.
basepkg="$(sed -n 's/^package \([A-Za-z_][A-Za-z0-9_]*\)$/\1/p' "$PLUGIN/config.go" | head -n 1)"
[ -n "$basepkg" ] || die "no package clause in traefik-plugin/config.go"
go_version="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$ROOT/go.mod")"
[ -n "$go_version" ] || die "no go directive in go.mod"

if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	epoch="$SOURCE_DATE_EPOCH"
else
	epoch="$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null)" || die "set SOURCE_DATE_EPOCH (no git history here)"
fi
[[ "$epoch" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be seconds since 1970, got $epoch"
source_commit="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
# Say so when the copied files differ from that commit.
if ! git -C "$ROOT" diff --quiet HEAD -- traefik-plugin .traefik.yml go.mod LICENSE Cargo.toml 2>/dev/null; then
	source_commit="$source_commit-dirty"
fi

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# The package, its tests and their fixtures (testdata/). The tests are the package's own and pass
# at the new root; the load test (traefik-plugin/loadtest) is a separate module that requires
# yaegi, which the catalog forbids in a plugin's module, so it stays here.
for f in "$PLUGIN"/*.go; do
	install -m 0644 "$f" "$OUT/"
done
(cd "$PLUGIN" && find testdata -type f) | LC_ALL=C sort | while read -r f; do
	install -D -m 0644 "$PLUGIN/$f" "$OUT/$f"
done
install -m 0644 "$ROOT/LICENSE" "$OUT/LICENSE"

cat >"$OUT/go.mod" <<EOF
// The OIDC sidecar's Traefik plugin: standard library only (Yaegi resolves no modules, and the
// Plugin Catalog refuses a plugin that requires traefik, yaegi or mesh).
module $MODULE

go $go_version
EOF

# The manifest: this repository's .traefik.yml from displayName on, with `import` set to the
# new module root, where the package now lives.
{
	cat <<EOF
# Traefik plugin manifest, read by Traefik and the Plugin Catalog from the module root.
# basePkg is the package clause of the .go files here (Yaegi binds the import to it). The
# catalog calls New with testData under a 10 s limit; New makes no network call, so the
# placeholder sidecar host never has to exist.
EOF
	sed -n '/^displayName:/,$p' "$ROOT/.traefik.yml" | sed "s#^import: .*#import: $MODULE#"
} >"$OUT/.traefik.yml"
grep -qx "import: $MODULE" "$OUT/.traefik.yml" || die ".traefik.yml: no import line to rewrite"
grep -qx "basePkg: $basepkg" "$OUT/.traefik.yml" || die ".traefik.yml: basePkg is not $basepkg"

cat >"$OUT/.gitignore" <<'EOF'
# Go test and editor leftovers; the plugin has no build output.
*.test
*.out
EOF

cat >"$OUT/README.md" <<EOF
# OIDC sidecar — Traefik plugin

OpenID Connect login for any service behind Traefik. This plugin is the thin half of
[traefik-oidc-sidecar]($MAIN_PROJECT): for each request it asks the **sidecar** (a separate
service you run next to Traefik) whether the request may pass, the way Traefik's \`forwardAuth\`
middleware would. The sidecar does the OpenID Connect work (login, sessions, token refresh,
claim checks); the plugin only relays its verdict:

- **allowed**: the identity headers the sidecar answers with (\`X-Forwarded-User\`,
  \`X-Forwarded-Email\`, \`X-Forwarded-Groups\` by default) are copied onto the request, after
  every client-sent copy of them is removed in any spelling (\`X_Forwarded_User\`, ...), and the
  request goes on to your service. The session cookies never reach it.
- **not allowed**: the client gets the sidecar's answer (a redirect to your identity provider's
  login, 401 or 403).
- **sidecar unreachable or too slow**: 503. The plugin fails closed.

Unlike \`forwardAuth\`, it does not wrap the response writer, so websockets and streaming work.
It uses the Go standard library only.

**It does nothing on its own: you need the sidecar running.** Setup, the sidecar's configuration
and the security notes are in the [main project]($MAIN_PROJECT).

## Use

Static configuration (pin the exact version):

\`\`\`yaml
experimental:
  plugins:
    oidcsidecar:
      moduleName: $MODULE
      version: $TAG
\`\`\`

Dynamic configuration:

\`\`\`yaml
http:
  middlewares:
    oidc:
      plugin:
        oidcsidecar:
          sidecarUrl: http://traefik-oidc-sidecar:4181
          middleware: default
\`\`\`

Or with Docker labels:

\`\`\`
traefik.http.middlewares.oidc.plugin.oidcsidecar.sidecarurl=http://traefik-oidc-sidecar:4181
traefik.http.middlewares.oidc.plugin.oidcsidecar.middleware=default
traefik.http.routers.app.middlewares=oidc
\`\`\`

## Configuration

| key | default | meaning |
|---|---|---|
| \`sidecarUrl\` | (required) | the sidecar's base URL, \`http\` or \`https\`; only Traefik should reach it |
| \`middleware\` | \`default\` | the sidecar middleware (OIDC client configuration) to ask |
| \`timeout\` | \`5s\` | bound on the whole sidecar round trip; past it the request gets 503 |
| \`authResponseHeaders\` | the three \`X-Forwarded-*\` above | sidecar answer headers copied onto an allowed request |
| \`authResponseHeadersRegex\` | (none) | further answer headers to copy, as in \`forwardAuth\` (unanchored) |
| \`registrationToken\` | (none) | bearer token for registering an inline block; must equal the sidecar's \`inline.registrationToken\` |

Any other key is an **inline block**: a traefik-oidc-auth style middleware block (\`Provider\`,
\`Secret\`, \`Scopes\`, ...) that the plugin hands to the sidecar instead of naming a
\`middleware\`. The main project's README explains what the sidecar accepts inline.

## Source

This repository is generated from \`traefik-plugin/\` of $MAIN_PROJECT (commit
\`$source_commit\`) by its \`scripts/plugin-repo.sh\`. Report issues and send changes there.

MIT licensed, see LICENSE.
EOF

# One commit and one annotated tag, independent of whoever runs this: no global or system git
# configuration (no hooks, signing, templates or autocrlf), fixed identities and dates.
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME="traefik-oidc-sidecar" GIT_AUTHOR_EMAIL="traefik-oidc-sidecar@users.noreply.github.com"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
export GIT_AUTHOR_DATE="@$epoch +0000" GIT_COMMITTER_DATE="@$epoch +0000"
git_() { git -C "$OUT" -c init.defaultBranch=main -c core.autocrlf=false -c core.fileMode=true "$@"; }
git_ init -q --template=
git_ add -A
git_ commit -q -m "traefik-oidc-sidecar plugin $TAG" -m "Generated from traefik-plugin/ of $MAIN_PROJECT at $source_commit."
git_ tag -a "$TAG" -m "$TAG"
printf '%s %s\n' "$(git_ rev-parse HEAD)" "$TAG"
