#!/usr/bin/env python3
"""The release's software bill of materials: CycloneDX 1.5 JSON of what is linked into the
release binaries (Rust crates) and of the Go plugin shim (standard library only).

    sbom.py generate --version V --commit FULL_SHA --created EPOCH \
        --target x86_64-unknown-linux-musl --target aarch64-unknown-linux-musl [--ca-version V]
    sbom.py validate FILE      (needs cyclonedx-python-lib[json-validation]; offline)

Only crates the binary links are listed: `cargo tree -e normal,no-proc-macro --target T` per
release target (no dev- or build-dependencies, no proc-macros, no other platforms' crates), so
the list is what ships, not what the lock file could build. Licences and the dependency graph
come from `cargo metadata --locked --filter-platform T`; hashes are Cargo.lock's checksums
(SHA-256 of the .crate file). Deterministic: serialNumber is a UUIDv5 of the commit and version,
the timestamp is SOURCE_DATE_EPOCH, lists are sorted, JSON keys sorted.
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tomllib
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN_PKG = "traefik-oidc-sidecar"


def cargo(*args):
    return subprocess.run(["cargo", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def linked(target):
    """(name, version) of every crate linked into the binary for `target`."""
    out = cargo("tree", "--locked", "-e", "normal,no-proc-macro", "--target", target,
                "--prefix", "none", "--format", "{p}", "-p", BIN_PKG)
    found = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith("v"):
            found.add((parts[0], parts[1][1:]))
    return found


def license_expression(text):
    # Old crates write "MIT/Apache-2.0"; SPDX (and CycloneDX's `expression`) says "OR".
    return re.sub(r"\s*/\s*", " OR ", text.strip())


def purl(name, version):
    return f"pkg:cargo/{name}@{version}"


def rust_components(targets):
    lock = tomllib.loads(open(os.path.join(ROOT, "Cargo.lock"), encoding="utf-8").read())
    checksums = {(p["name"], p["version"]): p.get("checksum") for p in lock["package"]}
    per_target = {t: linked(t) for t in targets}
    everything = set().union(*per_target.values())
    packages, edges = {}, {}
    for t in targets:
        meta = json.loads(cargo("metadata", "--locked", "--format-version", "1", "--filter-platform", t))
        by_id = {p["id"]: p for p in meta["packages"]}
        for p in meta["packages"]:
            packages[(p["name"], p["version"])] = p
        for node in meta["resolve"]["nodes"]:
            me = by_id[node["id"]]
            key = (me["name"], me["version"])
            if key not in per_target[t]:
                continue
            for dep in node["deps"]:
                other = by_id[dep["pkg"]]
                okey = (other["name"], other["version"])
                normal = any(k["kind"] is None for k in dep["dep_kinds"])
                if normal and okey in per_target[t]:
                    edges.setdefault(key, set()).add(okey)
    components = []
    for key in sorted(everything):
        if key[0] == BIN_PKG:
            continue
        p = packages[key]
        c = {
            "type": "library",
            "bom-ref": purl(*key),
            "name": key[0],
            "version": key[1],
            "purl": purl(*key),
            "properties": [
                {"name": "traefik-oidc-sidecar:target", "value": t}
                for t in targets if key in per_target[t]
            ],
        }
        if p.get("license"):
            c["licenses"] = [{"expression": license_expression(p["license"])}]
        if checksums.get(key):
            c["hashes"] = [{"alg": "SHA-256", "content": checksums[key]}]
        if p.get("repository"):
            c["externalReferences"] = [{"type": "vcs", "url": p["repository"]}]
        components.append(c)
    deps = [
        {"ref": purl(*k), "dependsOn": sorted(purl(*d) for d in v)}
        for k, v in sorted(edges.items())
    ]
    return components, deps


def go_component(version):
    """The shim's module: go.mod must name no requirement (Traefik's Yaegi loads no modules)."""
    text = open(os.path.join(ROOT, "go.mod"), encoding="utf-8").read()
    module = re.search(r"^module\s+(\S+)", text, re.M).group(1)
    go = re.search(r"^go\s+(\S+)", text, re.M).group(1)
    if re.search(r"^\s*require\b", text, re.M):
        sys.exit("sbom: go.mod has require directives; the SBOM would have to list them")
    ref = f"pkg:golang/{module}@v{version}#traefik-plugin"
    std = f"pkg:golang/std@go{go}"
    shim = {
        "type": "library",
        "bom-ref": ref,
        "name": module + "/traefik-plugin",
        "version": "v" + version,
        "purl": ref,
        "description": "The Traefik middleware plugin (shim) Traefik loads with Yaegi; "
        "Go standard library only, no module requirements",
        "properties": [
            {"name": "go.mod:go", "value": go},
            {"name": "go.mod:require", "value": "none (standard library only)"},
        ],
    }
    stdlib = {"type": "library", "bom-ref": std, "name": "std", "version": "go" + go, "purl": std,
              "description": "The Go standard library (the version go.mod's go directive names)"}
    return [shim, stdlib], [{"ref": ref, "dependsOn": [std]}, {"ref": std, "dependsOn": []}]


def generate(a):
    meta = json.loads(cargo("metadata", "--locked", "--no-deps", "--format-version", "1"))
    me = next(p for p in meta["packages"] if p["name"] == BIN_PKG)
    if me["version"] != a.version:
        sys.exit(f"sbom: --version {a.version} is not Cargo.toml's {me['version']}")
    root_ref = purl(BIN_PKG, a.version)
    components, deps = rust_components(a.target)
    go_components, go_deps = go_component(a.version)
    components += go_components
    deps += go_deps
    direct = [d for d in deps if d["ref"] == root_ref]
    if not direct:
        sys.exit("sbom: no dependency edges from the binary's crate")
    if a.ca_version:
        ca = f"pkg:deb/debian/ca-certificates@{a.ca_version}?arch=all"
        components.append({
            "type": "data", "bom-ref": ca, "name": "ca-certificates", "version": a.ca_version,
            "purl": ca, "licenses": [{"expression": "MPL-2.0"}],
            "description": "CA roots in the image at /etc/ssl/certs/ca-certificates.crt",
        })
    created = datetime.datetime.fromtimestamp(a.created, datetime.timezone.utc)
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{me['repository']}@{a.commit}/{a.version}")),
        "version": 1,
        "metadata": {
            "timestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "traefik-oidc-sidecar scripts/sbom.py"}]},
            "component": {
                "type": "application",
                "bom-ref": root_ref,
                "name": BIN_PKG,
                "version": a.version,
                "purl": root_ref,
                "licenses": [{"expression": me["license"]}],
                "externalReferences": [{"type": "vcs", "url": me["repository"]}],
                "properties": [{"name": "git:commit", "value": a.commit}]
                + [{"name": "traefik-oidc-sidecar:target", "value": t} for t in a.target],
            },
        },
        "components": components,
        "dependencies": sorted(deps, key=lambda d: d["ref"]),
    }
    sys.stdout.write(json.dumps(bom, indent=2, sort_keys=True) + "\n")


def validate(a):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = open(a.file, encoding="utf-8").read()
    err = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    if err is not None:
        sys.exit(f"sbom: {a.file} is not valid CycloneDX 1.5: {err}")
    bom = json.loads(text)
    print(f"{a.file}: valid CycloneDX 1.5 (strict schema), {len(bom['components'])} components")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--version", required=True)
    g.add_argument("--commit", required=True)
    g.add_argument("--created", required=True, type=int)
    g.add_argument("--target", action="append", required=True)
    g.add_argument("--ca-version")
    v = sub.add_parser("validate")
    v.add_argument("file")
    a = p.parse_args()
    (generate if a.cmd == "generate" else validate)(a)


if __name__ == "__main__":
    main()
