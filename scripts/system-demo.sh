#!/usr/bin/env bash
# The whole system on this host, from the two charts, for a person to look
# at: what e2e/tests/system.rs checks, left running until Ctrl-C.
#
#   scripts/system-demo.sh            # build, start, connect a client, wait
#
# It builds menshen and menshen-agent (debug), the images
# (scripts/build-images.sh --gateway: menshen, menshen-agent, and
# menshen-gateway-tools with Debian's openvpn, obfs4proxy and kresd), makes
# a Postgres database on the local server, key material (`menshen pki
# init`, `menshen pki gateway-cert`) and an agent token, renders
# charts/menshen (ci/podman-values.yaml + e2e/system/backend-values.yaml)
# and charts/gateway (ci/podman-values.yaml) with helm, and runs both with
# `podman kube play --network host`. Then a real OpenVPN client (from the
# config menshen serves) connects to the gateway's TCP server. On exit
# everything it made is removed (pods, volumes, images, database).
#
# The host's network is left alone: servers and client run with
# --ifconfig-noexec, so the tunnel comes up but carries nothing.
#
# Needs root, podman, buildah, runc, debootstrap, openvpn, psql and helm
# (MENSHEN_HELM, or target/chart-tools/bin/helm as .ci/run installs it, or
# PATH); Postgres at MENSHEN_TEST_DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres). Every port is a free one,
# drawn at start and printed at the end.
set -euo pipefail
# (root, work, free_port, wait_url, and at exit: what it started stopped,
# work removed)
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/../bench/lib.sh"

target=${CARGO_TARGET_DIR:-$root/target}
helm=${MENSHEN_HELM:-}
[ -n "$helm" ] || { [ -x "$target/chart-tools/bin/helm" ] && helm=$target/chart-tools/bin/helm; } || true
[ -n "$helm" ] || helm=$(command -v helm || true)
[ -x "$helm" ] || { echo "no helm: set MENSHEN_HELM (bash .ci/run installs one)" >&2; exit 1; }
admin=${MENSHEN_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}

# Podman as it works here (see TOOLING in the README's Tests section).
containers_dir=$target/containers
mkdir -p "$containers_dir"
if [ -z "${CONTAINERS_CONF:-}" ]; then
    printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n' \
        > "$containers_dir/containers.conf"
    export CONTAINERS_CONF=$containers_dir/containers.conf
fi
if [ -z "${CONTAINERS_STORAGE_CONF:-}" ]; then
    printf '[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n' \
        "$containers_dir/storage" "$containers_dir/run" > "$containers_dir/storage.conf"
    export CONTAINERS_STORAGE_CONF=$containers_dir/storage.conf
fi

tag=demo
db=menshen_demo_$$
menshen=$target/debug/menshen
# After the OpenVPN client is stopped; then work is removed.
teardown() {
    set +e
    for f in "$work"/gateway.yaml "$work"/backend.yaml; do
        [ -f "$f" ] && podman kube down "$f" >/dev/null 2>&1
    done
    for v in $(cat "$work"/volumes 2>/dev/null); do podman volume rm -f "$v" >/dev/null 2>&1; done
    for i in menshen menshen-agent menshen-gateway-tools; do podman rmi -f "localhost/$i:$tag" >/dev/null 2>&1; done
    psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
    echo "removed what the demo made" >&2
}
at_exit teardown

say() { printf '\n== %s\n' "$*" >&2; }
http=$(free_port) metrics=$(free_port) udp=$(free_port) tcp=$(free_port) bridge=$(free_port)
udp_mgmt=$(free_port) tcp_mgmt=$(free_port) dns=$(free_port) dns_health=$(free_port) agent_metrics=$(free_port)
# A Secret manifest's data as a ConfigMap (podman 4.3.1 cannot mount Secrets).
secret_as_configmap() { # NAME < SECRET
    python3 -c '
import base64, json, sys
name = sys.argv[1]; data = {}; inside = False
for line in sys.stdin:
    if line.startswith("data:"): inside = True; continue
    if inside and line.startswith("  ") and ": " in line:
        k, v = line.strip().split(": ", 1); data[k] = base64.b64decode(v).decode()
print("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:" % name)
for k, v in data.items(): print("  %s: %s" % (k, json.dumps(v)))
' "$1"
    echo "$1" >> "$work/volumes"
}
# What helm rendered, without container ports (podman 4.3.1 turns them into
# port mappings, which host networking refuses).
playable() { python3 -c '
import sys
out, skip = [], None
for line in sys.stdin.read().splitlines():
    indent = len(line) - len(line.lstrip())
    if skip is not None:
        if not line.strip() or indent > skip or (line.lstrip().startswith("- ") and indent == skip): continue
        skip = None
    if line.strip() == "ports:" and indent > 2: skip = indent; continue
    out.append(line)
print("\n".join(out))
'; }
configmap_names() { awk '/^kind: ConfigMap/{c=1} c && /^  name: /{print $2; c=0}' "$1" >> "$work/volumes"; }

say "building menshen and menshen-agent, then the images"
cargo build -q -p menshen -p menshen-agent --manifest-path "$root/Cargo.toml"
CARGO_TARGET_DIR=$target "$root/scripts/build-images.sh" --profile debug --tag "$tag" --gateway

say "database $db, key material, agent token"
psql "$admin" -qc "CREATE DATABASE $db" >/dev/null
db_url=${admin%/*}/$db
"$menshen" pki init --secret demo-pki --out "$work/offline" --name demo.test > "$work/pki-secret.yaml" 2>/dev/null
python3 -c '
import base64, sys
for line in open(sys.argv[1]):
    if line.startswith("  ca.crt: "): open(sys.argv[2], "w").write(base64.b64decode(line.split(": ")[1]).decode())
    if line.startswith("  signing.key: "): open(sys.argv[3], "w").write(base64.b64decode(line.split(": ")[1]).decode())
' "$work/pki-secret.yaml" "$work/ca.crt" "$work/signing.key"
"$menshen" pki gateway-cert gw-system.example.org --ip 127.0.0.1 \
    --ca-cert "$work/offline/provider-ca.crt" --ca-key "$work/offline/provider-ca.key" \
    --client-ca "$work/ca.crt" --secret demo-openvpn-tls > "$work/tls-secret.yaml"
token=$("$menshen" agent create gw-demo --database-url "$db_url" --signing-key-file "$work/signing.key")

say "backend: charts/menshen"
"$helm" template demo-backend "$root/charts/menshen" --skip-tests \
    -f "$root/charts/menshen/ci/podman-values.yaml" -f "$root/e2e/system/backend-values.yaml" \
    --set image.tag=$tag --set database.external.url="$db_url" --set pki.existingSecret=demo-pki \
    --set containerPorts.http=$http --set containerPorts.metrics=$metrics \
    | playable > "$work/backend.yaml"
configmap_names "$work/backend.yaml"
{ echo "---"; secret_as_configmap demo-pki < "$work/pki-secret.yaml"; } >> "$work/backend.yaml"
# From the work folder: podman 4.3 builds an image itself when the current
# folder has a subfolder named like it with a Containerfile (menshen/ here).
# (Its complaints about systemd, for probes, do not matter here.)
(cd "$work" && podman kube play --network host "$work/backend.yaml" >/dev/null 2>&1)
api=http://127.0.0.1:$http
wait_url "$api/readyz" menshen

say "gateway: charts/gateway"
# The bridge's state folder belongs to the bridge's user (not root).
install -d -o 65532 -g 65532 -m 0700 "$work/bridge-state"
"$helm" template demo-gateway "$root/charts/gateway" -f "$root/charts/gateway/ci/podman-values.yaml" \
    --set openvpn.image.tag=$tag --set bridge.image.tag=$tag --set kresd.image.tag=$tag \
    --set agent.image.tag=$tag --set openvpn.tls.existingSecret=demo-openvpn-tls \
    --set agent.token.existingSecret=demo-agent-token --set bridge.state.hostPath="$work/bridge-state" \
    --set agent.menshenUrl="$api" --set agent.metrics.port=$agent_metrics \
    --set "openvpn.servers[0].port=$udp" --set "openvpn.servers[0].managementPort=$udp_mgmt" \
    --set "openvpn.servers[1].port=$tcp" --set "openvpn.servers[1].managementPort=$tcp_mgmt" \
    --set bridge.port=$bridge --set kresd.port=$dns --set kresd.healthPort=$dns_health \
    | playable > "$work/gateway.yaml"
configmap_names "$work/gateway.yaml"
{
    echo "---"; secret_as_configmap demo-openvpn-tls < "$work/tls-secret.yaml"
    echo "---"; printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo-agent-token\ndata:\n  token: %s\n' "$token"
} >> "$work/gateway.yaml"
echo demo-agent-token >> "$work/volumes"
(cd "$work" && podman kube play --network host "$work/gateway.yaml" >/dev/null 2>&1)
for _ in $(seq 60); do
    [ "$(curl -s "$api/api/5/gateways" | grep -o '"host"' | wc -l)" -ge 2 ] \
        && curl -s "$api/api/5/bridges" | grep -q gw-system && break
    sleep 0.5
done

say "what menshen lists"
curl -s "$api/api/5/gateways" | python3 -m json.tool
curl -s "$api/api/5/bridges" | python3 -m json.tool

say "a real OpenVPN client with the configuration menshen serves (tr=tcp)"
curl -s "$api/api/5/openvpn/config?tr=tcp" > "$work/client.ovpn"
openvpn --config "$work/client.ovpn" --ifconfig-noexec --route-nopull --log "$work/client.log" &
track $!
for _ in $(seq 60); do grep -q "Initialization Sequence Completed" "$work/client.log" 2>/dev/null && break; sleep 0.5; done
grep -E "PUSH_REPLY|Initialization Sequence Completed" "$work/client.log" | sed 's/^/  /'
sleep 3
say "the agent's metrics (OpenVPN exporter names)"
curl -s "http://127.0.0.1:$agent_metrics/metrics" | grep -E '^(openvpn_|menshen_agent_pushes)' | sed 's/^/  /'

cat >&2 <<EOF

Running. Try:
  curl -s "$api/api/5/gateways"                   # load 0.01: the client above
  curl -s http://127.0.0.1:$agent_metrics/metrics # the agent
  dig +tcp -p $dns_health @127.0.0.1 resolver.gw-system.example.org   # kresd
  export CONTAINERS_CONF=$CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF
  podman pod ps                                   # the pods of both charts
  podman kube down $work/gateway.yaml             # the gateway leaves the lists within 6 s
Ctrl-C removes everything.
EOF
trap 'exit 0' INT TERM
while true; do sleep 3600 & wait $!; done
