#!/usr/bin/env bash
# Sourced by scripts/build-traefik.sh, scripts/install-jaeger.sh and scripts/test-docs.sh.
#
# go_module_source MODULE@VERSION WORK: downloads the module from the Go module proxy and copies
# its source to WORK/src, writable. Building inside that copy makes the module the main module,
# so its go.mod's replace directives apply (`go install pkg@version` refuses a module that has
# them). go's output goes to stderr: the callers' stdout is their binary's path only.
go_module_source() {
  local module="$1" work="$2" info dir
  # -json prints the module's cache directory ("Dir"); run outside any module so no go.mod
  # interferes.
  info="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$module")"
  dir="$(printf '%s' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n1)"
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    printf 'go mod download %s gave no Dir:\n%s\n' "$module" "$info" >&2
    return 1
  fi
  # The module cache is read-only.
  cp -R "$dir" "$work/src"
  chmod -R u+w "$work/src"
}
