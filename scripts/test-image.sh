#!/usr/bin/env bash
# Starts the release image and checks it from the inside, without a container engine:
#   scripts/test-image.sh IMAGE-oci.tar
# 1. skopeo reads the archive: an image index with linux/amd64 and linux/arm64 manifests;
# 2. skopeo copies each platform out, umoci unpacks its root filesystem and runtime config
#    (both real implementations of the OCI formats, not our writer reading itself back);
# 3. the filesystem is what we ship and nothing more (no shell), CA roots included;
# 4. amd64: the entrypoint runs chrooted into that filesystem AS THE IMAGE'S USER (uid/gid from
#    the config, checked in /proc while it serves), with the image's environment only:
#    --version, --check-config on a valid and an invalid file (at the path the image's env
#    names), then the server: /healthz over HTTP and the image's --health-check, then SIGTERM;
# 5. arm64: the ELF header says AArch64 and static; chrooted into its own filesystem as the
#    image user, under qemu-aarch64-static (Debian's
#    qemu-user-static, installed when missing) --version runs.
# Why not podman: podman 4.3 installs and `podman info` works on these machines, but
# `podman run` fails in runc ("error setting rlimit type 6: operation not permitted") even with
# --ulimit equal to the host's limits; the sandbox refuses it. Needs root (chroot); CI is root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
archive="$(cd "$(dirname "${1:?usage: test-image.sh IMAGE-oci.tar}")" && pwd)/$(basename "$1")"
started=$(date +%s)
W="$(mktemp -d "${TMPDIR:-/tmp}/test-image.XXXXXX")"
server_pid=""
cleanup() {
	if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
	if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null || true; fi
	rm -rf "$W"
}
trap cleanup EXIT
fail() {
	echo "test-image: FAILED: $*" >&2
	exit 1
}
passed=0
ok() {
	passed=$((passed + 1))
	echo "ok: $*"
}

sudo_=""
[ "$(id -u)" = 0 ] || sudo_=sudo
need=()
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
command -v file >/dev/null 2>&1 || need+=(file)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
if [ "${#need[@]}" -gt 0 ]; then
	$sudo_ apt-get update -qq
	# qemu-user-static is optional: without it the arm64 start is reported as not run.
	DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need[@]}" >/dev/null ||
		DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq skopeo umoci file curl >/dev/null
fi

# shellcheck source=scripts/release-lib.sh
. "$ROOT/scripts/release-lib.sh"
version="$(package_field version)"
commit="${TOS_COMMIT:-$(git -C "$ROOT" rev-parse --short=12 HEAD)}"

# 1. The index.
skopeo inspect --raw "oci-archive:$archive:traefik-oidc-sidecar:$version" >"$W/index.json"
python3 - "$W/index.json" <<'PY' || fail "the archive's index is not amd64 + arm64"
import json, sys
idx = json.load(open(sys.argv[1]))
assert idx["mediaType"] == "application/vnd.oci.image.index.v1+json", idx["mediaType"]
plats = sorted((m["platform"]["os"], m["platform"]["architecture"]) for m in idx["manifests"])
assert plats == [("linux", "amd64"), ("linux", "arm64")], plats
for key in ["version", "revision", "source", "licenses", "created"]:
    assert idx["annotations"].get("org.opencontainers.image." + key), key
PY
ok "skopeo reads an image index with linux/amd64 and linux/arm64"

# 2. Each platform out with skopeo, unpacked with umoci.
for arch in amd64 arm64; do
	skopeo copy -q --override-os linux --override-arch "$arch" "oci-archive:$archive:traefik-oidc-sidecar:$version" "oci:$W/layout:$arch"
	$sudo_ umoci unpack --image "$W/layout:$arch" "$W/$arch" >/dev/null
done
ok "skopeo copy + umoci unpack of both platforms"
rootfs="$W/amd64/rootfs"

# 3. Contents and runtime config.
listing="$(cd "$rootfs" && find . -mindepth 1 | LC_ALL=C sort | tr '\n' ' ')"
want="./etc ./etc/group ./etc/passwd ./etc/ssl ./etc/ssl/certs ./etc/ssl/certs/ca-certificates.crt ./etc/traefik-oidc-sidecar ./home ./home/nonroot ./root ./tmp ./traefik-oidc-sidecar "
[ "$listing" = "$want" ] || fail "unexpected files in the image: $listing"
ok "the filesystem holds the binary, CA roots, passwd/group and empty dirs: no shell"
grep -q "BEGIN CERTIFICATE" "$rootfs/etc/ssl/certs/ca-certificates.crt" || fail "no CA roots"
ok "CA roots at /etc/ssl/certs/ca-certificates.crt"
python3 - "$W/amd64/config.json" >"$W/env" <<'PY' || fail "runtime config"
import json, sys
p = json.load(open(sys.argv[1]))["process"]
assert p["user"]["uid"] == 65532 and p["user"]["gid"] == 65532, p["user"]
assert p["args"] == ["/traefik-oidc-sidecar"], p["args"]
env = dict(e.split("=", 1) for e in p["env"])
assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt", env
assert env["TRAEFIK_OIDC_SIDECAR_CONFIG"] == "/etc/traefik-oidc-sidecar/config.yaml", env
for e in p["env"]:
    print(e)
PY
ok "runtime config: user 65532:65532, entrypoint, SSL_CERT_FILE, TRAEFIK_OIDC_SIDECAR_CONFIG"

# 4. Run the amd64 entrypoint inside its filesystem as the image's user, with only its env.
mapfile -t image_env <"$W/env"
# An absolute path: env -i leaves only the image's PATH (/), where chroot is not.
chroot_="$(command -v chroot)"
in_image() {
	$sudo_ env -i "${image_env[@]}" "$chroot_" --userspec=65532:65532 "$rootfs" /traefik-oidc-sidecar "$@"
}
out="$(in_image --version)" || fail "--version failed in the image"
case "$out" in
*"$version (commit $commit)"*) ok "--version in the image: $out" ;;
*) fail "--version printed '$out', wanted $version (commit $commit)" ;;
esac

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"
metrics_port="$(free_port)"
cfg="$rootfs/etc/traefik-oidc-sidecar/config.yaml"
cat >"$W/config.yaml" <<EOF
listen: 127.0.0.1:$port
metricsListen: 127.0.0.1:$metrics_port
middlewares:
  default:
    Provider:
      Url: https://idp.example
      ClientId: app
    Secret: 0123456789abcdef0123456789abcdef
    SessionStorageType: Cookie
EOF
$sudo_ cp "$W/config.yaml" "$cfg"
$sudo_ chmod 0644 "$cfg"
in_image --check-config >"$W/check.out" 2>&1 || fail "--check-config refused a valid file: $(cat "$W/check.out")"
grep -q "valid (1 middleware(s): default)" "$W/check.out" || fail "--check-config said: $(cat "$W/check.out")"
ok "--check-config accepts a valid file at the image's config path"
sed 's/^    Secret: .*/    Secret: short/' "$W/config.yaml" | $sudo_ tee "$cfg" >/dev/null
rc=0
in_image --check-config >"$W/bad.out" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "--check-config accepted an invalid file"
grep -q "middlewares.default.Secret" "$W/bad.out" || fail "--check-config did not name the bad key: $(cat "$W/bad.out")"
ok "--check-config refuses an invalid file (exit $rc, names middlewares.default.Secret)"
$sudo_ cp "$W/config.yaml" "$cfg"

# exec: the background job is the server itself (env and chroot exec too), not a subshell
# that a signal would stop while the server lives on.
(exec $sudo_ env -i "${image_env[@]}" "$chroot_" --userspec=65532:65532 "$rootfs" /traefik-oidc-sidecar) >"$W/server.log" 2>&1 &
server_pid=$!
code=""
for _ in $(seq 1 100); do
	code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz" || true)"
	[ "$code" = 200 ] && break
	kill -0 "$server_pid" 2>/dev/null || fail "the server exited: $(cat "$W/server.log")"
	sleep 0.1
done
[ "$code" = 200 ] || fail "/healthz answered '$code': $(cat "$W/server.log")"
ok "/healthz answers 200 over HTTP from the image's entrypoint"
# As root $server_pid is the server itself; under sudo the server is sudo's child.
pid="$server_pid"
[ "$(cat "/proc/$pid/comm")" = traefik-oidc-si ] || pid="$(pgrep -n -P "$server_pid" || true)"
[ -n "$pid" ] && [ "$(cat "/proc/$pid/comm")" = traefik-oidc-si ] || fail "cannot find the server process"
uids="$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")"
gids="$(awk '/^Gid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")"
[ "$uids" = "65532 65532 65532 65532" ] && [ "$gids" = "65532 65532 65532 65532" ] ||
	fail "the server runs as uid ($uids) gid ($gids), not 65532"
ok "the server process runs as uid/gid 65532 (real, effective, saved, fs)"
in_image --health-check || fail "--health-check (the image's health probe) failed"
ok "--health-check from inside the image"
kill -TERM "$pid"
wait "$server_pid" || fail "the server did not stop cleanly on SIGTERM: $(cat "$W/server.log")"
server_pid=""
pid=""
grep -q "stopped" "$W/server.log" || fail "no 'stopped' in the server's log: $(cat "$W/server.log")"
ok "SIGTERM drains and stops the server with status 0"

# 5. arm64.
arm="$W/arm64/rootfs/traefik-oidc-sidecar"
machine="$(python3 -c 'import struct,sys; h=open(sys.argv[1],"rb").read(20); assert h[:4]==b"\x7fELF"; print(struct.unpack("<H", h[18:20])[0])' "$arm")"
[ "$machine" = 183 ] || fail "arm64 binary has ELF e_machine $machine, not 183 (EM_AARCH64)"
described="$(file -b "$arm")"
case "$described" in
*"ARM aarch64"*static*) ok "arm64 binary: ELF e_machine 183 (AArch64); file: $described" ;;
*) fail "file says: $described" ;;
esac
if command -v qemu-aarch64-static >/dev/null 2>&1; then
	# The emulator (static) goes into the arm64 filesystem, so the entrypoint runs there as the
	# image's user, like the amd64 one.
	$sudo_ cp "$(command -v qemu-aarch64-static)" "$W/arm64/rootfs/qemu-aarch64-static"
	out="$($sudo_ env -i "${image_env[@]}" "$chroot_" --userspec=65532:65532 "$W/arm64/rootfs" \
		/qemu-aarch64-static /traefik-oidc-sidecar --version)" || fail "arm64 --version under qemu failed"
	case "$out" in
	*"$version (commit $commit)"*) ok "arm64 --version under qemu-aarch64-static, in its filesystem, as 65532: $out" ;;
	*) fail "arm64 --version printed '$out'" ;;
	esac
else
	echo "NOT RUN: qemu-aarch64-static is not installable here; the arm64 binary was not started"
fi

echo "test-image: $passed passed, 0 failed ($(($(date +%s) - started))s)"
