#!/usr/bin/env bash
# API fuzz run: schemathesis against the OpenAPI document menshen serves.
# Every operation is exercised with generated valid and invalid input; a 5xx,
# or a response whose status, content type, headers or body the document does
# not describe, fails the run.
#
#   scripts/api-fuzz.sh [MAX_EXAMPLES]
#
# menshen (debug build) runs on a throwaway SQLite data dir with
# examples/menshen.toml on a free port of 127.0.0.1. Admin operations get an
# admin token (scheme admin_token), agent operations an agent token (scheme
# agent_token), client operations none. Destructive operations run against
# the throwaway inventory.
#
# Needs: cargo, python3, curl, and schemathesis on PATH or in $SCHEMATHESIS
# (pip install schemathesis==4.32.5). MENSHEN_FUZZ_SEED fixes the seed
# (default 1); MAX_EXAMPLES (default 100) bounds examples per operation;
# MENSHEN_BENCH_PREBUILT=DIR uses a menshen already built (see bench/lib.sh).
set -euo pipefail

max_examples=${1:-100}
seed=${MENSHEN_FUZZ_SEED:-1}
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/../bench/lib.sh"
schemathesis=${SCHEMATHESIS:-schemathesis}
command -v "$schemathesis" >/dev/null || {
    echo "missing: schemathesis (pip install schemathesis==4.32.5, or set SCHEMATHESIS)" >&2
    exit 1
}
# Absolute: it runs from the throwaway dir.
case $schemathesis in */*) schemathesis=$(cd "$(dirname "$schemathesis")" && pwd)/$(basename "$schemathesis") ;; esac
need python3 curl

binaries debug -p menshen
menshen=$bin/menshen

port=$(free_port)
base="http://127.0.0.1:$port"
start_server menshen "$base/readyz" "$work/menshen.log" \
    "$menshen" --log-level warn serve --listen "127.0.0.1:$port" \
    --data-dir "$work/data" --config "$root/examples/menshen.toml"

# Same data dir, so the same signing key as the server.
ADMIN_TOKEN=$("$menshen" --log-level warn admin token --data-dir "$work/data" --subject fuzz --role admin --ttl 1h)
AGENT_TOKEN=$("$menshen" --log-level warn agent create --data-dir "$work/data" fuzz-agent)
export ADMIN_TOKEN AGENT_TOKEN

cat >"$work/schemathesis.toml" <<'TOML'
# One token per security scheme of the document: each operation gets the
# token its `security` names.
[auth.openapi.admin_token]
bearer = "${ADMIN_TOKEN}"

[auth.openapi.agent_token]
bearer = "${AGENT_TOKEN}"

# The OpenVPN configuration answers 503 `unavailable` when no gateway is left
# for the request (filters or invite buckets exclude every one): there is
# nothing to put in `remote` lines. The document says so; it is not a crash.
# Any other 5xx there still fails.
[[operations]]
include-path-regex = "^/api/(5/openvpn/config|autoconf)$"
checks.not_a_server_error.expected-statuses = ["1xx", "2xx", "3xx", "4xx", "503"]
TOML

# From the throwaway dir: schemathesis keeps its replay data in ./.schemathesis.
cd "$work"
set +e
"$schemathesis" --no-color --config-file "$work/schemathesis.toml" run "$base/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "$max_examples" --seed "$seed" --workers 2 \
    --request-timeout 30 2>&1 | tee "$work/schemathesis.out"
status=${PIPESTATUS[0]}
set -e
if grep -q ' panicked' "$work/menshen.log"; then
    echo "menshen panicked:" >&2
    grep -A3 ' panicked' "$work/menshen.log" >&2
    status=1
fi
# The closing line, e.g. "==== 2 warnings in 38.35s ====" or "==== 1 failure in 9.1s ====".
echo "schemathesis: $(grep -E '^=+ .* in [0-9.]+s =+$' "$work/schemathesis.out" | tail -n1 | tr -d '=' | xargs)" >&2
exit "$status"
