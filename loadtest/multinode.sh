#!/usr/bin/env bash
# Multi-node load test: three sentryagentd processes (release build) on one
# Postgres schema and one Redis key prefix, on loopback ports, and one wrk
# whose threads are spread over the three (see loadtest/README.md):
#
#   loadtest/multinode.sh                 # 20 s throughput, 10 s rate-limit run
#   DURATION=10 loadtest/multinode.sh
#
# Two measured runs of the token endpoint (client credentials,
# client_secret_basic):
#   1. throughput: a client of an enterprise tenant (600,000 requests a
#      minute): aggregate tokens/s, p50 and p99 over the three nodes (one
#      latency histogram), errors;
#   2. shared rate limit: a client of a free-tier tenant whose limit
#      (LIMIT_RPM a minute, burst LIMIT_RPM; set by a tier file) the load
#      exceeds: 200 and 429 answers counted and compared with what GCRA
#      allows in the run's window W, LIMIT_RPM + floor(W * LIMIT_RPM / 60):
#      the over-admission of the limit the three nodes share through Redis.
# Prints RESULT lines (common.lua), a summary and one MULTINODE line.
# Everything listens on 127.0.0.1 only; every process started here is
# stopped on exit, the schema and the Redis keys are removed.
#
# Environment:
#   DURATION        seconds of the throughput run (default 20, 1 to 600)
#   LIMIT_DURATION  seconds of the rate-limit run (default 10, 1 to 600)
#   WARMUP          seconds of an unmeasured run before the throughput run
#                   (default 3, 0 to 60)
#   THREADS         wrk threads, spread over the nodes in turn (default 3)
#   CONNECTIONS     wrk connections in all (default 63)
#   LIMIT_RPM       the free tier's requests a minute in run 2 (default 30000)
#   SENTRYAGENT_TEST_POSTGRES_URL  default postgres://postgres@127.0.0.1:5432/test
#   SENTRYAGENT_TEST_REDIS_URL     default redis://127.0.0.1:6379
#   RESULTS=path    also append the RESULT and MULTINODE lines to this file

set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=loadtest/lib.sh
source "$HERE/lib.sh"

NODES=3
DURATION="${DURATION:-20}"
LIMIT_DURATION="${LIMIT_DURATION:-10}"
WARMUP="${WARMUP:-3}"
THREADS="${THREADS:-3}"
CONNECTIONS="${CONNECTIONS:-63}"
LIMIT_RPM="${LIMIT_RPM:-30000}"
PG_BASE="${SENTRYAGENT_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS_BASE="${SENTRYAGENT_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
RESULTS="${RESULTS:-}"

check_wrk_settings 600
is_int_in "$LIMIT_DURATION" 1 600 || die "LIMIT_DURATION must be whole seconds from 1 to 600, not '$LIMIT_DURATION'"
is_int_in "$LIMIT_RPM" 1 1000000 || die "LIMIT_RPM must be from 1 to 1000000, not '$LIMIT_RPM'"

need wrk "install it with: sudo apt-get update && sudo apt-get install -y wrk"
need curl "install it with: sudo apt-get update && sudo apt-get install -y curl"
need node "install Node.js 20 or later (Debian: sudo apt-get install -y nodejs)"
need cargo "install a Rust toolchain (https://rustup.rs)"
need base64 "it is part of coreutils"

# ---- build and start ------------------------------------------------------

say "machine: $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
build_sentryagentd

setup_pg_redis

# The free tier of run 2: LIMIT_RPM a minute for the tenant, no other limit.
TIERS="$WORK/tiers.json"
printf '{"free": {"requests_per_minute": %d, "client_requests_per_minute": null, "api_calls_per_day": null, "token_issuances_per_month": null, "max_agents": null}}\n' \
    "$LIMIT_RPM" >"$TIERS"

OP_KEY="sa_ak_$(random_chars 40)"
declare -a PORTS=()
ISSUER=""

# Node 0 first (it creates the signing key and the operator key), then the
# others, as nodes of one deployment usually start.
for i in $(seq 0 $((NODES - 1))); do
    # Picked just before use: the nodes' own connections take ports too.
    port=$(free_port)
    PORTS+=("$port")
    [[ -n "$ISSUER" ]] || ISSUER="http://127.0.0.1:$port"
    log="$WORK/node-$i.log"
    say "node $i: sentryagentd on 127.0.0.1:$port (RUST_LOG=warn)"
    env -u SENTRYAGENT_STRIPE_SECRET_KEY -u SENTRYAGENT_CONFIG \
        SENTRYAGENT_LISTEN="127.0.0.1:$port" \
        SENTRYAGENT_ISSUER="$ISSUER" \
        SENTRYAGENT_STORE="$pg_url" \
        SENTRYAGENT_LIMITER="$redis_url" \
        SENTRYAGENT_METER="$redis_url" \
        SENTRYAGENT_BOOTSTRAP_KEY="$OP_KEY" \
        SENTRYAGENT_TIERS="$TIERS" \
        RUST_LOG=warn \
        "$SERVER_BIN" >"$log" 2>&1 &
    EXTRA_PIDS+=("$!")
    wait_http "http://127.0.0.1:$port/health" "$!" "$log"
done
nodes=""
for port in "${PORTS[@]}"; do nodes+="${nodes:+,}127.0.0.1:$port"; done
base="http://127.0.0.1:${PORTS[0]}"

# One tenant per run, and one for the warm-up, so each measured run starts
# with its tenant's full burst.
big_key=$(tier_tenant_key "$base" "$OP_KEY" "Multi-node throughput" enterprise)
warm_key=$(tier_tenant_key "$base" "$OP_KEY" "Multi-node warm-up" enterprise)
small_key=$(tier_tenant_key "$base" "$OP_KEY" "Multi-node limited" free)
big_basic=$(agent_basic "$base" "$big_key" load-client)
warm_basic=$(agent_basic "$base" "$warm_key" load-warm-up)
small_basic=$(agent_basic "$base" "$small_key" load-limited)
# Every node issues a token to the client registered through node 0.
for port in "${PORTS[@]}"; do
    access_token "http://127.0.0.1:$port" "$big_basic" >/dev/null \
        || die "node on port $port issued no token"
done

# ---- runs -----------------------------------------------------------------

declare -a ROWS=()

# measure LABEL SECONDS BASIC [ALLOW_429]: one wrk over the nodes.
measure() {
    local label="$1" secs="$2" basic="$3" allow="${4:-0}" out line
    say "$label: wrk -t$THREADS -c$CONNECTIONS -d${secs}s over $nodes  (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    out="$WORK/wrk-$label.txt"
    LOADTEST_NODES="$nodes" LOADTEST_BASIC="$basic" LOADTEST_LABEL="$label" \
        LOADTEST_ALLOW_429="$allow" \
        wrk_to "$out" -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" --latency \
        -s "$HERE/token.lua" "$base/oauth2/token"
    grep -v '^RESULT ' "$out" | sed 's/^/    /' >&2
    line=$(grep '^RESULT ' "$out" | tail -n 1) || die "wrk printed no RESULT line for $label"
    line="$line load1=$(cut -d' ' -f1 /proc/loadavg)"
    ROWS+=("$line")
    printf '%s\n' "$line"
    if [[ -n "$RESULTS" ]]; then printf '%s\n' "$line" >>"$RESULTS"; fi
}

if (( 10#$WARMUP > 0 )); then
    LOADTEST_NODES="$nodes" LOADTEST_BASIC="$warm_basic" LOADTEST_LABEL=warmup \
        wrk_to /dev/null -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" \
        -s "$HERE/token.lua" "$base/oauth2/token"
fi
measure multinode-token "$DURATION" "$big_basic"
measure multinode-limited "$LIMIT_DURATION" "$small_basic" 1

for i in $(seq 0 $((NODES - 1))); do
    if grep -qiE 'panicked|ERROR' "$WORK/node-$i.log"; then
        say "node $i logged errors:"
        grep -iE 'panicked|ERROR' "$WORK/node-$i.log" | head -n 20 >&2
    fi
done

# ---- summary --------------------------------------------------------------

tok="${ROWS[0]}"
lim="${ROWS[1]}"
admitted=$(field "$lim" ok)
limited=$(field "$lim" limited)
window=$(field "$lim" duration_s)
lim_errors=$(field "$lim" errors)
# GCRA: at most burst + floor(W / T) admissions in a window W, T = 60 s / rate.
bound=$(awk -v r="$LIMIT_RPM" -v w="$window" 'BEGIN { printf "%d", r + int(w * r / 60) }')
over=$(awk -v a="$admitted" -v b="$bound" 'BEGIN { o = (a - b) / b; if (o < 0) o = 0; printf "%.3f", 100 * o }')

printf '\n%-22s %10s %9s %9s %8s %8s %7s\n' run req/s "p50 ms" "p99 ms" errors 429s load1
for row in "${ROWS[@]}"; do
    printf '%-22s %10s %9s %9s %8s %8s %7s\n' "$(field "$row" label)" "$(field "$row" rps)" \
        "$(field "$row" p50_ms)" "$(field "$row" p99_ms)" "$(field "$row" errors)" \
        "$(field "$row" limited)" "$(field "$row" load1)"
done
printf '\nshared rate limit (%s a minute, burst %s, %s s window): %s admitted, %s refused (429); GCRA allows at most %s; over-admission %s %%\n' \
    "$LIMIT_RPM" "$LIMIT_RPM" "$window" "$admitted" "$limited" "$bound" "$over"
(( limited > 0 )) || say "the limit was not reached: raise LIMIT_DURATION or lower LIMIT_RPM"
summary="MULTINODE nodes=$NODES tokens_per_s=$(field "$tok" rps) p50_ms=$(field "$tok" p50_ms) p99_ms=$(field "$tok" p99_ms) errors=$(field "$tok" errors) limit_rpm=$LIMIT_RPM admitted=$admitted refused=$limited bound=$bound over_admission_pct=$over limit_errors=$lim_errors"
printf '%s\n' "$summary"
if [[ -n "$RESULTS" ]]; then printf '%s\n' "$summary" >>"$RESULTS"; fi
