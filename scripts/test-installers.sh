#!/usr/bin/env bash
# The installers' first run, on every test run: scripts/install-keycloak.sh,
# scripts/build-traefik.sh and scripts/install-yaegi.sh against empty caches, with stand-ins
# for mvn, java and go that behave like the real tools where it matters here (they fetch or
# build into the places the real ones use, and they write ANSI colour codes and chatter to
# stdout, as mvn does even with -q -B).
# Each installer must print the installed path, exactly, as the last line of its stdout (the
# suites read it with `tail -n 1`) and leave something usable there. A warm machine only ever
# runs the cached path, so without this a first-run bug shows up only on a new machine.
#
#   scripts/test-installers.sh      (a few seconds; no network, nothing outside a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d "${TMPDIR:-/tmp}/test-installers.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
fakes="$work/bin"
mkdir -p "$fakes"
failures=0
check() {
  local what="$1" want="$2" got="$3"
  if [ "$got" = "$want" ]; then
    printf 'PASS %s\n' "$what"
  else
    printf 'FAIL %s\n  want: %q\n  got:  %q\n' "$what" "$want" "$got"
    failures=$((failures + 1))
  fi
}
esc=$'\e'

# --- Keycloak: a fake JDK 25 and a fake mvn that "downloads" a minimal distribution zip.
version=26.7.3
jdks="$work/jdks"
mkdir -p "$jdks/fake-25/bin"
cat > "$jdks/fake-25/bin/java" <<'EOF'
#!/bin/sh
echo 'openjdk version "25.0.1" 2025-10-21' >&2
EOF
chmod +x "$jdks/fake-25/bin/java"
cat > "$fakes/mvn" <<EOF
#!/usr/bin/env bash
# Stand-in for mvn dependency:get: colour resets and chatter on stdout, then the artifact.
printf '${esc}[0m${esc}[0m'
printf '[INFO] Downloading keycloak-quarkus-dist\n'
repo=""; artifact=""
for a in "\$@"; do
  case "\$a" in
    -Dmaven.repo.local=*) repo="\${a#-Dmaven.repo.local=}" ;;
    -Dartifact=*) artifact="\${a#-Dartifact=}" ;;
  esac
done
v="\$(printf '%s' "\$artifact" | cut -d: -f3)"
dir="\$repo/org/keycloak/keycloak-quarkus-dist/\$v"
mkdir -p "\$dir" "$work/zipsrc/keycloak-\$v/bin"
printf '#!/bin/sh\necho fake keycloak\n' > "$work/zipsrc/keycloak-\$v/bin/kc.sh"
(cd "$work/zipsrc" && python3 -c 'import sys, zipfile, os
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for root, _, files in os.walk(sys.argv[2]):
        for f in files:
            z.write(os.path.join(root, f))' "\$dir/keycloak-quarkus-dist-\$v.zip" "keycloak-\$v")
printf '${esc}[0m'
EOF
chmod +x "$fakes/mvn"

cache="$work/cache"
out="$(PATH="$fakes:$PATH" XDG_CACHE_HOME="$cache" KEYCLOAK_MAVEN_REPO="$work/m2" \
  KEYCLOAK_JAVA_HOME= JAVA_HOME= KEYCLOAK_JDK_DIRS="$jdks" KEYCLOAK_VERSION="$version" \
  bash scripts/install-keycloak.sh 2>"$work/keycloak.err")" || { cat "$work/keycloak.err" >&2; exit 1; }
home="$cache/traefik-oidc-sidecar/keycloak-$version"
check "install-keycloak (first run): the last stdout line is the Keycloak home" "$home" "$(printf '%s\n' "$out" | tail -n 1)"
check "install-keycloak (first run): stdout is only that line" "$home" "$out"
check "install-keycloak (first run): kc.sh is there and executable" yes "$([ -x "$home/bin/kc.sh" ] && echo yes || echo no)"
out="$(PATH="$fakes:$PATH" XDG_CACHE_HOME="$cache" KEYCLOAK_MAVEN_REPO="$work/m2" \
  KEYCLOAK_JAVA_HOME= JAVA_HOME= KEYCLOAK_JDK_DIRS="$jdks" KEYCLOAK_VERSION="$version" \
  bash scripts/install-keycloak.sh 2>/dev/null)"
check "install-keycloak (cached): the same path" "$home" "$out"

# --- Traefik: a fake go whose `mod download -json` names a module tree and whose `build`
# writes a binary that answers `version`.
mkdir -p "$work/gomod/traefik/cmd/traefik"
cat > "$fakes/go" <<EOF
#!/usr/bin/env bash
printf '${esc}[0m'
case "\$1" in
  mod)
    printf '{\n\t"Path": "github.com/traefik/traefik/v3",\n\t"Dir": "%s",\n\t"Version": "v0"\n}\n' "$work/gomod/traefik" ;;
  build)
    o=""; prev=""
    for a in "\$@"; do [ "\$prev" = "-o" ] && o="\$a"; prev="\$a"; done
    printf 'go: downloading something\n'
    printf '#!/bin/sh\necho "Version: fake"\n' > "\$o"
    chmod +x "\$o" ;;
  *) echo "fake go: \$*" ;;
esac
EOF
chmod +x "$fakes/go"
out="$(PATH="$fakes:$PATH" XDG_CACHE_HOME="$cache" TRAEFIK_VERSION=v0.0.0-test \
  bash scripts/build-traefik.sh 2>"$work/traefik.err")" || { cat "$work/traefik.err" >&2; exit 1; }
bin="$cache/traefik-oidc-sidecar/traefik-v0.0.0-test"
check "build-traefik (first run): stdout is only the binary's path" "$bin" "$out"
check "build-traefik (first run): the binary runs" "Version: fake" "$("$bin" version 2>&1)"
out="$(PATH="$fakes:$PATH" XDG_CACHE_HOME="$cache" TRAEFIK_VERSION=v0.0.0-test \
  bash scripts/build-traefik.sh 2>/dev/null)"
check "build-traefik (cached): the same path" "$bin" "$out"

# --- yaegi: a fake go that answers `env` and `version -m` as the real one does, and whose
# `install` writes chatter and colour codes to stdout and a binary into GOBIN (counted).
yfakes="$work/bin-yaegi"
mkdir -p "$yfakes"
cat > "$yfakes/go" <<EOF
#!/usr/bin/env bash
case "\$1 \$2" in
  "env GOBIN") echo ;;
  "env GOPATH") echo "$work/gopath" ;;
  "version -m") grep -q 'fake yaegi v0.16.1' "\$3" 2>/dev/null && printf '%s: go1.26\n\tpath\tgithub.com/traefik/yaegi/cmd/yaegi\n\tmod\tgithub.com/traefik/yaegi\tv0.16.1\th1:x=\n' "\$3" ;;
  install*)
    printf '${esc}[0mgo: downloading github.com/traefik/yaegi v0.16.1\n'
    mkdir -p "\$GOBIN"
    printf '#!/bin/sh\necho "fake yaegi v0.16.1"\n' > "\$GOBIN/yaegi"
    chmod +x "\$GOBIN/yaegi"
    echo x >> "$work/yaegi-installs" ;;
  *) echo "fake go: \$*" >&2; exit 2 ;;
esac
EOF
chmod +x "$yfakes/go"
yaegi="$work/gopath/bin/yaegi"
out="$(PATH="$yfakes:$PATH" bash scripts/install-yaegi.sh 2>"$work/yaegi.err")" || { cat "$work/yaegi.err" >&2; exit 1; }
check "install-yaegi (first run): stdout is only the binary's path" "$yaegi" "$out"
check "install-yaegi (first run): the binary runs" "fake yaegi v0.16.1" "$("$yaegi" 2>&1)"
out="$(PATH="$yfakes:$PATH" bash scripts/install-yaegi.sh 2>/dev/null)"
check "install-yaegi (cached): the same path, no second install" "$yaegi 1" "$out $(wc -l <"$work/yaegi-installs")"

if [ "$failures" -gt 0 ]; then
  printf 'test-installers: %d failed\n' "$failures" >&2
  exit 1
fi
echo "test-installers: all passed"
