#!/usr/bin/env bash
# Installs the Keycloak the Keycloak end-to-end suite (tests/e2e/keycloak.mjs) runs against, and
# finds the Java it needs. Idempotent: a second run only prints the paths.
#
#   scripts/install-keycloak.sh              -> the unpacked Keycloak home on the last line of stdout
#   scripts/install-keycloak.sh --java-home  -> the Java 21+ JDK to run it with (nothing installed)
#   KEYCLOAK_VERSION=26.x.y scripts/install-keycloak.sh
#
# The distribution is org.keycloak:keycloak-quarkus-dist (zip) from Maven Central, fetched with
# `mvn dependency:get` into the local Maven repository (KEYCLOAK_MAVEN_REPO, else ~/.m2/repository),
# then unpacked once into
# ~/.cache/traefik-oidc-sidecar/keycloak-<version>/ (CI keeps ~/.cache between runs). Pinned
# version: 26.7.3, the newest 26.x Maven Central serves at the time of writing.
#
# Keycloak 26 needs Java 21 or newer. This script never downloads a JDK: it takes
# KEYCLOAK_JAVA_HOME, else JAVA_HOME, else the newest JDK under /usr/lib/jvm (or the directories
# listed in KEYCLOAK_JDK_DIRS), and fails with a clear message when none of them is 21+. The JDK
# is used for Keycloak (and mvn here) only; the rest of the suite keeps the machine's default Java.
set -euo pipefail

version="${KEYCLOAK_VERSION:-26.7.3}"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/traefik-oidc-sidecar"
home="$cache_dir/keycloak-$version"
artifact="org.keycloak:keycloak-quarkus-dist:$version:zip"

log() { printf 'install-keycloak: %s\n' "$*" >&2; }

# The major version of the java binary under $1 (0 when it does not run).
java_major() {
  local out
  out="$("$1/bin/java" -version 2>&1 | head -n 1)" || { echo 0; return; }
  # openjdk version "25.0.1" 2025-10-21 / "1.8.0_412" (Java 8 reports itself as 1.8)
  out="${out#*\"}"
  out="${out%%\"*}"
  case "$out" in
    1.*) out="${out#1.}" ;;
  esac
  out="${out%%[.+-]*}"
  [[ "$out" =~ ^[0-9]+$ ]] && echo "$out" || echo 0
}

find_jdk() {
  local candidates=() c best="" best_major=0 m
  [ -n "${KEYCLOAK_JAVA_HOME:-}" ] && candidates+=("$KEYCLOAK_JAVA_HOME")
  [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME")
  local dir
  for dir in ${KEYCLOAK_JDK_DIRS:-/usr/lib/jvm}; do
    for c in "$dir"/*; do [ -d "$c" ] && candidates+=("$c"); done
  done
  for c in "${candidates[@]}"; do
    [ -x "$c/bin/java" ] || continue
    m="$(java_major "$c")"
    # An explicitly named JDK wins when it is good enough; otherwise the newest one found.
    if [ "$m" -ge 21 ] && { [ "$c" = "${KEYCLOAK_JAVA_HOME:-}" ] || [ "$m" -gt "$best_major" ]; }; then
      best="$c"; best_major="$m"
      [ "$c" = "${KEYCLOAK_JAVA_HOME:-}" ] && break
    fi
  done
  if [ -z "$best" ]; then
    log "Keycloak $version needs a Java 21+ JDK and none was found"
    log "  looked at: KEYCLOAK_JAVA_HOME='${KEYCLOAK_JAVA_HOME:-}', JAVA_HOME='${JAVA_HOME:-}', ${KEYCLOAK_JDK_DIRS:-/usr/lib/jvm}/*"
    log "  install one from your distribution (e.g. a temurin-21 or openjdk-21 package) and set KEYCLOAK_JAVA_HOME"
    exit 1
  fi
  printf '%s\n' "$best"
}

jdk="$(find_jdk)"
if [ "${1:-}" = "--java-home" ]; then
  printf '%s\n' "$jdk"
  exit 0
fi

if [ -x "$home/bin/kc.sh" ] && [ -f "$home/.installed" ]; then
  log "cached: $home (Java $(java_major "$jdk"): $jdk)"
  printf '%s\n' "$home"
  exit 0
fi

command -v mvn >/dev/null || { log "mvn is required to fetch $artifact from Maven Central"; exit 1; }
command -v unzip >/dev/null || command -v python3 >/dev/null || { log "unzip or python3 is required to unpack the distribution"; exit 1; }

# The local Maven repository: KEYCLOAK_MAVEN_REPO, else Maven's default. It is passed to mvn
# explicitly, so the zip's path is known whatever settings.xml says.
repo="${KEYCLOAK_MAVEN_REPO:-$HOME/.m2/repository}"
zip="$repo/org/keycloak/keycloak-quarkus-dist/$version/keycloak-quarkus-dist-$version.zip"
if [ ! -f "$zip" ]; then
  log "fetching $artifact with mvn dependency:get (about 150 MB)"
  # Everything mvn prints goes to stderr: stdout carries only the path, on its last line (mvn
  # writes colour resets to stdout even with -q -B, which once ended up in that path).
  JAVA_HOME="$jdk" mvn -q -B -Dstyle.color=never -Dmaven.repo.local="$repo" dependency:get -Dartifact="$artifact" -Dtransitive=false >&2
fi
[ -f "$zip" ] || { log "mvn finished but $zip is missing"; exit 1; }

started=$(date +%s)
mkdir -p "$cache_dir"
work="$(mktemp -d "$cache_dir/keycloak-unpack.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "unpacking $zip"
if command -v unzip >/dev/null; then
  unzip -q "$zip" -d "$work" >&2
else
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$zip" "$work" >&2
fi
src="$work/keycloak-$version"
[ -f "$src/bin/kc.sh" ] || { log "the zip has no keycloak-$version/bin/kc.sh"; exit 1; }
chmod +x "$src"/bin/*.sh
touch "$src/.installed"
rm -rf "$home"
mv "$src" "$home"
log "installed Keycloak $version in $home in $(( $(date +%s) - started ))s (Java $(java_major "$jdk"): $jdk)"
printf '%s\n' "$home"
