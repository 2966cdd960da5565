#!/usr/bin/env bash
# Sustained agent heartbeats (PUT /api/5/agent/gateways, two gateways each)
# against menshen on Postgres, measured with wrk.
#
#   bench/agent-push.sh [AGENTS] [DURATION] [CONNECTIONS]
#
# Defaults: 200 agents, 15s, 32 connections. Needs wrk, psql, python3, cargo,
# and a Postgres server (MENSHEN_TEST_DATABASE_URL, default
# postgres://postgres@127.0.0.1:5432/postgres) where it may create and drop a
# database. menshen, Postgres and wrk share this machine's cores.
# MENSHEN_BENCH_PREBUILT=DIR uses binaries already built (see bench/lib.sh).
set -euo pipefail

agents=${1:-200}
duration=${2:-15s}
connections=${3:-32}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
admin=${MENSHEN_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db="menshen_bench_$$"
db_url="${admin%/*}/$db"
drop_db() { psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1; }
at_exit drop_db

need wrk psql python3 curl
binaries release -p menshen
menshen=$bin/menshen
psql "$admin" -qc "CREATE DATABASE $db" >/dev/null

python3 "$here/make-inventory.py" 40 0 0 > "$work/inventory.toml"
export MENSHEN_DATABASE_URL="$db_url" MENSHEN_DATA_DIR="$work/data"
port=$(free_port)
start_server menshen "http://127.0.0.1:$port/readyz" "$work/menshen.log" \
    "$menshen" --log-level warn serve --listen "127.0.0.1:$port" --config "$work/inventory.toml"

echo "creating $agents agents..." >&2
{
    echo "tokens = {"
    for i in $(seq "$agents"); do
        echo "  \"$("$menshen" --log-level warn agent create "bench-$i")\","
    done
    echo "}"
} > "$work/tokens.lua"

# Each request: one agent's two gateways, with a load that changes now and
# then (so some pushes are real changes, most are heartbeats).
cat > "$work/push.lua" <<'LUA'
dofile(os.getenv("TOKENS"))
local n = 0
response = function(status, headers, body)
  if status >= 300 and not reported then
    reported = true
    io.stderr:write("first failure: " .. status .. " " .. body .. "\n")
  end
end
request = function()
  n = n + 1
  local i = math.random(#tokens)
  local load = (n % 50 == 0) and (math.random(0, 100) / 100) or 0.5
  local body = string.format(
    '[{"host":"gw%d-udp.bench","ip_addr":"10.1.%d.%d","location":"loc%03d","port":1194,"transport":"udp","type":"openvpn","load":%.2f,"healthy":true},' ..
    '{"host":"gw%d-tcp.bench","ip_addr":"10.1.%d.%d","location":"loc%03d","port":443,"transport":"tcp","type":"openvpn","load":%.2f,"healthy":true}]',
    i, math.floor(i / 256), i % 256, i % 40, load, i, math.floor(i / 256), i % 256, i % 40, load)
  return wrk.format("PUT", "/api/5/agent/gateways",
    {["Authorization"] = "Bearer " .. tokens[i], ["Content-Type"] = "application/json"}, body)
end
LUA
export TOKENS="$work/tokens.lua"
url="http://127.0.0.1:$port"
wrk -t2 -c"$connections" -d3s -s "$work/push.lua" "$url" >/dev/null  # warm-up: creates every host
out=$(wrk -t2 -c"$connections" -d"$duration" --latency -s "$work/push.lua" "$url")
echo "$out" >&2
rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
listed=$(curl -s "$url/api/5/gateways" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "agent PUTs: $rps/s  p50 $p50  p99 $p99  non-2xx ${errors:-0}  gateways listed $listed"
