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
# Needs: cargo, python3, curl.
set -euo pipefail
# Its inventories use private and documentation addresses.
export MENSHEN_ALLOW_PRIVATE_ADDRESSES=true

burst=${1:-8}
pool=${2:-8}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "building menshen (release)..." >&2
cargo build --release -q -p menshen --manifest-path "$root/Cargo.toml"
menshen="${CARGO_TARGET_DIR:-$root/target}/release/menshen"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

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
    "$menshen" --log-level warn serve --listen "127.0.0.1:$port" \
        --data-dir "$work/data-$1" --config "$root/examples/menshen.toml" --rsa-key-pool "$1" &
    pid=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "menshen did not start" >&2; exit 1; }
    sleep 1.5 # the pool fills on the blocking pool
    echo "--rsa-key-pool $1, algo=rsa:"
    burst_of "http://127.0.0.1:$port/api/5/openvpn/cert?algo=rsa" "$burst"
    echo "--rsa-key-pool $1, ed25519 (reference):"
    burst_of "http://127.0.0.1:$port/api/5/openvpn/cert" 8
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}

echo "load: $(cut -d' ' -f1-3 /proc/loadavg), cores: $(nproc)"
run "$pool"
run 0
