#!/usr/bin/env bash
# Installs yaegi v0.16.1 (the interpreter Traefik v3 embeds) into GOBIN (default $GOPATH/bin)
# when it is missing or another version, and otherwise reuses it.
#
#   YAEGI="$(bash scripts/install-yaegi.sh)"   -> stdout is the binary's path and nothing else
#
# Needs Go and the Go module proxy (only when it installs). Everything else goes to stderr.
set -euo pipefail

YAEGI_VERSION="v0.16.1"

command -v go >/dev/null || {
	echo "install-yaegi: go is not on PATH" >&2
	exit 1
}
gobin="$(go env GOBIN)"
if [ -z "$gobin" ]; then
	gobin="$(go env GOPATH | cut -d: -f1)/bin"
fi
yaegi="$gobin/yaegi"
if [ -x "$yaegi" ] && go version -m "$yaegi" 2>/dev/null | grep -qE "^[[:space:]]+mod[[:space:]]+github.com/traefik/yaegi[[:space:]]+$YAEGI_VERSION([[:space:]]|$)"; then
	echo "yaegi $YAEGI_VERSION already installed: $yaegi" >&2
else
	echo "installing yaegi $YAEGI_VERSION into $gobin" >&2
	# Outside any module, so no go.mod around the caller is touched.
	work="$(mktemp -d)"
	trap 'rm -rf "$work"' EXIT
	(cd "$work" && GOBIN="$gobin" go install "github.com/traefik/yaegi/cmd/yaegi@$YAEGI_VERSION") >&2
fi
printf '%s\n' "$yaegi"
