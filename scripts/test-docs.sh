#!/usr/bin/env bash
# The documentation's Traefik and compose blocks, checked by the real parsers (tests/docs.rs
# checks the rest under `cargo test`: tags, YAML/JSON, sidecar blocks through --check-config, the
# configuration reference against the parser's keys, links):
#   1. every `yaml traefik-dynamic` block in README.md and docs/ through Traefik's file provider
#      (its Go templating and decoder), every `yaml traefik-static` block through the static
#      decoder, every `text labels` block through the docker provider's label decoder, with the
#      Traefik version the suites run (tests/docs/traefikparse, built in a copy of its module);
#   2. the check itself refuses a block with an unknown key, one of each kind;
#   3. every `yaml compose` block through `docker compose config` when a compose client is here.
# Caches: the checker binary in ~/.cache/traefik-oidc-sidecar/ (keyed by its source's hash).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
started=$(date +%s)
TRAEFIK_MODULE="github.com/traefik/traefik/v3@${TRAEFIK_VERSION:-v3.6.25}"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/traefik-oidc-sidecar"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/test-docs.XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT
die() { echo "test-docs: $*" >&2; exit 1; }

src="$ROOT/tests/docs/traefikparse/main.go"
unformatted="$(gofmt -l "$src")"
[ -z "$unformatted" ] || die "gofmt: $unformatted"
hash="$( (cat "$src"; echo "$TRAEFIK_MODULE") | sha256sum | cut -c1-16)"
CHECK="$cache_dir/traefikparse-$hash"
if [ ! -x "$CHECK" ]; then
  mkdir -p "$cache_dir"
  # Inside a writable copy of the module (from the module cache when build-traefik.sh already
  # fetched it) the module is the main module, so its replace directives apply, and the checker
  # imports Traefik's own packages.
  # shellcheck source=scripts/go-module-source.sh
  . "$ROOT/scripts/go-module-source.sh"
  go_module_source "$TRAEFIK_MODULE" "$WORK"
  mv "$WORK/src" "$WORK/traefik"
  mkdir -p "$WORK/traefik/cmd/tos-traefikparse"
  cp "$src" "$WORK/traefik/cmd/tos-traefikparse/main.go"
  # -trimpath and CGO_ENABLED=0 as build-traefik.sh builds, so vet and build find Traefik's
  # packages in its build cache instead of compiling all of Traefik again.
  (cd "$WORK/traefik" && CGO_ENABLED=0 go vet -trimpath ./cmd/tos-traefikparse && CGO_ENABLED=0 go build -trimpath -o "$CHECK.tmp.$$" ./cmd/tos-traefikparse) >&2
  mv -f "$CHECK.tmp.$$" "$CHECK"
  find "$cache_dir" -maxdepth 1 -name 'traefikparse-*' ! -name "traefikparse-$hash" -delete
  echo "built $CHECK (go vet: clean)"
else
  echo "cached: $CHECK"
fi

pages=(README.md)
while IFS= read -r p; do pages+=("$p"); done < <(find docs -name '*.md' | sort)
echo "== Traefik's parsers on ${#pages[@]} pages"
"$CHECK" "${pages[@]}"

echo "== the check refuses an unknown key, each kind"
fence='```'
printf '%s\nhttp:\n  middlewares:\n    oidc:\n      forwardAuth:\n        adress: "http://x:4181/auth"\n%s\n' "$fence yaml traefik-dynamic" "$fence" > "$WORK/bad-dynamic.md"
printf '%s\nentryPoints:\n  web:\n    adress: ":80"\n%s\n' "$fence yaml traefik-static" "$fence" > "$WORK/bad-static.md"
printf '%s\ntraefik.http.middlewares.oidc.forwardauth.adress=http://x:4181/auth\n%s\n' "$fence text labels" "$fence" > "$WORK/bad-labels.md"
for bad in dynamic static labels; do
  "$CHECK" -expect-failure "$WORK/bad-$bad.md"
done

echo "== compose blocks"
compose=()
if docker compose version >/dev/null 2>&1; then compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then compose=(docker-compose); fi
n=0
for page in "${pages[@]}"; do
  # Each `yaml compose` block to its own file, named by page and line.
  awk -v out="$WORK/compose" -v page="$(echo "$page" | tr / _)" '
    /^[[:space:]]*```yaml compose[[:space:]]*$/ { f = out "-" page "-" NR ".yml"; inb = 1; next }
    inb && /^[[:space:]]*```/ { inb = 0; close(f); next }
    inb { print > f }' "$page"
done
for f in "$WORK"/compose-*.yml; do
  [ -e "$f" ] || continue
  n=$((n + 1))
  if [ "${#compose[@]}" -gt 0 ]; then
    "${compose[@]}" -f "$f" config -q || die "compose config refused $(basename "$f")"
  else
    echo "no compose client here: $(basename "$f") only parsed as YAML (tests/docs.rs); CI installs one"
  fi
done
echo "$n compose blocks"
echo "documentation checks: $(( $(date +%s) - started ))s"
