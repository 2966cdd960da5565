{{/*
A TOML writer for the provider file.

Helm's own toToml is not used: Helm reads values.yaml numbers as float64,
and toToml then writes `port = 1194.0`, which menshen (rightly) refuses for
an integer field. Here a number without a fractional part is written as an
integer (menshen's float fields accept integers too); strings are written
as JSON strings, which are valid TOML basic strings.

A table is written as its plain keys first, then its sub-tables as
`[a.b]`, then its lists of tables as `[[a.b]]` (TOML wants plain keys
before any header). Keys are sorted. null values are left out, so that
`--set config.x=null` removes a default.
*/}}

{{- define "menshen.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end }}

{{/* "table", "tables" (a non-empty list of maps) or "value". */}}
{{- define "menshen.toml.kind" -}}
{{- if kindIs "map" . -}}table
{{- else if and (kindIs "slice" .) (gt (len .) 0) (kindIs "map" (first .)) -}}tables
{{- else -}}value
{{- end -}}
{{- end }}

{{- define "menshen.toml.value" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}
{{- toJson $v -}}
{{- else if kindIs "bool" $v -}}
{{- $v -}}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) -}}
{{- if eq (floor $v) (float64 $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end -}}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "int32" $v) (kindIs "uint64" $v) -}}
{{- $v -}}
{{- else if kindIs "slice" $v -}}
[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "menshen.toml.value" $e }}{{ end }}]
{{- else if kindIs "map" $v -}}
{ {{- range $i, $k := keys $v | sortAlpha }}{{ if $i }},{{ end }} {{ include "menshen.toml.key" $k }} = {{ include "menshen.toml.value" (index $v $k) }}{{ end }} }
{{- else -}}
{{- fail (printf "config: cannot write %v (%s) into the provider file" $v (kindOf $v)) -}}
{{- end -}}
{{- end }}

{{/* dict "path" (list of written keys) "table" (map) */}}
{{- define "menshen.toml.table" -}}
{{- $path := .path -}}
{{- $table := .table -}}
{{- range $k := keys $table | sortAlpha }}
{{- $v := index $table $k }}
{{- if and (not (kindIs "invalid" $v)) (eq (include "menshen.toml.kind" $v) "value") }}
{{ include "menshen.toml.key" $k }} = {{ include "menshen.toml.value" $v }}
{{- end }}
{{- end }}
{{- range $k := keys $table | sortAlpha }}
{{- $v := index $table $k }}
{{- if and (not (kindIs "invalid" $v)) (eq (include "menshen.toml.kind" $v) "table") }}
{{- $sub := append $path (include "menshen.toml.key" $k) }}

[{{ join "." $sub }}]
{{- include "menshen.toml.table" (dict "path" $sub "table" $v) }}
{{- end }}
{{- end }}
{{- range $k := keys $table | sortAlpha }}
{{- $v := index $table $k }}
{{- if and (not (kindIs "invalid" $v)) (eq (include "menshen.toml.kind" $v) "tables") }}
{{- $sub := append $path (include "menshen.toml.key" $k) }}
{{- range $element := $v }}
{{- if not (kindIs "map" $element) }}
{{- fail (printf "config: %s mixes tables and other values" (join "." $sub)) }}
{{- end }}

[[{{ join "." $sub }}]]
{{- include "menshen.toml.table" (dict "path" $sub "table" $element) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
