#!/usr/bin/env bash
# Builds a pinned Traefik v3 from its Go module source and caches the binary.
#
#   scripts/build-traefik.sh            -> prints the binary path on the last line of stdout
#   TRAEFIK_VERSION=v3.6.x scripts/build-traefik.sh
#
# Pinned version: v3.6.25. The intended pin was v3.6.24, but the Go module proxy answers
# "403 This module version is not available." for github.com/traefik/traefik/v3@v3.6.24 (its
# .info, .mod and .zip), so it cannot be downloaded; v3.6.25 (2026-07-31) is the newest v3.6.x the
# proxy serves, and it builds with Go 1.26.
#
# Why not `go install github.com/traefik/traefik/v3/cmd/traefik@vX`: Traefik's go.mod has
# replace directives, which `go install pkg@version` refuses. Building inside a copy of the
# downloaded module makes it the main module, so its replaces apply (their targets are ordinary
# modules served by the Go module proxy).
#
# The module source has no generated web UI assets, so the binary has no dashboard; the API,
# providers, middlewares and the plugin loader are complete, which is all the tests need.
set -euo pipefail

version="${TRAEFIK_VERSION:-v3.6.25}"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/traefik-oidc-sidecar"
bin="$cache_dir/traefik-$version"

log() { printf 'build-traefik: %s\n' "$*" >&2; }

if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
  log "cached: $bin"
  printf '%s\n' "$bin"
  exit 0
fi

command -v go >/dev/null || { log "go is required (Traefik $version needs the Go version its go.mod names)"; exit 1; }
mkdir -p "$cache_dir"

work="$(mktemp -d "${TMPDIR:-/tmp}/build-traefik.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"' EXIT

started=$(date +%s)
log "downloading github.com/traefik/traefik/v3@$version from the Go module proxy"
# shellcheck source=scripts/go-module-source.sh
. "$(dirname "$0")/go-module-source.sh"
go_module_source "github.com/traefik/traefik/v3@$version" "$work"

# Version stamp like the official build (shows in `traefik version` and the startup log).
ldflags="-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$version -X github.com/traefik/traefik/v3/pkg/version.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
log "building ./cmd/traefik (this takes several minutes on a small machine)"
# Its output goes to stderr: stdout carries only the binary's path, on its last line.
(cd "$work/src" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$work/traefik" ./cmd/traefik) >&2

"$work/traefik" version >&2
mv -f "$work/traefik" "$bin.tmp.$$"
mv -f "$bin.tmp.$$" "$bin"
log "built $bin in $(( $(date +%s) - started ))s"
printf '%s\n' "$bin"
