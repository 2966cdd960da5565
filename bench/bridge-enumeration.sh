#!/usr/bin/env bash
# How many bridges a censor learns from menshen with bridges shared out per
# client network (--bridges-per-client, default 2), against one request
# without (--bridges-per-client 0: all of them), and how evenly clients
# spread over the bridges. See bench/bridge-enumeration.py for what each
# figure is.
#
#   bench/bridge-enumeration.sh [BRIDGES] [TRIALS] [CLIENTS]   # 100 10 10000
#
# It counts bridges, not time, so it runs the debug build unless
# MENSHEN_BENCH_PROFILE=release; MENSHEN_BENCH_PREBUILT=DIR uses binaries
# already built (see bench/lib.sh). Needs python3 and cargo.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
need python3

profile=${MENSHEN_BENCH_PROFILE:-debug}
binaries "$profile" -p menshen
MENSHEN_BENCH_PREBUILT=$bin python3 "$root/bench/bridge-enumeration.py" "$@"
