#!/usr/bin/env bash
# How fast a burst of `algo=rsa` certificate requests is answered, with the
# RSA keys menshen keeps made ahead (--rsa-key-pool, default 8) and without
# them (--rsa-key-pool 0), in one run:
#
#   bench/rsa-burst.sh [BURST] [POOL]
#
# Each run starts menshen (release build, embedded SQLite, the example
# provider), waits until its pool is full (a second), fires BURST requests
# at once (default 8) and prints each request's latency (p50, max) and how
# long the whole burst took; then 8 Ed25519 requests for reference.
# MENSHEN_BENCH_PREBUILT=DIR uses binaries already built (see bench/lib.sh).
# Needs: cargo, python3, curl.
set -euo pipefail

burst=${1:-8}
pool=${2:-8}
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
need python3 curl

binaries release -p menshen
menshen=$bin/menshen

burst_of() { # URL COUNT
    python3 - "$1" "$2" <<'PY'
import sys, time, threading, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
lat = [0.0] * n
go = threading.Barrier(n + 1)
def one(i):
    go.wait()
    t = time.perf_counter()
    body = urllib.request.urlopen(url).read()
    lat[i] = (time.perf_counter() - t) * 1000
    assert b"PRIVATE KEY" in body
threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in threads: t.start()
start = time.perf_counter(); go.wait()
for t in threads: t.join()
total = (time.perf_counter() - start) * 1000
lat.sort()
print(f"  {n} requests: p50 {lat[n // 2]:.1f} ms, max {lat[-1]:.1f} ms, burst done in {total:.1f} ms")
PY
}

run() { # POOL
    local port
    port=$(free_port)
    start_server menshen "http://127.0.0.1:$port/readyz" "$work/menshen-$1.log" \
        "$menshen" --log-level warn serve --listen "127.0.0.1:$port" \
        --data-dir "$work/data-$1" --config "$root/examples/menshen.toml" --rsa-key-pool "$1"
    sleep 1.5 # the pool fills on the blocking pool
    echo "--rsa-key-pool $1, algo=rsa:"
    burst_of "http://127.0.0.1:$port/api/5/openvpn/cert?algo=rsa" "$burst"
    echo "--rsa-key-pool $1, ed25519 (reference):"
    burst_of "http://127.0.0.1:$port/api/5/openvpn/cert" 8
    stop "$server_pid"
}

echo "load: $(cut -d' ' -f1-3 /proc/loadavg), cores: $(nproc)"
run "$pool"
run 0
