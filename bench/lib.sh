# Helpers shared by the benchmark scripts (bench/*.sh), scripts/api-fuzz.sh
# and scripts/system-demo.sh; sourced, not run:
#
#   . "$(dirname "$0")/lib.sh"
#
# Sourcing it sets `root` (the checkout), makes `work` (a fresh temporary
# folder), allows private addresses in inventories, and installs an EXIT
# trap that stops every process started with start_server or track, runs
# the hooks given to at_exit, and removes `work`, whether the script
# succeeds, fails or is interrupted.
#
# Environment: MENSHEN_BENCH_PREBUILT=DIR takes the binaries from DIR
# instead of building them (see binaries); MENSHEN_BENCH_WAIT (seconds,
# default 60) bounds how long a server may take to answer.
# shellcheck shell=bash

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The inventories of benchmarks and fuzz runs use private and documentation
# addresses.
export MENSHEN_ALLOW_PRIVATE_ADDRESSES=true
work=$(mktemp -d)
started=()
exit_hooks=()

cleanup() {
    local pid hook
    for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${started[@]}"; do wait "$pid" 2>/dev/null || true; done
    for hook in "${exit_hooks[@]}"; do "$hook" || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# at_exit FUNCTION: run FUNCTION at exit, after the processes are stopped.
at_exit() { exit_hooks+=("$1"); }

# track PID: stop PID at exit (a process started with `&` in this shell,
# not in a subshell).
track() { started+=("$1"); }

# need TOOL...: exit unless each TOOL is on PATH.
need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
    done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# binaries PROFILE CARGO_ARGS...: sets `bin`, the folder of the binaries
# named by CARGO_ARGS (`-p PACKAGE`, `--bin NAME`, `--example NAME`):
# MENSHEN_BENCH_PREBUILT if set (binaries built already, e.g. of another
# revision to compare), else the target folder's PROFILE (release or
# debug), built first with `cargo build`. Exits unless each is there.
binaries() {
    local profile=$1
    shift
    local names=() name set
    set=("$@")
    while [ $# -gt 0 ]; do
        case $1 in
            -p | --bin) names+=("$2"); shift 2 ;;
            --example) names+=("examples/$2"); shift 2 ;;
            *) shift ;;
        esac
    done
    if [ -n "${MENSHEN_BENCH_PREBUILT:-}" ]; then
        bin=$(cd "$MENSHEN_BENCH_PREBUILT" && pwd)
    else
        need cargo
        echo "building $(printf '%s\n' "${names[@]##*/}" | awk '!seen[$0]++' | paste -sd' ' -) ($profile)..." >&2
        local flags=()
        [ "$profile" = release ] && flags=(--release)
        cargo build "${flags[@]}" -q "${set[@]}" --manifest-path "$root/Cargo.toml"
        bin="${CARGO_TARGET_DIR:-$root/target}/$profile"
    fi
    for name in "${names[@]}"; do
        [ -x "$bin/$name" ] || { echo "missing: $bin/$name" >&2; exit 1; }
    done
}

# fail_with_log MESSAGE [LOG]: print MESSAGE and the last lines of LOG, and
# exit 1.
fail_with_log() {
    echo "$1" >&2
    if [ -n "${2:-}" ] && [ -s "$2" ]; then
        echo "its log ends:" >&2
        tail -n 20 "$2" | sed 's/^/  /' >&2
    fi
    exit 1
}

# wait_url URL [NAME [PID [LOG]]]: wait until URL answers 2xx; exit (with
# LOG's tail) if process PID ends first, or if MENSHEN_BENCH_WAIT seconds
# pass.
wait_url() {
    local url=$1 name=${2:-$1} pid=${3:-} log=${4:-}
    local limit=${MENSHEN_BENCH_WAIT:-60} status
    local deadline=$((SECONDS + limit))
    until curl -sf -m 5 -o /dev/null "$url"; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null && status=0 || status=$?
            fail_with_log "$name did not start: it exited (status $status) before $url answered" "$log"
        fi
        [ "$SECONDS" -lt "$deadline" ] ||
            fail_with_log "$name did not start: no answer from $url within $limit s" "$log"
        sleep 0.1
    done
}

# start_server NAME URL LOG COMMAND...: start COMMAND in the background,
# its output appended to LOG, stopped at exit; wait until URL answers (see
# wait_url). Sets `server_pid`.
start_server() {
    local name=$1 url=$2 log=$3
    shift 3
    "$@" >>"$log" 2>&1 &
    server_pid=$!
    track "$server_pid"
    wait_url "$url" "$name" "$server_pid" "$log"
}

# nginx_http_basics DIR: the directives of an nginx http block that serves
# static JSON files as fast as it can (sendfile, open file cache, long
# keep-alive, no access log), its temporary files in DIR; the yardstick of
# bench/client-api.sh and bench/request-cost.sh.
nginx_http_basics() {
    cat <<CONF
    access_log off;
    default_type application/json;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    open_file_cache max=100 inactive=60s;
    etag on;
    client_body_temp_path $1;
    proxy_temp_path $1;
    fastcgi_temp_path $1;
    uwsgi_temp_path $1;
    scgi_temp_path $1;
CONF
}

# stop PID...: stop processes started here, and wait for them.
stop() {
    local pid left=() kept
    for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
    for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
    for kept in "${started[@]}"; do
        for pid in "$@"; do [ "$kept" != "$pid" ] || continue 2; done
        left+=("$kept")
    done
    started=("${left[@]}")
}
