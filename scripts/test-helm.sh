#!/usr/bin/env bash
# Validates the Helm chart deploy/helm/traefik-oidc-sidecar offline (no cluster, no network at
# test time):
#   1. helm lint --strict and helm template for the defaults and every values file in the
#      chart's examples/ (Helm v4.3.2, installed with go install when missing);
#   2. every rendered object checked by deploy/helm/validate: built-in kinds strictly decoded into
#      the k8s.io/api v0.37.2 types, Traefik's Middleware against the CRD schema shipped in the
#      Traefik v3.6.25 module (the version the suites run) with the apiextensions-apiserver code,
#      ServiceMonitor into prometheus-operator's Go types, plus cross-object checks;
#   3. the rendered sidecar configuration through the sidecar's own --check-config;
#   4. the chart's refusals (no session secret, several replicas without Redis, …) and broken
#      manifests (typo'd fields, wrong types, unknown Middleware keys, …) that MUST be rejected;
#   5. examples/kubernetes/*.yaml through the same validator.
# Caches: Helm in $(go env GOPATH)/bin, the validator binary in ~/.cache/traefik-oidc-sidecar/
# (keyed by a hash of its sources), the Traefik module in Go's module cache.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
started=$(date +%s)

HELM_VERSION=v4.3.2
TRAEFIK_MODULE=github.com/traefik/traefik/v3@v3.6.25
CHART="$ROOT/deploy/helm/traefik-oidc-sidecar"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/traefik-oidc-sidecar"

section() { printf '\n--> %s\n' "$*"; }
die() { printf 'test-helm: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go is not on PATH"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/test-helm.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

section "Helm $HELM_VERSION"
GOBIN_DIR="$(go env GOBIN)"
[ -n "$GOBIN_DIR" ] || GOBIN_DIR="$(go env GOPATH | cut -d: -f1)/bin"
HELM="$GOBIN_DIR/helm"
# `helm version` shows no patch level for a go-installed build; the module version is exact.
if ! { [ -x "$HELM" ] && go version -m "$HELM" 2>/dev/null | grep -qE "^[[:space:]]+mod[[:space:]]+helm.sh/helm/v4[[:space:]]+$HELM_VERSION([[:space:]]|$)"; }; then
  echo "installing helm.sh/helm/v4/cmd/helm@$HELM_VERSION (a few minutes on two cores)"
  (cd "$WORK" && GOBIN="$GOBIN_DIR" go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION")
fi
go version -m "$HELM" | grep -E '^[[:space:]]+mod[[:space:]]+helm.sh/helm/v4'

section "Schemas: Traefik's CRDs from the $TRAEFIK_MODULE module"
# From the module cache when build-traefik.sh already fetched it; checksummed by Go either way.
info="$(cd "$WORK" && GOFLAGS=-mod=mod go mod download -json "$TRAEFIK_MODULE")"
traefik_dir="$(printf '%s' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n1)"
crd_dir="$traefik_dir/docs/content/reference/dynamic-configuration"
[ -f "$crd_dir/traefik.io_middlewares.yaml" ] || die "no Middleware CRD under $crd_dir"
CRDS=(-crd "$crd_dir/traefik.io_middlewares.yaml" -crd "$crd_dir/traefik.io_ingressroutes.yaml")
echo "$crd_dir"

section "Validator (deploy/helm/validate): gofmt, go vet, build"
vdir="$ROOT/deploy/helm/validate"
unformatted="$(gofmt -l "$vdir")"
[ -z "$unformatted" ] || die "gofmt: $unformatted"
hash="$(cat "$vdir"/go.mod "$vdir"/go.sum "$vdir"/*.go | sha256sum | cut -c1-16)"
VALIDATE="$cache_dir/helm-validate-$hash"
if [ ! -x "$VALIDATE" ]; then
  mkdir -p "$cache_dir"
  (cd "$vdir" && go vet . && CGO_ENABLED=0 go build -trimpath -o "$VALIDATE.tmp.$$" .)
  mv -f "$VALIDATE.tmp.$$" "$VALIDATE"
  # Builds of earlier sources are never used again.
  find "$cache_dir" -maxdepth 1 -name 'helm-validate-*' ! -name "helm-validate-$hash" -delete
  echo "built $VALIDATE (go vet: clean)"
else
  echo "cached: $VALIDATE (vetted when built)"
fi
# The plugin door's keys are the shim's own: the json names of its Config fields.
plugin_keys="$(sed -n 's/.*`json:"\([A-Za-z]*\),omitempty"`.*/\1/p' traefik-plugin/config.go | paste -sd, -)"
[ -n "$plugin_keys" ] || die "no plugin keys found in traefik-plugin/config.go"
echo "plugin keys: $plugin_keys"
validate() { "$VALIDATE" "${CRDS[@]}" -plugin oidcsidecar -plugin-keys "$plugin_keys" "$@"; }

# Secrets generated per run: the chart refuses to render without them, and nothing fixed is
# ever used as a key.
session="$(openssl rand -base64 48 | tr -d '\n')"
secrets=(--set-string "secrets.sessionSecret=$session" --set-string secrets.clientSecret=test-client-secret
  --set-string "redis.password=$(openssl rand -hex 24)")

section "helm lint --strict and helm template: the defaults and every example"
mkdir -p "$WORK/rendered" "$WORK/configs" "$WORK/invalid"
values=("")
for f in "$CHART"/examples/*.yaml; do values+=("$f"); done
[ "${#values[@]}" -ge 5 ] || die "expected at least four values files in $CHART/examples"
for f in "${values[@]}"; do
  name="$(basename "${f:-defaults.yaml}")"
  args=("${secrets[@]}")
  [ -z "$f" ] || args+=(-f "$f")
  "$HELM" lint --strict "$CHART" "${args[@]}" >"$WORK/lint.log" 2>&1 || { cat "$WORK/lint.log"; die "helm lint: $name"; }
  "$HELM" template oidc "$CHART" --namespace traefik "${args[@]}" >"$WORK/rendered/$name" 2>"$WORK/template.log" ||
    { cat "$WORK/template.log"; die "helm template: $name"; }
  echo "rendered $name: $(grep -c '^kind:' "$WORK/rendered/$name") objects (lint: clean)"
done

# The Secret holds exactly what was given, and with existingSecret there is none.
grep -qF "session-secret: \"$(printf '%s' "$session" | base64 -w0)\"" "$WORK/rendered/minimal-cookie.yaml" ||
  die "the chart's Secret does not hold the session secret given"
! grep -q '^kind: Secret$' "$WORK/rendered/existing-secret.yaml" || die "a Secret was rendered despite existingSecret"

# The HorizontalPodAutoscaler and the Redis CA volume appear in no example: render them too.
"$HELM" template oidc "$CHART" --namespace traefik "${secrets[@]}" -f "$CHART/examples/redis-3-replicas.yaml" \
  --set autoscaling.enabled=true --set redis.caSecret=redis-ca --set-string redis.url=rediss://redis:6380/0 \
  >"$WORK/rendered/redis-autoscaling-tls.yaml"
grep -q '^kind: HorizontalPodAutoscaler$' "$WORK/rendered/redis-autoscaling-tls.yaml" || die "no HPA rendered"
echo "rendered redis-autoscaling-tls.yaml: $(grep -c '^kind:' "$WORK/rendered/redis-autoscaling-tls.yaml") objects"

section "Rendered manifests against the schemas"
validate -dump "$WORK/configs" "$WORK"/rendered/*.yaml

section "The rendered sidecar configurations through the sidecar's own --check-config"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --quiet --bin traefik-oidc-sidecar
bin="$CARGO_TARGET_DIR/debug/traefik-oidc-sidecar"
# The Redis CA the pod would find in the mounted Secret (the sidecar reads it at startup).
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=test-redis-ca -days 1 \
  -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
sed -i "s#/etc/traefik-oidc-sidecar-redis-ca/ca.crt#$WORK/ca.crt#" "$WORK"/configs/*
checked=0
for c in "$WORK"/configs/*; do
  # What the pod's environment holds: REDIS_URL as the Deployment sets it, with the
  # $(REDIS_PASSWORD) that Kubernetes expands.
  rendered="$WORK/rendered/$(basename "$c" | sed 's/\.yaml\..*$/.yaml/')"
  redis_url="$(sed -n 's/^ *value: "\(rediss\{0,1\}:\/\/.*\)"$/\1/p' "$rendered" | sed 's/\$(REDIS_PASSWORD)/pw/')"
  SESSION_SECRET="$session" OIDC_CLIENT_SECRET=test-client-secret REDIS_URL="${redis_url:-unset}" \
    "$bin" --config "$c" --check-config || die "--check-config refused $(basename "$c")"
  checked=$((checked + 1))
done
[ "$checked" -ge 6 ] || die "only $checked configurations were checked"

section "The chart refuses unsafe releases (helm template must fail with the reason)"
refuse() { # refuse WHAT EXPECTED-TEXT helm-args…
  local what="$1" want="$2"
  shift 2
  if "$HELM" template oidc "$CHART" --namespace traefik "$@" >/dev/null 2>"$WORK/refuse.log"; then
    die "accepted, but must be refused: $what"
  fi
  grep -qF -- "$want" "$WORK/refuse.log" || { cat "$WORK/refuse.log"; die "refused without saying \"$want\": $what"; }
  echo "ok   refused: $what"
}
minimal=(-f "$CHART/examples/minimal-cookie.yaml")
redis=(-f "$CHART/examples/redis-3-replicas.yaml")
refuse "no session secret (nothing generated, no placeholder)" "secrets.sessionSecret is required" "${minimal[@]}"
refuse "a session secret under 32 characters" "shorter than 32" "${minimal[@]}" --set-string secrets.sessionSecret=too-short
refuse "3 replicas with cookie sessions" "needs redis.enabled" "${minimal[@]}" "${secrets[@]}" --set replicaCount=3
refuse "autoscaling with cookie sessions" "needs redis.enabled" "${minimal[@]}" "${secrets[@]}" --set autoscaling.enabled=true
refuse "3 replicas with one middleware left in cookie mode" "keeps its sessions in cookies" "${redis[@]}" "${secrets[@]}" \
  --set-string config.middlewares.default.SessionStorageType=Cookie
refuse "a typo in the values (values.schema.json)" "'replicaCont' not allowed" "${minimal[@]}" "${secrets[@]}" --set replicaCont=3
refuse "Redis without a password" "redis.auth is on" "${redis[@]}" --set-string "secrets.sessionSecret=$session"
refuse "a Redis CA without TLS" "not rediss://" "${redis[@]}" "${secrets[@]}" --set redis.caSecret=redis-ca
refuse "a password inside redis.url" "without user or password" "${redis[@]}" "${secrets[@]}" --set-string redis.url=redis://:pw@redis:6379/0

section "Broken manifests the validator must reject"
mutate() { # mutate NAME RENDERED-FILE SED-SCRIPT: a rendered manifest with one defect
  local out="$WORK/invalid/$1.yaml"
  sed -e "$3" "$WORK/rendered/$2" >"$out"
  ! cmp -s "$out" "$WORK/rendered/$2" || die "mutation $1 changed nothing in $2"
}
mutate deployment-typo minimal-cookie.yaml 's/^  replicas: 1$/  replica: 1/'
mutate deployment-wrong-type minimal-cookie.yaml 's/^  replicas: 1$/  replicas: "1"/'
mutate deployment-duplicate-key minimal-cookie.yaml 's/^  replicas: 1$/  replicas: 1\n  replicas: 2/'
mutate container-field-case minimal-cookie.yaml 's/readOnlyRootFilesystem:/readOnlyRootFileSystem:/'
mutate bad-quantity minimal-cookie.yaml 's/memory: 128Mi/memory: 128MB!/'
mutate probe-port-unknown minimal-cookie.yaml 's/^              port: auth$/              port: http/'
mutate service-targetport-unknown minimal-cookie.yaml 's/targetPort: auth/targetPort: authz/'
mutate networkpolicy-typo minimal-cookie.yaml 's/policyTypes: \[Ingress\]/policyType: [Ingress]/'
mutate unknown-kind minimal-cookie.yaml 's/^kind: PodDisruptionBudget$/kind: PodDisruptionBudgets/'
mutate middleware-unknown-key minimal-cookie.yaml 's/trustForwardHeader:/trustForwardHeaders:/'
mutate middleware-wrong-type minimal-cookie.yaml 's/trustForwardHeader: true/trustForwardHeader: "yes"/'
mutate middleware-size-not-a-number minimal-cookie.yaml 's/maxResponseBodySize: 1048576/maxResponseBodySize: lots/'
mutate middleware-wrong-port minimal-cookie.yaml 's#:4181/auth/default#:4182/auth/default#'
mutate plugin-unknown-key existing-secret.yaml 's/^      timeout: "5s"$/      timeuot: "5s"/'
mutate servicemonitor-typo monitoring-networkpolicy.yaml 's/scrapeTimeout:/scrapeTimout:/'
# A Middleware breaking one of the CRD's CEL rules (x-kubernetes-validations: a prefix must
# start with '/'): judged by the same CEL code the API server runs.
{ cat "$WORK/rendered/minimal-cookie.yaml"; printf -- '---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata:\n  name: prefix\n  namespace: traefik\nspec:\n  addPrefix:\n    prefix: no-slash\n'; } \
  >"$WORK/invalid/middleware-cel-rule.yaml"
validate -expect-invalid "$WORK"/invalid/*.yaml

section "examples/kubernetes/*.yaml against the same schemas"
validate "$ROOT"/examples/kubernetes/*.yaml

echo
echo "helm chart: lint, render, schemas, --check-config, refusals and broken manifests all passed in $(( $(date +%s) - started ))s"
