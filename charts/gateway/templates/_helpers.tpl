{{/*
Names and labels. The fullname is the release name, unless that does not
already contain the chart's name, in which case it is "<release>-<chart>";
cut to 50 characters so that "<fullname>-openvpn-<server>" stays a DNS label.
*/}}
{{- define "gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The labels every object carries; "component" is added per workload. */}}
{{- define "gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: menshen
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one workload: call with (list $ "component"). */}}
{{- define "gateway.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "gateway.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* registry/repository:tag@digest; call with (dict "image" .. "default" ..). */}}
{{- define "gateway.image" -}}
{{- $image := .image -}}
{{- $ref := $image.repository -}}
{{- if $image.registry }}{{ $ref = printf "%s/%s" $image.registry $image.repository }}{{ end -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $ref $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (toString (default .default $image.tag)) -}}
{{- end -}}
{{- end }}

{{/* The server's own address on a tun network: the network's first host. */}}
{{- define "gateway.tunAddress" -}}
{{- $octets := splitList "." .network -}}
{{- printf "%s.%s.%s.%d" (index $octets 0) (index $octets 1) (index $octets 2) (add1 (atoi (index $octets 3))) -}}
{{- end }}

{{/* The OpenVPN server the bridge forwards to. */}}
{{- define "gateway.bridgeTarget" -}}
{{- $found := dict -}}
{{- range .Values.openvpn.servers }}{{ if eq .name $.Values.bridge.openvpnServer }}{{ $found = . }}{{ end }}{{ end -}}
{{- if not $found.port }}{{ fail (printf "bridge.openvpnServer: %q is not the name of an entry of openvpn.servers" .Values.bridge.openvpnServer) }}{{ end -}}
{{- printf "127.0.0.1:%d" (int $found.port) -}}
{{- end }}

{{/*
Pod-level settings every workload shares: (dict "root" $ "container"
SECURITYCONTEXT). fsGroup is the container's group, so that it may read
the Secrets mounted into it (Kubernetes makes their files root's, readable
by fsGroup) and write a claim.
*/}}
{{- define "gateway.podSpec" -}}
{{- $sc := .container -}}
{{- with .root -}}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
securityContext:
  {{- if $sc.runAsGroup }}
  fsGroup: {{ $sc.runAsGroup }}
  fsGroupChangePolicy: OnRootMismatch
  {{- end }}
  seccompProfile:
    type: RuntimeDefault
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Deployment frame: (dict "root" $ "component" "x" "checksum" "...") */}}
{{- define "gateway.deploymentHead" -}}
{{- $root := .root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "gateway.fullname" $root }}-{{ .component }}
  labels:
    {{- include "gateway.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  # One per host: on the host's network a second one could not bind its ports.
  replicas: 1
  strategy:
    type: Recreate
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      {{- include "gateway.selectorLabels" (list $root .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "gateway.selectorLabels" (list $root .component) | nindent 8 }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ .checksum }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end }}

{{/* A liveness probe from values plus its action. */}}
{{- define "gateway.livenessProbe" -}}
{{- if .probe.enabled -}}
livenessProbe:
  {{- .action | nindent 2 }}
  initialDelaySeconds: {{ .probe.initialDelaySeconds }}
  periodSeconds: {{ .probe.periodSeconds }}
  timeoutSeconds: {{ .probe.timeoutSeconds }}
  failureThreshold: {{ .probe.failureThreshold }}
{{- end }}
{{- end }}

{{/* One OpenVPN server's configuration. */}}
{{- define "gateway.openvpnConfig" -}}
{{- $root := .root -}}
{{- $s := .server -}}
{{- $o := $root.Values.openvpn -}}
# {{ $s.name }}: OpenVPN over {{ $s.transport }} on port {{ $s.port }}, rendered by the gateway chart.
# Its options match what menshen hands clients (openvpn_configuration).
dev tun
topology subnet
server {{ $s.network }} {{ $s.netmask }}
proto {{ if eq $s.transport "tcp" }}tcp-server{{ else }}udp{{ end }}
{{- with $o.listenAddress }}
local {{ . }}
{{- end }}
port {{ $s.port }}
ca /etc/openvpn/tls/ca.crt
cert /etc/openvpn/tls/tls.crt
key /etc/openvpn/tls/tls.key
# ECDHE only: no finite-field Diffie-Hellman parameters. No tls-crypt or
# tls-auth: LEAP clients get no such key from the provider API.
dh none
# Every client is CN=UNLIMITED.
duplicate-cn
data-ciphers {{ $o.dataCiphers }}
auth {{ $o.auth }}
tls-cipher {{ $o.tlsCipher }}
tls-version-min {{ $o.tlsVersionMin }}
keepalive {{ $o.keepalive }}
persist-key
persist-tun
{{- if eq $s.transport "udp" }}
explicit-exit-notify 1
{{- end }}
# The agent's: one client at a time, on this host only.
management 127.0.0.1 {{ $s.managementPort }}
{{- if $o.redirectGateway }}
push "redirect-gateway def1 bypass-dhcp"
{{- end }}
{{- if $root.Values.kresd.enabled }}
push "dhcp-option DNS {{ include "gateway.tunAddress" $s }}"
{{- end }}
{{- range $o.push }}
push {{ . | quote }}
{{- end }}
{{- if $o.statusFile }}
status /run/openvpn/{{ $s.name }}.status {{ $o.statusInterval }}
status-version 2
{{- end }}
{{- if $o.ifconfigNoexec }}
# Tests and demos: the host's interfaces and routes stay as they are.
ifconfig-noexec
{{- end }}
verb {{ $o.verb }}
{{- with $o.extraConfig }}
{{ . }}
{{- end }}
{{- end }}

{{/* menshen-agent's configuration. */}}
{{- define "gateway.agentConfig" -}}
{{- $a := .Values.agent -}}
# menshen-agent's configuration, rendered by the gateway chart.
menshen_url = {{ $a.menshenUrl | quote }}
token_file = "/run/menshen-agent/token"
interval = {{ $a.interval | quote }}
check_interval = {{ $a.checkInterval | quote }}
withdraw_on_exit = {{ $a.withdrawOnExit }}
overload_threshold = {{ $a.overloadThreshold }}
{{- if $a.metrics.enabled }}
metrics_listen = "{{ $a.metrics.listenAddress }}:{{ $a.metrics.port }}"
{{- end }}

[host]
name = {{ .Values.gateway.name | quote }}
ip_addr = {{ .Values.gateway.ipAddr | quote }}
{{- with .Values.gateway.ip6Addr }}
ip6_addr = {{ . | quote }}
{{- end }}
location = {{ .Values.gateway.location | quote }}
{{- if .Values.openvpn.enabled }}
{{- range .Values.openvpn.servers }}

[[openvpn]]
host = {{ default (printf "%s.%s" .name $.Values.gateway.name) .host | quote }}
transport = {{ .transport | quote }}
port = {{ .port }}
management = "127.0.0.1:{{ .managementPort }}"
capacity = {{ .capacity }}
{{- if eq .transport "tcp" }}
probe_addr = "127.0.0.1:{{ .port }}"
{{- end }}
{{- if .experimental }}
experimental = true
{{- end }}
{{- with .bucket }}
bucket = {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.bridge.enabled }}
{{- $b := .Values.bridge }}

[[obfs4]]
host = {{ default .Values.gateway.name $b.host | quote }}
type = {{ $b.type | quote }}
transport = {{ $b.transport | quote }}
{{- if or (eq $b.type "obfs4") $b.port }}
port = {{ $b.port }}
{{- end }}
state_dir = "/var/lib/obfs4"
{{- if eq $b.transport "tcp" }}
probe_addr = "127.0.0.1:{{ $b.port }}"
{{- end }}
{{- if $b.experimental }}
experimental = true
{{- end }}
{{- with $b.bucket }}
bucket = {{ . | quote }}
{{- end }}
{{- if eq $b.type "obfs4-hop" }}
options = { min_hop_seconds = {{ $b.hop.minHopSeconds }}, hop_jitter = {{ $b.hop.hopJitter }}, min_hop_port = {{ $b.hop.minHopPort }}, max_hop_port = {{ $b.hop.maxHopPort }}, port_count = {{ $b.hop.portCount }}, port_seed = {{ $b.hop.portSeed }} }
{{- end }}
{{- end }}
{{- end }}

{{/* kresd's configuration. */}}
{{- define "gateway.kresdConfig" -}}
{{- $k := .Values.kresd -}}
-- kresd's configuration, rendered by the gateway chart: answer the VPN
-- clients on each OpenVPN server's tun address (freebind: before the tun
-- devices exist), and this host on 127.0.0.1.
{{- range .Values.openvpn.servers }}
net.listen('{{ include "gateway.tunAddress" . }}', {{ $k.port }}, { kind = 'dns', freebind = true })
{{- end }}
net.listen('127.0.0.1', {{ $k.healthPort }}, { kind = 'dns' })
cache.size = {{ $k.cacheSizeMB }} * MB
modules.load('view')
{{- range .Values.openvpn.servers }}
view:addr('{{ .network }}/{{ include "gateway.maskBits" .netmask }}', policy.all(policy.PASS))
{{- end }}
view:addr('127.0.0.0/8', policy.all(policy.PASS))
view:addr('0.0.0.0/0', policy.all(policy.REFUSE))
view:addr('::/0', policy.all(policy.REFUSE))
{{- with $k.forwarders }}
policy.add(policy.all(policy.FORWARD({ {{- range $i, $f := . }}{{ if $i }}, {{ end }}'{{ $f }}'{{ end -}} })))
{{- end }}
{{- with $k.extraConfig }}
{{ . }}
{{- end }}
{{- end }}

{{/* Prefix length of a dotted netmask. */}}
{{- define "gateway.maskBits" -}}
{{- $bits := 0 -}}
{{- range splitList "." . -}}
{{- $o := atoi . -}}
{{- range $b := list 128 64 32 16 8 4 2 1 -}}
{{- if ge $o $b }}{{ $o = sub $o $b }}{{ $bits = add1 $bits }}{{ end -}}
{{- end -}}
{{- end -}}
{{- $bits -}}
{{- end }}

{{/* The bridge's state folder, shared by the bridge and the agent. */}}
{{- define "gateway.bridgeStateVolume" -}}
- name: state
  {{- if .Values.bridge.state.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.bridge.state.existingClaim }}
  {{- else }}
  hostPath:
    path: {{ .Values.bridge.state.hostPath }}
    type: DirectoryOrCreate
  {{- end }}
{{- end }}
