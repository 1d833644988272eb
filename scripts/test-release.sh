#!/usr/bin/env bash
# Checks the release: scripts/release.sh builds, its image runs, its SBOM is valid, and its
# output is reproducible.
#   scripts/test-release.sh          (the README's test command runs this)
#     1. release.sh into target/release-test/a (both architectures, image, SBOM, SHA256SUMS);
#     2. the SBOM against CycloneDX 1.5's strict JSON schema, offline (the schemas bundled in
#        PyPI's cyclonedx-python-lib, installed once into a venv under ~/.cache);
#     3. scripts/test-image.sh on the OCI archive (the image started from the inside);
#     4. reproducibility, at the cost of one architecture: the tracked source is copied to
#        another path and the amd64 binary rebuilt there with another target dir; its checksum
#        must equal release 1's, and the OCI archive rebuilt from it must too.
#   scripts/test-release.sh --full   two whole releases (second one: another source path,
#                                     another target dir) with identical SHA256SUMS.
# Builds are cached under target/ (release-build, repro-target), so a warm run is fast.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
full=0
[ "${1:-}" = "--full" ] && full=1
started=$(date +%s)
fail() {
	echo "test-release: FAILED: $*" >&2
	exit 1
}
# shellcheck source=scripts/release-lib.sh
. "$ROOT/scripts/release-lib.sh"
export TIMED_PREFIX=test-release

version="$(package_field version)"
# Set once here, so every build below (in whatever directory) embeds the same values.
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}"
TOS_COMMIT="${TOS_COMMIT:-$(git rev-parse --short=12 HEAD)}"
TOS_COMMIT_FULL="${TOS_COMMIT_FULL:-$(git rev-parse HEAD)}"
export SOURCE_DATE_EPOCH TOS_COMMIT TOS_COMMIT_FULL
# The checks build what is checked out, committed or not.
export RELEASE_ALLOW_DIRTY=1
T="$ROOT/target/release-test"
mkdir -p "$T"
name="traefik-oidc-sidecar-$version"

# A release of another version is refused before anything is built.
if bash scripts/release.sh 0.0.0-not-this --out "$T/refused" 2>"$T/refused.err"; then
	fail "release.sh accepted a VERSION that is not Cargo.toml's"
fi
grep -q "is not Cargo.toml's version" "$T/refused.err" || fail "release.sh refused for another reason: $(cat "$T/refused.err")"
echo "ok: release.sh refuses a VERSION other than Cargo.toml's ($version)"

timed "release (both architectures, image, SBOM)" bash scripts/release.sh "$version" --out "$T/a"

venv="$HOME/.cache/traefik-oidc-sidecar/sbom-venv-11.12.0"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import cyclonedx.validation.json, jsonschema' 2>/dev/null; then
	rm -rf "$venv"
	if ! python3 -m venv "$venv" 2>/dev/null; then
		# Debian's system Python keeps venv in a package of its own.
		sudo_=""
		[ "$(id -u)" = 0 ] || sudo_=sudo
		$sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq python3-venv >/dev/null
		rm -rf "$venv"
		python3 -m venv "$venv"
	fi
	"$venv/bin/pip" install -q --no-cache-dir 'cyclonedx-python-lib[json-validation]==11.12.0'
fi
"$venv/bin/python" scripts/sbom.py validate "$T/a/$name.cdx.json"
python3 - "$T/a/$name.cdx.json" <<'PY' || fail "SBOM contents"
import json, sys
bom = json.load(open(sys.argv[1]))
names = {c["name"] for c in bom["components"]}
# Linked crates are there; build-only, dev-only and proc-macro crates are not.
for want in ["axum", "tokio", "rustls", "ring", "redis"]:
    assert want in names, want
for not_linked in ["cc", "criterion", "serde_derive", "windows-sys", "tokio-macros"]:
    assert not_linked not in names, not_linked
shim = [c for c in bom["components"] if c["name"].endswith("/traefik-plugin")]
assert shim and any(p["value"].startswith("none") for p in shim[0]["properties"]), shim
print(f"ok: SBOM lists {len(names)} components: linked crates only, the Go shim (stdlib only)")
PY

timed "image checks" bash scripts/test-image.sh "$T/a/$name-oci.tar"

# The Dockerfile (for users with Docker) must describe the same image: user, port, environment,
# label keys and the version its VERSION argument defaults to.
skopeo inspect --config --raw --override-arch amd64 "oci-archive:$T/a/$name-oci.tar:traefik-oidc-sidecar:$version" >"$T/config.json"
python3 - Dockerfile "$T/config.json" "$version" <<'PY' || fail "the Dockerfile and the release image disagree"
import json, re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
cfg = json.load(open(sys.argv[2]))["config"]
final = text.split("FROM scratch", 1)[1]
assert re.search(r"^USER (\S+)", final, re.M).group(1) == cfg["User"], "USER"
assert re.search(r"^EXPOSE (\S+)", final, re.M).group(1) + "/tcp" in cfg["ExposedPorts"], "EXPOSE"
env = dict(re.findall(r"(\w+)=(\S+)", re.search(r"^ENV (.*)$", final, re.M).group(1)))
image_env = dict(e.split("=", 1) for e in cfg["Env"] if not e.startswith("PATH="))
assert env == image_env, (env, image_env)
labels = set(re.findall(r"(org\.opencontainers\.image\.\w+)=", final))
assert labels <= set(cfg["Labels"]), labels - set(cfg["Labels"])
assert re.search(r"^ARG VERSION=(\S+)", final, re.M).group(1) == sys.argv[3], "ARG VERSION"
assert "ca-certificates.crt" in text and re.search(r"^ENTRYPOINT \[\"/traefik-oidc-sidecar\"\]", final, re.M)
print("ok: the Dockerfile matches the release image (user, port, env, labels, version, CA roots)")
PY

# A copy of the tracked files (with local changes) at another path: the remapped paths must
# make the binary independent of where the source and the target dir are. Timestamps are kept,
# so cargo finds the second target dir fresh on a warm run of the same commit.
copy_source() {
	rm -rf "$1"
	mkdir -p "$1"
	git ls-files -z | xargs -0 cp -p --parents -t "$1"
}

# The second target dir is the same in both modes, so --full after a default run only adds the
# arm64 build there.
repro_target="$ROOT/target/repro-target"
if [ "$full" = 1 ]; then
	copy_source "$T/src-b"
	timed "second release (other source path, other target dir)" \
		env RELEASE_TARGET_DIR="$repro_target" bash "$T/src-b/scripts/release.sh" "$version" --out "$T/b"
	diff "$T/a/SHA256SUMS" "$T/b/SHA256SUMS" || fail "two releases of one commit differ"
	echo "ok: two full releases give identical SHA256SUMS"
else
	copy_source "$T/src-b"
	bin="$(timed "amd64 rebuild (other source path, other target dir)" \
		env RELEASE_TARGET_DIR="$repro_target" bash "$T/src-b/scripts/build-release-bin.sh" x86_64-unknown-linux-musl | tail -n 1)"
	a="$(sha256sum <"$T/a/$name-linux-amd64")"
	b="$(sha256sum <"$bin")"
	[ "$a" = "$b" ] || fail "the amd64 binary is not reproducible: $a vs $b"
	echo "ok: amd64 binary rebuilt elsewhere is identical (${a%% *})"
	bash scripts/release-image.sh "$bin" "$T/a/$name-linux-arm64" "$T/image-b.tar" >/dev/null
	a="$(sha256sum <"$T/a/$name-oci.tar")"
	b="$(sha256sum <"$T/image-b.tar")"
	[ "$a" = "$b" ] || fail "the OCI archive is not reproducible: $a vs $b"
	echo "ok: OCI archive rebuilt from it is identical (${a%% *})"
fi
echo "test-release: done in $(($(date +%s) - started))s"
