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
# of release ones (larger). Needs python3, cargo, curl.
set -euo pipefail
# Its inventories use private and documentation addresses.
export MENSHEN_ALLOW_PRIVATE_ADDRESSES=true

duration=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

profile=${MENSHEN_BENCH_PROFILE:-release}
echo "building menshen and menshen-agent ($profile)..." >&2
if [ "$profile" = release ]; then
    cargo build --release -q -p menshen -p menshen-agent --manifest-path "$root/Cargo.toml"
else
    cargo build -q -p menshen -p menshen-agent --manifest-path "$root/Cargo.toml"
fi
bin="${CARGO_TARGET_DIR:-$root/target}/$profile"
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port=$(free_port)
"$bin/menshen" --log-level warn serve --listen "127.0.0.1:$port" --data-dir "$work/data" \
    --config "$root/examples/menshen.toml" &
pids+=($!)
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.1
done
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
RUST_LOG=warn "$bin/menshen-agent" --config "$work/agent.toml" &
agent=$!
pids+=($agent)

( while sleep 1; do curl -s "http://127.0.0.1:$metrics_port/metrics" >/dev/null; done ) &
pids+=($!)
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
