{{/*
Names and labels. The fullname is the release name, unless that does not
already contain the chart's name, in which case it is "<release>-<chart>";
both are cut to 63 characters, the limit of a DNS label.
*/}}
{{- define "menshen.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "menshen.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "menshen.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels every object carries. */}}
{{- define "menshen.labels" -}}
helm.sh/chart: {{ include "menshen.chart" . }}
{{ include "menshen.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: menshen
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The labels that select menshen's pods; never change between upgrades. */}}
{{- define "menshen.selectorLabels" -}}
app.kubernetes.io/name: {{ include "menshen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The prober's pods: a name of their own, so that neither the API's
Deployment nor its Service selects them. */}}
{{- define "menshen.proberSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-prober" (include "menshen.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The environment of the prober, for `menshen probe` and `serve --probe`. */}}
{{- define "menshen.proberEnv" -}}
- name: MENSHEN_PROBE_INTERVAL
  value: {{ .Values.prober.interval | quote }}
- name: MENSHEN_PROBE_TIMEOUT
  value: {{ .Values.prober.timeout | quote }}
- name: MENSHEN_PROBE_FAILURES
  value: {{ .Values.prober.failures | quote }}
{{- end }}

{{/* The database URL from its Secret (or, in test harnesses, ConfigMap). */}}
{{- define "menshen.databaseUrlEnv" -}}
- name: MENSHEN_DATABASE_URL
  valueFrom:
    {{- if and (eq .Values.database.type "external") .Values.database.external.urlFromConfigMap }}
    configMapKeyRef:
    {{- else }}
    secretKeyRef:
    {{- end }}
      name: {{ include "menshen.databaseUrlSource" . }}
      key: {{ include "menshen.databaseUrlKey" . }}
{{- end }}

{{- define "menshen.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "menshen.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* registry/repository:tag@digest */}}
{{- define "menshen.image" -}}
{{- $image := .image -}}
{{- $ref := $image.repository -}}
{{- if $image.registry }}{{ $ref = printf "%s/%s" $image.registry $image.repository }}{{ end -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $ref $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (toString (default .default $image.tag)) -}}
{{- end -}}
{{- end }}

{{/* The database engine: "postgres" (external or cnpg) or "sqlite". */}}
{{- define "menshen.cnpgClusterName" -}}
{{- default (printf "%s-db" (include "menshen.fullname" .)) .Values.database.cnpg.clusterName | trunc 50 | trimSuffix "-" }}
{{- end }}

{{/* Name of the Secret (or test-only ConfigMap) that holds the database URL. */}}
{{- define "menshen.databaseUrlSource" -}}
{{- if eq .Values.database.type "cnpg" -}}
{{- printf "%s-app" (include "menshen.cnpgClusterName" .) -}}
{{- else if .Values.database.external.url -}}
{{- printf "%s-database" (include "menshen.fullname" .) -}}
{{- else -}}
{{- required "database.external.existingSecret: name the Secret that holds the database URL (or set database.type: sqlite)" .Values.database.external.existingSecret -}}
{{- end -}}
{{- end }}

{{- define "menshen.databaseUrlKey" -}}
{{- if eq .Values.database.type "cnpg" -}}uri{{- else -}}{{ .Values.database.external.existingSecretKey }}{{- end -}}
{{- end }}

{{/* Name of the ConfigMap that holds the provider file, and its key. */}}
{{- define "menshen.configMapName" -}}
{{- default (printf "%s-config" (include "menshen.fullname" .)) .Values.config.existingConfigMap }}
{{- end }}

{{- define "menshen.configKey" -}}
{{- if .Values.config.existingConfigMap }}{{ .Values.config.existingConfigMapKey }}{{ else }}menshen.toml{{ end }}
{{- end }}

{{/* The provider file as the chart renders it (empty with an existing ConfigMap). */}}
{{- define "menshen.providerFile" -}}
{{- if .Values.config.toml -}}
{{- .Values.config.toml -}}
{{- else -}}
# menshen provider file, rendered by the menshen Helm chart from the values
# under `config` (same keys as examples/menshen.toml). Check it with
# `menshen check-config FILE`.
{{- $file := omit .Values.config "existingConfigMap" "existingConfigMapKey" "toml" -}}
{{- include "menshen.toml.table" (dict "path" (list) "table" $file) -}}
{{- end -}}
{{- end }}

{{/* The Prometheus label matchers of this release's scrape job. */}}
{{- define "menshen.promSelector" -}}
{{- if .Values.prometheusRule.selector -}}
{{- .Values.prometheusRule.selector -}}
{{- else -}}
{{- printf "job=%q, namespace=%q" (include "menshen.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end }}

{{/* The trusted proxies, comma-separated, as menshen's --trusted-proxies takes them. */}}
{{- define "menshen.trustedProxies" -}}
{{- join "," .Values.menshen.trustedProxies -}}
{{- end }}
