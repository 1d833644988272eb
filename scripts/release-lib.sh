#!/usr/bin/env bash
# Helpers shared by the release scripts (sourced, not run): the package's metadata as Cargo.toml
# says it, and a timer for each step (a stage's time goes to stderr, so stdout stays data).

# package_field NAME: version, repository or license of the traefik-oidc-sidecar package.
package_field() {
	cargo metadata --locked --no-deps --format-version 1 --manifest-path "$ROOT/Cargo.toml" |
		python3 -c 'import json,sys; print([p for p in json.load(sys.stdin)["packages"] if p["name"]=="traefik-oidc-sidecar"][0][sys.argv[1]])' "$1"
}

# timed LABEL COMMAND...: runs COMMAND, then prints "PREFIX: LABEL: Ns" to stderr.
timed() {
	local label="$1" t0
	shift
	t0=$(date +%s)
	"$@"
	echo "${TIMED_PREFIX:-release}: $label: $(($(date +%s) - t0))s" >&2
}
