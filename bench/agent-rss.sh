#!/usr/bin/env bash
# Memory of menshen-agent while it works: VmRSS and VmHWM (peak) of the
# release binary pushing every second to a real menshen for DURATION.
#
#   bench/agent-rss.sh [DURATION_SECONDS]
#
# The agent watches one OpenVPN gateway (its management interface is down,
# so it reports it unhealthy) and one obfs4 bridge whose state is a
# bridgeline file written here; its metrics listener is on and asked every
# second too. MENSHEN_BENCH_PROFILE=debug measures debug binaries instead
# of release ones (larger); MENSHEN_BENCH_PREBUILT=DIR uses binaries already
# built (see bench/lib.sh). Needs python3, cargo, curl.
set -euo pipefail

duration=${1:-60}
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
need python3 curl

profile=${MENSHEN_BENCH_PROFILE:-release}
binaries "$profile" -p menshen -p menshen-agent
[ -z "${MENSHEN_BENCH_PREBUILT:-}" ] || profile="binaries in $bin"

port=$(free_port)
start_server menshen "http://127.0.0.1:$port/readyz" "$work/menshen.log" \
    "$bin/menshen" --log-level warn serve --listen "127.0.0.1:$port" --data-dir "$work/data" \
    --config "$root/examples/menshen.toml"
"$bin/menshen" --log-level warn agent create rss-bench --data-dir "$work/data" > "$work/token"

mkdir -p "$work/obfs4"
cert=$(python3 -c 'import base64,os; print(base64.b64encode(os.urandom(52)).decode().rstrip("="))')
echo "Bridge obfs4 127.0.0.1:$(free_port) 0000000000000000000000000000000000000000 cert=$cert iat-mode=0" \
    > "$work/obfs4/obfs4_bridgeline.txt"
metrics_port=$(free_port)
cat > "$work/agent.toml" <<CONF
menshen_url = "http://127.0.0.1:$port"
token_file = "$work/token"
interval = "1s"
metrics_listen = "127.0.0.1:$metrics_port"

[host]
name = "rss.example.org"
ip_addr = "192.0.2.10"
location = "amsterdam"

[[openvpn]]
host = "gw-rss.example.org"
transport = "udp"
port = 1194
management = "127.0.0.1:$(free_port)"
capacity = 100

[[obfs4]]
host = "br-rss.example.org"
transport = "kcp"
port = 443
state_dir = "$work/obfs4"
CONF
start_server menshen-agent "http://127.0.0.1:$metrics_port/metrics" "$work/agent.log" \
    env RUST_LOG=warn "$bin/menshen-agent" --config "$work/agent.toml"
agent=$server_pid

( while sleep 1; do curl -s "http://127.0.0.1:$metrics_port/metrics" >/dev/null; done ) &
track $!
peak=0
for _ in $(seq $((duration / 5))); do
    sleep 5
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$agent/status")
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$agent/status")
    [ "$hwm" -gt "$peak" ] && peak=$hwm
    echo "VmRSS ${rss} kB  VmHWM ${hwm} kB" >&2
done
listed=$(curl -s "http://127.0.0.1:$port/api/5/bridges" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "menshen-agent ($profile): peak RSS $((peak / 1024)).$(( (peak % 1024) * 10 / 1024 )) MB over ${duration}s of pushes every second (bridges listed: $listed)"
