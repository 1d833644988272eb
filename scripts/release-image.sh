#!/usr/bin/env bash
# Writes the multi-platform OCI archive from two release binaries, with the metadata every
# caller must agree on (version, commit, date, source, licences, CA roots), so release.sh and the
# reproducibility check in test-release.sh build byte-identical archives the same way.
#   scripts/release-image.sh AMD64_BINARY ARM64_BINARY OUT.tar
# Env: SOURCE_DATE_EPOCH (default: the commit's date), TOS_COMMIT_FULL (default: HEAD),
#      CA_BUNDLE (default: Debian's /etc/ssl/certs/ca-certificates.crt, installed when missing).
# Prints the image index digest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
amd64="${1:?usage: release-image.sh AMD64_BINARY ARM64_BINARY OUT.tar}"
arm64="${2:?usage: release-image.sh AMD64_BINARY ARM64_BINARY OUT.tar}"
out="${3:?usage: release-image.sh AMD64_BINARY ARM64_BINARY OUT.tar}"

ca="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
if [ ! -s "$ca" ] && [ -z "${CA_BUNDLE:-}" ]; then
	sudo_=""
	[ "$(id -u)" = 0 ] || sudo_=sudo
	$sudo_ apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq ca-certificates >&2
fi
[ -s "$ca" ] || { echo "release-image: no CA bundle at $ca" >&2; exit 1; }

# shellcheck source=scripts/release-lib.sh
. "$ROOT/scripts/release-lib.sh"
version="$(package_field version)"
source="$(package_field repository)"
licenses="$(package_field license)"
commit="${TOS_COMMIT_FULL:-$(git -C "$ROOT" rev-parse HEAD)}"
epoch="${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct)}"

python3 "$ROOT/scripts/oci-image.py" --out "$out" --version "$version" --revision "$commit" \
	--created "$epoch" --source "$source" --licenses "$licenses" --ca-bundle "$ca" \
	--binary "amd64=$amd64" --binary "arm64=$arm64"
