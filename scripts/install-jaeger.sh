#!/usr/bin/env bash
# Builds Jaeger v2 (a real OTLP receiver with an in-memory store and a query API) from its Go
# module source and caches the binary in $GOPATH/bin (~/go/bin). scripts/test-observe.sh uses it
# to receive the sidecar's traces.
#
#   scripts/install-jaeger.sh           -> prints the binary path on the last line of stdout
#
# Why not `go install github.com/jaegertracing/jaeger/cmd/jaeger@v1.75.0`: Jaeger's go.mod has
# replace directives, which `go install pkg@version` refuses. Building inside a copy of the
# downloaded module makes it the main module, so its replaces apply (the same way as
# scripts/build-traefik.sh). Every tool's output goes to stderr: stdout is the path only.
set -euo pipefail

version="${JAEGER_VERSION:-v1.75.0}"
gobin="$(go env GOPATH 2>/dev/null || printf '%s' "$HOME/go")/bin"
bin="$gobin/jaeger-$version"

log() { printf 'install-jaeger: %s\n' "$*" >&2; }

if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
  log "cached: $bin"
  printf '%s\n' "$bin"
  exit 0
fi

command -v go >/dev/null || { log "go is required to build Jaeger $version"; exit 1; }
mkdir -p "$gobin"

work="$(mktemp -d "${TMPDIR:-/tmp}/install-jaeger.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"' EXIT

started=$(date +%s)
log "downloading github.com/jaegertracing/jaeger@$version from the Go module proxy"
# shellcheck source=scripts/go-module-source.sh
. "$(dirname "$0")/go-module-source.sh"
go_module_source "github.com/jaegertracing/jaeger@$version" "$work"

log "building ./cmd/jaeger (this takes several minutes on a small machine)"
(cd "$work/src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/jaeger" ./cmd/jaeger) >&2

mv -f "$work/jaeger" "$bin.tmp.$$"
mv -f "$bin.tmp.$$" "$bin"
"$bin" version >&2 || true
log "built $bin in $(( $(date +%s) - started ))s"
printf '%s\n' "$bin"
