#!/usr/bin/env bash
# Builds one static, stripped, reproducible release binary of the sidecar for a musl target and
# prints its path (stdout carries the path and nothing else; every tool writes to stderr).
#   scripts/build-release-bin.sh x86_64-unknown-linux-musl|aarch64-unknown-linux-musl
# Env: RELEASE_TARGET_DIR (default target/release-build: a warm second run is fast),
#      TOS_COMMIT (default: the short commit of HEAD).
# Installs what it needs when missing: the Rust target (rustup) and a C toolchain for ring
# (Debian's musl-tools for amd64, gcc-aarch64-linux-gnu for arm64).
#
# Reproducible: every path that differs between machines or checkouts (the source tree, the
# target dir, CARGO_HOME, RUSTUP_HOME) is remapped to a fixed name, so panic locations and the
# like embed the same bytes wherever the build runs; symbols are stripped; the commit comes from
# TOS_COMMIT, never from the clock (scripts/test-release.sh checks it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
triple="${1:?usage: build-release-bin.sh x86_64-unknown-linux-musl|aarch64-unknown-linux-musl}"
TARGET_DIR="${RELEASE_TARGET_DIR:-$ROOT/target/release-build}"
mkdir -p "$TARGET_DIR"
TARGET_DIR="$(cd "$TARGET_DIR" && pwd)"

apt_install() {
	local sudo_=""
	[ "$(id -u)" = 0 ] || sudo_=sudo
	$sudo_ apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "$@" >&2
}

case "$triple" in
x86_64-unknown-linux-musl)
	command -v musl-gcc >/dev/null 2>&1 || apt_install musl-tools
	# ring's C and assembly go through musl-gcc; rustc links with its self-contained musl crt.
	export CC_x86_64_unknown_linux_musl=musl-gcc
	;;
aarch64-unknown-linux-musl)
	command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || apt_install gcc-aarch64-linux-gnu
	export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
	export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
	;;
*)
	echo "build-release-bin: unsupported target $triple" >&2
	exit 2
	;;
esac

if ! rustup target list --installed | grep -qx "$triple"; then
	rustup target add "$triple" >&2
fi

cargo_home="${CARGO_HOME:-$HOME/.cargo}"
rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
cargo_home="$(cd "$cargo_home" && pwd)"
rustup_home="$(cd "$rustup_home" && pwd)"
# The last matching --remap-path-prefix wins, so the target dir (which may sit inside the source
# tree) comes after the source tree.
flags="-C target-feature=+crt-static"
flags+=" --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$rustup_home=/rustup"
flags+=" --remap-path-prefix=$ROOT=/src --remap-path-prefix=$TARGET_DIR=/target"

commit="${TOS_COMMIT:-$(git -C "$ROOT" rev-parse --short=12 HEAD)}"

# SOURCE_DATE_EPOCH is left out of the build: nothing in the binary carries a date, and ring's
# build script reruns (with every crate above it) whenever its value changes, i.e. on every
# commit, which would make each release build cold.
(
	cd "$ROOT"
	unset SOURCE_DATE_EPOCH
	TOS_COMMIT="$commit" \
		RUSTFLAGS="$flags" \
		CARGO_PROFILE_RELEASE_STRIP=symbols \
		CARGO_TARGET_DIR="$TARGET_DIR" \
		cargo build --release --locked --bin traefik-oidc-sidecar --target "$triple" >&2
)
echo "$TARGET_DIR/$triple/release/traefik-oidc-sidecar"
