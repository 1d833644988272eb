#!/usr/bin/env python3
"""Writes the sidecar's multi-platform OCI image as an `oci-archive` tarball, byte for byte
reproducible, with the Python standard library only (no container engine, no daemon).

    oci-image.py --out IMAGE.tar --version V --revision COMMIT --created EPOCH \
        --source URL --licenses SPDX --ca-bundle FILE \
        --binary amd64=PATH --binary arm64=PATH

Why a writer of our own: buildah and umoci stamp the wall clock and the build host into
configs and layers (history "created", tar mtimes, gzip headers), and neither writes an image
index over two platforms from two local binaries in one step. The format is small (OCI Image
Format Specification v1.1: image-layout.md, manifest.md, image-index.md, config.md), so we
write exactly what it asks, and the tests check the result with skopeo and umoci.

What makes it reproducible: every tar entry has mtime = --created (the commit's date, i.e.
SOURCE_DATE_EPOCH), uid/gid 0 and no user names, entries sorted, USTAR format; gzip headers
carry mtime 0 and no file name; JSON is written with sorted keys and no spaces; blobs are named
by their SHA-256 (image-layout.md "Blobs").
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import sys
import tarfile

# config.md "Properties": GOARCH names, with the arm64 variant the spec's platform list uses.
PLATFORMS = {
    "amd64": {"architecture": "amd64", "os": "linux"},
    "arm64": {"architecture": "arm64", "os": "linux", "variant": "v8"},
}

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

# The image's user: 65532 ("nonroot", as distroless images name it). A passwd/group entry lets
# tools that map the id to a name (ps, id inside a debug container) show one.
UID = 65532
PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\n"
CA_PATH = "etc/ssl/certs/ca-certificates.crt"
BINARY_PATH = "traefik-oidc-sidecar"
CONFIG_ENV = "/etc/traefik-oidc-sidecar/config.yaml"
PORT = "4181/tcp"


def canonical_json(obj):
    """Sorted keys, no whitespace: the same object always gives the same bytes (and digest)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rfc3339(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Tar:
    """A deterministic tar in memory: entries sorted by path, fixed owner, mode and mtime."""

    def __init__(self, mtime):
        self.mtime = mtime
        self.entries = {}

    def dir(self, path, mode=0o755, uid=0, gid=0):
        self.entries[path] = (tarfile.DIRTYPE, None, mode, uid, gid)

    def file(self, path, data, mode=0o644, uid=0, gid=0):
        self.entries[path] = (tarfile.REGTYPE, data, mode, uid, gid)

    def bytes(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for path in sorted(self.entries):
                kind, data, mode, uid, gid = self.entries[path]
                info = tarfile.TarInfo(path)
                info.type = kind
                info.mode = mode
                info.uid, info.gid = uid, gid
                info.uname = info.gname = ""
                info.mtime = self.mtime
                if data is None:
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()


def gzip_bytes(data):
    """gzip with header mtime 0 and no name (RFC 1952 §2.3: both optional), fixed level."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


class Layout:
    """The blobs of an OCI image layout (image-layout.md), keyed by digest."""

    def __init__(self):
        self.blobs = {}

    def add(self, media_type, data, **extra):
        digest = sha256(data)
        self.blobs[digest] = data
        return dict({"mediaType": media_type, "digest": digest, "size": len(data)}, **extra)


def base_layer(mtime, ca_bundle):
    """What every platform shares: CA roots, passwd/group, /tmp. One blob for both manifests."""
    t = Tar(mtime)
    for d in ["etc", "etc/ssl", "etc/ssl/certs", "etc/traefik-oidc-sidecar", "home", "root"]:
        t.dir(d + "/")
    t.dir("home/nonroot/", mode=0o700, uid=UID, gid=UID)
    t.dir("tmp/", mode=0o1777)
    t.file("etc/passwd", PASSWD.encode())
    t.file("etc/group", GROUP.encode())
    t.file(CA_PATH, ca_bundle)
    return t.bytes()


def binary_layer(mtime, binary):
    t = Tar(mtime)
    t.file(BINARY_PATH, binary, mode=0o755)
    return t.bytes()


def image_config(arch, created, diff_ids, labels):
    return dict(
        PLATFORMS[arch],
        created=created,
        config={
            "User": f"{UID}:{UID}",
            "ExposedPorts": {PORT: {}},
            "Env": [
                "PATH=/",
                "SSL_CERT_FILE=/" + CA_PATH,
                "TRAEFIK_OIDC_SIDECAR_CONFIG=" + CONFIG_ENV,
            ],
            "Entrypoint": ["/" + BINARY_PATH],
            "WorkingDir": "/",
            "Labels": labels,
        },
        rootfs={"type": "layers", "diff_ids": diff_ids},
        history=[
            {"created": created, "created_by": "CA roots, passwd and group, /tmp"},
            {"created": created, "created_by": "the static traefik-oidc-sidecar binary"},
        ],
    )


def build(args):
    created = rfc3339(args.created)
    # annotations.md "Pre-Defined Annotation Keys".
    annotations = {
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.version": args.version,
        "org.opencontainers.image.revision": args.revision,
        "org.opencontainers.image.source": args.source,
        "org.opencontainers.image.url": args.source,
        "org.opencontainers.image.licenses": args.licenses,
        "org.opencontainers.image.title": "traefik-oidc-sidecar",
        "org.opencontainers.image.description": args.description,
    }
    with open(args.ca_bundle, "rb") as f:
        ca = f.read()
    base = base_layer(args.created, ca)
    layout = Layout()
    manifests = []
    for spec in args.binary:
        arch, _, path = spec.partition("=")
        if arch not in PLATFORMS or not path:
            sys.exit(f"oci-image: --binary wants amd64=PATH or arm64=PATH, got {spec!r}")
        with open(path, "rb") as f:
            layers = [base, binary_layer(args.created, f.read())]
        descs = [layout.add(MT_LAYER, gzip_bytes(layer)) for layer in layers]
        config = image_config(arch, created, [sha256(layer) for layer in layers], annotations)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": layout.add(MT_CONFIG, canonical_json(config)),
            "layers": descs,
            "annotations": annotations,
        }
        manifests.append(layout.add(MT_MANIFEST, canonical_json(manifest), platform=PLATFORMS[arch]))
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": manifests,
        "annotations": annotations,
    }
    index_desc = layout.add(MT_INDEX, canonical_json(index))
    # image-layout.md "index.json": the entry point. ref.name is what skopeo resolves in
    # `oci-archive:FILE:traefik-oidc-sidecar:V` and the name `podman load` gives the image.
    index_desc["annotations"] = {"org.opencontainers.image.ref.name": "traefik-oidc-sidecar:" + args.version}
    top = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [index_desc]}

    out = Tar(args.created)
    out.dir("blobs/")
    out.dir("blobs/sha256/")
    for digest, data in layout.blobs.items():
        out.file("blobs/sha256/" + digest.split(":", 1)[1], data)
    out.file("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
    out.file("index.json", canonical_json(top))
    with open(args.out, "wb") as f:
        f.write(out.bytes())
    print(index_desc["digest"])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--revision", required=True)
    p.add_argument("--created", required=True, type=int, help="seconds since the epoch")
    p.add_argument("--source", required=True)
    p.add_argument("--licenses", required=True)
    p.add_argument("--description", default="OpenID Connect login for anything behind Traefik")
    p.add_argument("--ca-bundle", required=True)
    p.add_argument("--binary", action="append", required=True, help="ARCH=PATH (amd64, arm64)")
    build(p.parse_args())


if __name__ == "__main__":
    main()
