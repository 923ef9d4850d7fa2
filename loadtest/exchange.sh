#!/usr/bin/env bash
# Token exchange (RFC 8693) against a client_credentials token over HTTP, in
# one run on the standalone server (sentryagentd, sled), with a fake OIDC
# issuer on loopback whose JWKS the server fetches once (see
# loadtest/README.md, "Token exchange"):
#
#   loadtest/exchange.sh            # 20 s per measured run
#   PIN=1 loadtest/exchange.sh      # server on CPU 1, wrk on CPU 0
#
# Runs `wrk -t2 -c64` against the token endpoint with, in this order:
#   1. the client_credentials grant (client_secret_basic);
#   2. the token exchange of an RS256 ID token (2048-bit RSA key);
#   3. the token exchange of an ES256 ID token (P-256 key);
# and prints each run's throughput and latency, and each exchange's
# throughput against the client_credentials one. An exchange also appends
# a durable audit event (a disk flush); a client_credentials token does
# not, so on a slow disk the exchange runs are bound by the flushes, not
# by the CPU (their CPU cost is benches/token.rs's).
#
# Environment: DURATION, WARMUP, THREADS, CONNECTIONS, SERVER_CPUS,
# WRK_CPUS, PIN, RESULTS as for run.sh; SERVER_BIN, a server binary to run
# instead of building one (two builds compared run by run).

set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=loadtest/lib.sh
source "$HERE/lib.sh"

DURATION="${DURATION:-20}"
WARMUP="${WARMUP:-3}"
cpu_settings
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
RESULTS="${RESULTS:-}"
check_wrk_settings 60
need wrk "install it with: sudo apt-get update && sudo apt-get install -y wrk"
need curl "install it with: sudo apt-get update && sudo apt-get install -y curl"
need node "install Node.js 20 or later (Debian: sudo apt-get install -y nodejs)"
need cargo "install a Rust toolchain (https://rustup.rs)"
need base64 "it is part of coreutils"

build_sentryagentd

# The fake issuer (its process is the "peer" the cleanup stops).
AUDIENCE="https://sentryagent.loadtest"
issuer_port=$(free_port)
ISSUER="http://127.0.0.1:$issuer_port"
tokens="$WORK/subject-tokens.txt"
ISSUER_PORT="$issuer_port" ISSUER_AUDIENCE="$AUDIENCE" ISSUER_TOKENS="$tokens" \
    node "$HERE/fake-issuer.mjs" >"$WORK/issuer.log" 2>&1 &
PEER_PID=$!
wait_http "$ISSUER/.well-known/openid-configuration" "$PEER_PID" "$WORK/issuer.log"
for _ in $(seq 1 50); do
    [[ -s "$tokens" ]] && break
    sleep 0.1
done
RS256_TOKEN=$(sed -n 's/^RS256 //p' "$tokens")
ES256_TOKEN=$(sed -n 's/^ES256 //p' "$tokens")
[[ -n "$RS256_TOKEN" && -n "$ES256_TOKEN" ]] || die "the fake issuer wrote no subject tokens"

port=$(free_port)
BASE="http://127.0.0.1:$port"
op_key="sa_ak_$(random_chars 40)"
log="$WORK/server.log"
say "starting sentryagentd on $BASE (sled, RUST_LOG=warn, HTTP issuers on loopback allowed)"
run=("$SERVER_BIN")
[[ -n "$SERVER_CPUS" ]] && run=(taskset -c "$SERVER_CPUS" "$SERVER_BIN")
env -u SENTRYAGENT_STRIPE_SECRET_KEY -u SENTRYAGENT_ISSUER -u SENTRYAGENT_STORE \
    -u SENTRYAGENT_LIMITER -u SENTRYAGENT_METER \
    SENTRYAGENT_LISTEN="127.0.0.1:$port" \
    SENTRYAGENT_STORE="sled://$WORK/sled-data" \
    SENTRYAGENT_BOOTSTRAP_KEY="$op_key" \
    SENTRYAGENT_FEDERATION_ALLOW_HTTP_LOOPBACK=1 \
    RUST_LOG=warn \
    "${run[@]}" >"$log" 2>&1 &
SERVER_PID=$!
wait_http "$BASE/health" "$SERVER_PID" "$log"

# exchange_agent NAME: an enterprise tenant with one agent and a trust
# policy granting it to the fake issuer's tokens; prints the agent id.
exchange_agent() {
    local key agent id policy
    key=$(enterprise_tenant_key "$BASE" "$op_key" "Load test $1")
    agent=$(api POST "$BASE/v1/agents" "$key" "{\"name\":\"$1\"}" 201)
    id=$(json_get client_id <<<"$agent")
    policy="{\"name\":\"load test\",\"issuer\":\"$ISSUER\",\"audience\":\"$AUDIENCE\",
        \"conditions\":{\"repository_id\":\"74\",\"ref\":\"refs/heads/*\"},
        \"grant\":{\"agent_id\":\"$id\"},\"max_subject_token_age_seconds\":7200}"
    api POST "$BASE/v1/trust-policies" "$key" "$policy" 201 >/dev/null
    printf '%s' "$id"
}

# One tenant per measured run, so that each starts with its full burst.
cc_key=$(enterprise_tenant_key "$BASE" "$op_key" "Load test client credentials")
cc_basic=$(agent_basic "$BASE" "$cc_key" load-client)
rs_agent=$(exchange_agent load-exchange-rs256)
es_agent=$(exchange_agent load-exchange-es256)

# One exchange of each by hand first: it fetches discovery and the JWKS
# (the runs below find them in the cache) and shows a refusal plainly.
for pair in "$RS256_TOKEN:$rs_agent" "$ES256_TOKEN:$es_agent"; do
    answer=$(curl -sS -X POST "$BASE/oauth2/token" \
        --data-urlencode 'grant_type=urn:ietf:params:oauth:grant-type:token-exchange' \
        --data-urlencode 'subject_token_type=urn:ietf:params:oauth:token-type:id_token' \
        --data-urlencode "subject_token=${pair%%:*}" \
        --data-urlencode "client_id=${pair##*:}")
    [[ "$answer" == *'"access_token"'* ]] || die "the first exchange was refused: $answer"
done

declare -a ROWS=()
# measure LABEL SCRIPT [NAME=VALUE...]: a warm-up, then the measured run, with
# the variables given exported to wrk's script.
measure() {
    local label="$1" script="$2" out line
    shift 2
    if (( 10#$WARMUP > 0 )); then
        (export "$@" LOADTEST_LABEL="warmup-$label"
            wrk_to /dev/null -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$script" \
                "$BASE/oauth2/token")
    fi
    say "$label: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s -s $(basename "$script")  (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    out="$WORK/wrk-$label.txt"
    (export "$@" LOADTEST_LABEL="$label"
        wrk_to "$out" -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$script" \
            "$BASE/oauth2/token")
    grep -v '^RESULT ' "$out" | sed 's/^/    /' >&2
    line=$(grep '^RESULT ' "$out" | tail -n 1) || die "wrk printed no RESULT line for $label"
    line="$line load1=$(cut -d' ' -f1 /proc/loadavg)"
    ROWS+=("$line")
    printf '%s\n' "$line"
    if [[ -n "$RESULTS" ]]; then printf '%s\n' "$line" >>"$RESULTS"; fi
}

measure client-credentials "$HERE/token.lua" LOADTEST_BASIC="$cc_basic"
measure exchange-rs256 "$HERE/exchange.lua" \
    LOADTEST_SUBJECT_TOKEN="$RS256_TOKEN" LOADTEST_CLIENT_ID="$rs_agent"
measure exchange-es256 "$HERE/exchange.lua" \
    LOADTEST_SUBJECT_TOKEN="$ES256_TOKEN" LOADTEST_CLIENT_ID="$es_agent"

if grep -qiE 'panicked|ERROR' "$log"; then
    say "the server logged errors:"
    grep -iE 'panicked|ERROR' "$log" | head -n 20 >&2
fi

# ---- summary --------------------------------------------------------------

printf '\n%-20s %10s %9s %9s %7s\n' run "req/s" "p50 ms" "p99 ms" errors
for row in "${ROWS[@]}"; do
    printf '%-20s %10s %9s %9s %7s\n' "$(field "$row" label)" "$(field "$row" rps)" \
        "$(field "$row" p50_ms)" "$(field "$row" p99_ms)" "$(field "$row" errors)"
done
cc_rps=$(field "${ROWS[0]}" rps)
for row in "${ROWS[@]:1}"; do
    awk -v label="$(field "$row" label)" -v cc="$cc_rps" -v x="$(field "$row" rps)" 'BEGIN {
        printf "%s: %.0f exchanges/s, %.2fx the client_credentials throughput\n",
            label, x, (cc > 0 ? x / cc : 0)
    }'
done
if [[ -z "$SERVER_CPUS" ]]; then
    printf 'note: unpinned, wrk shares the CPUs with the server; PIN=1 gives the server a core of its own\n'
fi
