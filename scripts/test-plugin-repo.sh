#!/usr/bin/env bash
# Checks the plugin's own repository, the tree the Plugin Catalog indexes (scripts/plugin-repo.sh):
#   1. two builds from the same sources give the same commit and tag ids (reproducible);
#   2. the repository: one annotated strict-semver tag on HEAD, a clean tree, the root files the
#      catalog page and users need (README.md naming every plugin key, our LICENSE, .gitignore);
#   3. the catalog's rules on the TAGGED tree (git archive, what a download of the tag holds):
#      import == module path, basePkg == the package clause of every .go file at the root,
#      go.mod requires nothing (so no traefik, yaegi or mesh), .traefik.yml has its keys;
#      gofmt, go vet, go test, and yaegi test (Traefik's interpreter, GOPATH mode) pass there;
#      the catalog-style load test (traefik-plugin/loadtest: testData decoded into CreateConfig,
#      New within 10 s with no network, the runtime checks) passes on it;
#   4. the real Traefik v3.6.25 loads the tree as a local plugin under the catalog module name,
#      with testData as the middleware configuration, in front of whoami and the real sidecar
#      (tests/e2e/plugin-repo.mjs): the sidecar's verdicts come back, spoofed identity headers
#      are stripped, and a sidecar that is down gives 503.
# Installs what it lacks (yaegi, the OP's and the e2e suite's npm packages, Traefik through
# scripts/build-traefik.sh) and builds the debug sidecar when SIDECAR_BIN is not set.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
started=$(date +%s)

section() { printf '\n---- plugin repository: %s\n' "$*"; }
die() {
	printf 'test-plugin-repo: FAILED: %s\n' "$*" >&2
	exit 1
}
passed=0
ok() {
	passed=$((passed + 1))
	printf 'ok    %s\n' "$*"
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/test-plugin-repo.XXXXXX")"
artifacts="${E2E_ARTIFACTS:-$ROOT/tests/e2e/artifacts}"
# Ends only the process groups tests/e2e/plugin-repo.mjs recorded, should Node die hard.
cleanup() {
	if [ -f "$artifacts/plugin-repo/pids" ]; then
		while read -r pid _name; do
			[ -n "$pid" ] && kill -0 -- "-$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null || true
		done <"$artifacts/plugin-repo/pids"
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

section "build the tree twice"
first="$(bash scripts/plugin-repo.sh "$WORK/repo")"
second="$(bash scripts/plugin-repo.sh "$WORK/again")"
[ "$first" = "$second" ] || die "two builds differ: $first vs $second"
ok "reproducible: commit and tag $first"
# Another date gives another commit: the date really is the one the script was given.
other="$(SOURCE_DATE_EPOCH=1 bash scripts/plugin-repo.sh "$WORK/other")"
[ "$other" != "$first" ] || die "SOURCE_DATE_EPOCH had no effect"
ok "SOURCE_DATE_EPOCH sets the dates"
read -r commit tag <<<"$first"

section "the repository"
git_() { git -C "$WORK/repo" "$@"; }
[ "$(git_ tag --list)" = "$tag" ] || die "tags: $(git_ tag --list | tr '\n' ' '), want only $tag"
[ "$(git_ cat-file -t "$tag")" = tag ] || die "$tag is not an annotated tag"
[ "$(git_ rev-parse "$tag^{commit}")" = "$commit" ] || die "$tag does not point at HEAD"
[[ "$tag" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "$tag is not vX.Y.Z"
[ "$(git_ symbolic-ref --short HEAD)" = main ] || die "branch is not main"
[ -z "$(git_ status --porcelain)" ] || die "uncommitted files in the tree"
ok "one annotated semver tag ($tag) on HEAD of main, clean tree"
if bash scripts/plugin-repo.sh "$WORK/repo" >/dev/null 2>&1; then die "plugin-repo.sh wrote over a non-empty directory"; fi
if bash scripts/plugin-repo.sh "$WORK/badtag" v1.0 >/dev/null 2>&1; then die "plugin-repo.sh accepted tag v1.0"; fi
ok "refuses a non-empty OUT_DIR and a non-semver tag"

MODULE_DIR="$WORK/module"
mkdir -p "$MODULE_DIR"
git_ archive "$tag" | tar -x -C "$MODULE_DIR"
cd "$MODULE_DIR"
for f in go.mod .traefik.yml README.md LICENSE .gitignore; do
	[ -f "$f" ] || die "$f missing at the root of $tag"
done
cmp -s LICENSE "$ROOT/LICENSE" || die "LICENSE differs from the project's"
for key in $(sed -n '/^type Config struct/,/^}/s/.*json:"\([A-Za-z]*\),omitempty".*/\1/p' "$ROOT/traefik-plugin/config.go"); do
	grep -q "\`$key\`" README.md || die "README.md does not document the plugin key $key"
done
grep -q "traefik-oidc-sidecar/traefik-oidc-sidecar" README.md || die "README.md does not link the main project"
ok "root files: go.mod, .traefik.yml, README.md (every Config key, the main project), LICENSE, .gitignore"
if git -C "$WORK/repo" ls-files | grep -q '^loadtest/\|go.sum'; then die "the load test module or a go.sum was published"; fi
ok "no nested module, no go.sum"

section "catalog rules"
module="$(sed -n 's/^module \(.*\)$/\1/p' go.mod)"
import="$(sed -n 's/^import: *\(.*\)$/\1/p' .traefik.yml)"
basepkg="$(sed -n 's/^basePkg: *\(.*\)$/\1/p' .traefik.yml)"
[ -n "$module" ] && [ "$module" = "$import" ] || die "import ($import) is not the module path ($module)"
[[ "$module" == github.com/*/* ]] || die "module $module is not github.com/<owner>/<repo>"
ok "import == module path ($module)"
if grep -nE '^[[:space:]]*(require|replace|exclude|retract|toolchain|tool)\b' go.mod; then
	die "go.mod has the directives above; the plugin is standard library only"
fi
if grep -niE '(traefik/(traefik|yaegi|mesh)|containous/)' go.mod; then die "go.mod names a module the catalog forbids"; fi
ok "go.mod requires nothing (no traefik, yaegi or mesh modules)"
for key in displayName type import basePkg summary testData; do
	grep -q "^$key:" .traefik.yml || die ".traefik.yml has no $key"
done
grep -qx 'type: middleware' .traefik.yml || die ".traefik.yml: type is not middleware"
ok ".traefik.yml has displayName, type: middleware, import, basePkg, summary, testData"
count=0
for f in *.go; do
	pkg="$(sed -n 's/^package \([A-Za-z0-9_]*\)$/\1/p' "$f" | head -n 1)"
	[ "$pkg" = "$basepkg" ] || die "$f: package $pkg, but basePkg is $basepkg"
	count=$((count + 1))
done
[ "$count" -gt 0 ] || die "no .go files at the module root"
ok "basePkg $basepkg == the package clause of all $count .go files at the root"

section "gofmt, go vet, go test in the tree"
unformatted="$(gofmt -l .)"
[ -z "$unformatted" ] || die "gofmt: $unformatted"
go vet ./... || die "go vet"
go test -count=1 ./... >"$WORK/go-test.log" 2>&1 || {
	tail -n 40 "$WORK/go-test.log"
	die "go test"
}
ok "gofmt, go vet, go test: $(tail -n 1 "$WORK/go-test.log")"

section "yaegi test (GOPATH mode, as Traefik lays a plugin out)"
YAEGI="$(bash "$ROOT/scripts/install-yaegi.sh")"
dest="$WORK/gopath/src/$module"
mkdir -p "$dest"
cp -R "$MODULE_DIR"/. "$dest/"
(cd "$dest" && GOPATH="$WORK/gopath" GO111MODULE=off "$YAEGI" test . >"$WORK/yaegi-test.log" 2>&1) || {
	tail -n 40 "$WORK/yaegi-test.log"
	die "yaegi test"
}
ok "yaegi test: $(tail -n 1 "$WORK/yaegi-test.log")"

section "catalog-style load test (traefik-plugin/loadtest) on the tree"
# CGO off: Go's own resolver, so the load test's guard sees every DNS lookup New might make.
(cd "$ROOT/traefik-plugin/loadtest" && CGO_ENABLED=0 go run . -root "$MODULE_DIR") >"$WORK/loadtest.log" 2>&1 || {
	grep -E '^FAIL' "$WORK/loadtest.log" || tail -n 40 "$WORK/loadtest.log"
	die "load test"
}
grep -E '^ok +(New|decode|yaegi import|basePkg|import|root go.mod)' "$WORK/loadtest.log"
ok "$(grep '^loadtest:' "$WORK/loadtest.log")"

section "the real Traefik loads the tree as a local plugin"
cd "$ROOT"
[ -d tests/op/node_modules ] || (cd tests/op && npm ci --no-audit --no-fund --loglevel=error)
[ -d tests/e2e/node_modules/ws ] || (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
if [ -z "${SIDECAR_BIN:-}" ]; then
	cargo build --locked --bin traefik-oidc-sidecar
	SIDECAR_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/traefik-oidc-sidecar"
fi
TRAEFIK_BIN="${TRAEFIK_BIN:-$(bash scripts/build-traefik.sh | tail -n 1)}"
SIDECAR_BIN="$SIDECAR_BIN" TRAEFIK_BIN="$TRAEFIK_BIN" E2E_ARTIFACTS="$artifacts" \
	node tests/e2e/plugin-repo.mjs "$MODULE_DIR" || die "Traefik with the plugin repository"
ok "Traefik $("$TRAEFIK_BIN" version 2>/dev/null | sed -n 's/^Version: *//p') with the tree as $module"

printf '\ntest-plugin-repo: %s checks passed in %ss\n' "$passed" "$(($(date +%s) - started))"
