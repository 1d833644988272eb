{{/*
Names, labels and the derived values every template shares: the effective middleware blocks,
the checks that refuse an unsafe release, and the Secret's name.
*/}}

{{- define "tos.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The Service name: a DNS-1035 label, at most 63 characters. */}}
{{- define "tos.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tos.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tos.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tos.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tos.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tos.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "tos.secretName" -}}
{{- default (include "tos.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Whether the pods get OIDC_CLIENT_SECRET: a value here, or a key in the existing Secret. */}}
{{- define "tos.hasClientSecret" -}}
{{- if .Values.secrets.existingSecret -}}
{{- if .Values.secrets.keys.clientSecret -}}true{{- end -}}
{{- else if .Values.secrets.clientSecret -}}true{{- end -}}
{{- end -}}

{{/* The key of a map that equals want ignoring case (the sidecar reads middleware keys
case-insensitively, like traefik-oidc-auth), or "". */}}
{{- define "tos.keyCI" -}}
{{- $want := lower .want -}}
{{- range $k, $_ := .map -}}
{{- if eq (lower $k) $want -}}{{ $k }}{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The middleware blocks as the sidecar will read them, as YAML: the user's blocks plus Secret,
Provider.ClientSecret and SessionStorageType where the user left them out.
*/}}
{{- define "tos.middlewares" -}}
{{- $out := dict -}}
{{- $hasClient := include "tos.hasClientSecret" . -}}
{{- range $name, $block := .Values.config.middlewares -}}
{{- $b := deepCopy (default dict $block) -}}
{{- if not (include "tos.keyCI" (dict "map" $b "want" "Secret")) -}}
{{- $_ := set $b "Secret" "${SESSION_SECRET}" -}}
{{- end -}}
{{- $pk := include "tos.keyCI" (dict "map" $b "want" "Provider") -}}
{{- if and $hasClient $pk -}}
{{- $p := get $b $pk -}}
{{- if not (include "tos.keyCI" (dict "map" $p "want" "ClientSecret")) -}}
{{- $_ := set $p "ClientSecret" "${OIDC_CLIENT_SECRET}" -}}
{{- end -}}
{{- end -}}
{{- if and $.Values.redis.enabled (not (include "tos.keyCI" (dict "map" $b "want" "SessionStorageType"))) -}}
{{- $_ := set $b "SessionStorageType" "Redis" -}}
{{- end -}}
{{- $_ := set $out $name $b -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* Whether a middleware block (effective) keeps its sessions in Redis. */}}
{{- define "tos.isRedis" -}}
{{- $k := include "tos.keyCI" (dict "map" . "want" "SessionStorageType") -}}
{{- if and $k (eq (lower (toString (get . $k))) "redis") -}}true{{- end -}}
{{- end -}}

{{/* A Kubernetes object name for a sidecar middleware name (which may hold _ and capitals). */}}
{{- define "tos.middlewareObject" -}}
{{- printf "%s-%s" (include "tos.fullname" .root) (.name | lower | replace "_" "-") | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The sidecar's base URL inside the cluster. */}}
{{- define "tos.url" -}}
{{- printf "http://%s.%s.svc.%s:%d" (include "tos.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.config.port) -}}
{{- end -}}

{{/*
The checks that refuse a release that would run unsafely. Every template includes this, so
`helm template`, `helm install` and `helm upgrade` all stop with the message.
*/}}
{{- define "tos.validate" -}}
{{- $v := .Values -}}
{{- if and (not $v.secrets.existingSecret) (not $v.secrets.sessionSecret) -}}
{{- fail "secrets.sessionSecret is required (at least 32 random characters: --set-string secrets.sessionSecret=\"$(openssl rand -base64 48)\"), or name a Secret you created in secrets.existingSecret. The chart never generates or renders a placeholder key." -}}
{{- end -}}
{{- if and (not $v.secrets.existingSecret) (lt (len $v.secrets.sessionSecret) 32) -}}
{{- fail "secrets.sessionSecret is shorter than 32 characters: generate one with openssl rand -base64 48" -}}
{{- end -}}
{{- if not $v.secrets.keys.sessionSecret -}}
{{- fail "secrets.keys.sessionSecret must name the Secret's key that holds the session secret" -}}
{{- end -}}
{{- if and $v.secrets.clientSecret (not $v.secrets.existingSecret) (not $v.secrets.keys.clientSecret) -}}
{{- fail "secrets.clientSecret is set but secrets.keys.clientSecret is empty: name the key it is stored under" -}}
{{- end -}}
{{- $multi := or (gt (int $v.replicaCount) 1) $v.autoscaling.enabled -}}
{{- if and $multi (not $v.redis.enabled) -}}
{{- fail (printf "replicaCount %v%s needs redis.enabled: with cookie sessions the back-channel logout's ended list, the logout tokens' replay memory and inline registrations are per process, so a second replica would accept what the first one ended. Use 1 replica, or Redis sessions." $v.replicaCount (ternary " with autoscaling" "" $v.autoscaling.enabled)) -}}
{{- end -}}
{{- if $multi -}}
{{- range $name, $b := fromYaml (include "tos.middlewares" .) -}}
{{- if not (include "tos.isRedis" $b) -}}
{{- fail (printf "middleware %q keeps its sessions in cookies (SessionStorageType is not Redis) but the release runs several replicas: every middleware needs SessionStorageType: Redis, or run 1 replica" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $v.redis.enabled -}}
{{- if not (regexMatch "^rediss?://[^@/]+(/[0-9]*)?$" $v.redis.url) -}}
{{- fail (printf "redis.url must be redis://host:port[/db] or rediss://… without user or password (got %q): the chart inserts redis.username and the password from the Secret" $v.redis.url) -}}
{{- end -}}
{{- if and $v.redis.auth (not $v.secrets.existingSecret) (not $v.redis.password) -}}
{{- fail "redis.auth is on but redis.password is empty: set it (openssl rand -hex 24) or use secrets.existingSecret; SECURITY.md asks for a password on Redis" -}}
{{- end -}}
{{- if and $v.redis.caSecret (not (hasPrefix "rediss://" $v.redis.url)) -}}
{{- fail "redis.caSecret is set but redis.url is not rediss://: the CA only applies to TLS connections" -}}
{{- end -}}
{{- if and $v.redis.password (not (regexMatch "^[A-Za-z0-9._~-]+$" $v.redis.password)) -}}
{{- fail "redis.password goes into the Redis URL and must be URL-safe (letters, digits, - . _ ~): openssl rand -hex 24" -}}
{{- end -}}
{{- end -}}
{{- if and $v.traefik.plugin.enabled (not $v.config.middlewares) -}}
{{- fail "traefik.plugin.enabled renders one plugin Middleware per entry of config.middlewares, and there is none" -}}
{{- end -}}
{{- end -}}
