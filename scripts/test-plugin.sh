#!/usr/bin/env bash
# Runs every check of the Traefik middleware plugin ("shim") in traefik-plugin/:
# gofmt, go vet, go test, the same tests under Yaegi v0.16.1 (the interpreter Traefik embeds)
# in a GOPATH layout, and the catalog-style load test (traefik-plugin/loadtest).
# Runnable from any directory; needs Go and the Go module proxy only. Installs yaegi into
# GOBIN when it is missing or another version (scripts/install-yaegi.sh), and otherwise reuses it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PLUGIN="$ROOT/traefik-plugin"
MODULE="github.com/traefik-oidc-sidecar/traefik-oidc-sidecar"
YAEGI_VERSION="v0.16.1"

section() { printf '\n==== %s ====\n' "$*"; }
die() {
	printf 'test-plugin: FAILED: %s\n' "$*" >&2
	exit 1
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/test-plugin.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# Summarise a verbose Go-style test log: failures, then "N passed, M failed".
summarise() {
	local log="$1" label="$2" passed failed
	passed="$(grep -cE -- '^ *--- PASS' "$log" || true)"
	failed="$(grep -cE -- '^ *--- FAIL' "$log" || true)"
	grep -E -- '^ *--- FAIL|^panic:' "$log" || true
	printf '%s: %s passed, %s failed (tests and subtests)\n' "$label" "$passed" "$failed"
	TOTAL_PASSED=$((TOTAL_PASSED + passed))
}
TOTAL_PASSED=0

section "toolchain"
command -v go >/dev/null || die "go is not on PATH"
go version
YAEGI="$(bash "$ROOT/scripts/install-yaegi.sh")" || die "yaegi $YAEGI_VERSION could not be installed"

section "gofmt -l traefik-plugin"
unformatted="$(gofmt -l "$PLUGIN")"
if [ -n "$unformatted" ]; then
	printf '%s\n' "$unformatted"
	die "gofmt: the files above need gofmt -w"
fi
echo "gofmt: clean"

section "go vet ./... (shim, then load test module)"
(cd "$PLUGIN" && go vet ./...) || die "go vet (shim)"
(cd "$PLUGIN/loadtest" && go vet ./...) || die "go vet (loadtest)"
echo "go vet: clean"

section "go test ./... (compiled)"
if ! (cd "$PLUGIN" && go test -count=1 -v ./... >"$WORK/go-test.log" 2>&1); then
	tail -n 60 "$WORK/go-test.log"
	summarise "$WORK/go-test.log" "go test"
	die "go test"
fi
grep -E '^(ok|FAIL|---)' "$WORK/go-test.log" | grep -v -- '--- PASS' || true
summarise "$WORK/go-test.log" "go test"

section "yaegi test ($YAEGI_VERSION, GOPATH mode)"
# Yaegi resolves imports only under $GOPATH/src/<import path>, never through go.mod, so the
# module is copied there, as Traefik unzips a plugin into its own GOPATH. The load test
# directory is a separate module and stays out.
GOPATH_DIR="$WORK/gopath"
DEST="$GOPATH_DIR/src/$MODULE"
mkdir -p "$DEST/traefik-plugin"
cp "$ROOT/go.mod" "$ROOT/.traefik.yml" "$DEST/"
cp "$PLUGIN"/*.go "$DEST/traefik-plugin/"
# The golden fixtures of the inline-block tests (testdata/inline, see its README.md).
cp -R "$PLUGIN/testdata" "$DEST/traefik-plugin/"
if ! (cd "$DEST/traefik-plugin" && GOPATH="$GOPATH_DIR" GO111MODULE=off "$YAEGI" test -v . >"$WORK/yaegi-test.log" 2>&1); then
	tail -n 60 "$WORK/yaegi-test.log"
	summarise "$WORK/yaegi-test.log" "yaegi test"
	die "yaegi test"
fi
tail -n 1 "$WORK/yaegi-test.log"
summarise "$WORK/yaegi-test.log" "yaegi test"

section "catalog-style load test (traefik-plugin/loadtest)"
# CGO off so the load test's guard sees every DNS lookup (Go's own resolver only). -compose: the
# compose example's plugin door, from its labels through Traefik's label decoding to the shim.
if ! (cd "$PLUGIN/loadtest" && CGO_ENABLED=0 go run . -root "$ROOT" -compose "$ROOT/examples/docker-compose/docker-compose.yml" | tee "$WORK/loadtest.log"); then
	die "load test"
fi
loadtest_passed="$(grep -c '^ok ' "$WORK/loadtest.log" || true)"
TOTAL_PASSED=$((TOTAL_PASSED + loadtest_passed))

section "summary"
echo "gofmt, go vet, go test, yaegi test and the load test all passed."
printf 'test-plugin: %s passed, 0 failed\n' "$TOTAL_PASSED"
