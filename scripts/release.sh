#!/usr/bin/env bash
# Builds the release artifacts of one version into dist/ (or --out DIR):
#   traefik-oidc-sidecar-VERSION-linux-amd64   static musl binary, stripped
#   traefik-oidc-sidecar-VERSION-linux-arm64   the same, cross-compiled
#   traefik-oidc-sidecar-VERSION-oci.tar       OCI image index (both platforms), oci-archive
#   traefik-oidc-sidecar-VERSION.cdx.json      CycloneDX 1.5 SBOM (linked crates, Go shim)
#   SHA256SUMS                                 sha256sum of the four above
# Usage: scripts/release.sh VERSION [--out DIR]
# VERSION must be Cargo.toml's version. The tree must be clean (what is built is the commit),
# unless RELEASE_ALLOW_DIRTY=1 (the tests' reproducibility runs).
# Reproducible: two runs on one commit write the same SHA256SUMS (SOURCE_DATE_EPOCH is the
# commit's date; paths are remapped, see build-release-bin.sh; the image and SBOM writers are
# deterministic). Builds are cached in RELEASE_TARGET_DIR (default target/release-build).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/release-lib.sh
. "$ROOT/scripts/release-lib.sh"
version="${1:?usage: release.sh VERSION [--out DIR]}"
shift
out="$ROOT/dist"
while [ $# -gt 0 ]; do
	case "$1" in
	--out)
		out="${2:?--out needs a directory}"
		shift 2
		;;
	*)
		echo "release: unknown argument $1" >&2
		exit 2
		;;
	esac
done

cargo_version="$(package_field version)"
if [ "$version" != "$cargo_version" ]; then
	echo "release: VERSION $version is not Cargo.toml's version $cargo_version; refusing" >&2
	exit 2
fi
if [ -n "$(git status --porcelain --untracked-files=no)" ] && [ "${RELEASE_ALLOW_DIRTY:-0}" != 1 ]; then
	echo "release: the work tree has uncommitted changes; commit them (or RELEASE_ALLOW_DIRTY=1)" >&2
	exit 2
fi

export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}"
export TOS_COMMIT="${TOS_COMMIT:-$(git rev-parse --short=12 HEAD)}"
export TOS_COMMIT_FULL="${TOS_COMMIT_FULL:-$(git rev-parse HEAD)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
name="traefik-oidc-sidecar-$version"
rm -f "$out/$name"-* "$out/$name".* "$out/SHA256SUMS"

# One target at a time: two parallel release builds on a small machine only thrash.
build() {
	local triple="$1" arch="$2" bin
	bin="$(bash "$ROOT/scripts/build-release-bin.sh" "$triple")"
	cp "$bin" "$out/$name-linux-$arch"
	chmod 0755 "$out/$name-linux-$arch"
}
timed "binary linux/amd64" build x86_64-unknown-linux-musl amd64
timed "binary linux/arm64" build aarch64-unknown-linux-musl arm64

timed "OCI image (amd64 + arm64)" bash "$ROOT/scripts/release-image.sh" \
	"$out/$name-linux-amd64" "$out/$name-linux-arm64" "$out/$name-oci.tar" >/dev/null

sbom() {
	local ca=()
	if command -v dpkg-query >/dev/null 2>&1; then
		ca=(--ca-version "$(dpkg-query -W -f='${Version}' ca-certificates)")
	fi
	python3 "$ROOT/scripts/sbom.py" generate --version "$version" --commit "$TOS_COMMIT_FULL" \
		--created "$SOURCE_DATE_EPOCH" --target x86_64-unknown-linux-musl \
		--target aarch64-unknown-linux-musl "${ca[@]}" >"$out/$name.cdx.json"
}
timed "SBOM" sbom

(cd "$out" && sha256sum "$name-linux-amd64" "$name-linux-arm64" "$name-oci.tar" "$name.cdx.json" >SHA256SUMS)
cat "$out/SHA256SUMS"
echo "release: $version (commit $TOS_COMMIT) written to $out" >&2
