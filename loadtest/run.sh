#!/usr/bin/env bash
# HTTP load test of the standalone server, with node oidc-provider 9 as the
# peer, in one run (see loadtest/README.md):
#
#   loadtest/run.sh                 # 20 s per measured run
#   DURATION=10 loadtest/run.sh
#
# Runs `wrk -t2 -c64` against, in this order:
#   1. sentryagent on sled:           token endpoint, then introspection
#   2. sentryagent on Postgres+Redis: token endpoint, then introspection
#   3. oidc-provider:                 token endpoint
# and prints a summary table. Everything listens on 127.0.0.1 only; every
# process started here is stopped on exit, and the data it made is removed.
#
# Environment:
#   DURATION      seconds of each measured run (default 20, 1 to 600)
#   WARMUP        seconds of an unmeasured run before each one (default 3, 0 to 60)
#   THREADS       wrk threads (default 2)
#   CONNECTIONS   wrk connections (default 64)
#   SENTRYAGENT_TEST_POSTGRES_URL  default postgres://postgres@127.0.0.1:5432/test
#   SENTRYAGENT_TEST_REDIS_URL     default redis://127.0.0.1:6379
#   SKIP_PG=1     leave out the Postgres + Redis runs
#   SKIP_PEER=1   leave out oidc-provider (no npm install; its ratio is n/a)
#   SERVER_CPUS   CPU list the servers run on (taskset -c), e.g. 1
#   WRK_CPUS      CPU list wrk runs on (taskset -c), e.g. 0
#   PIN=1         shorthand for SERVER_CPUS=1 WRK_CPUS=0 THREADS=1: the load
#                 generator and the server each on a core of their own
#   RESULTS=path  also append the RESULT lines to this file

# The node snippets below are in single quotes on purpose (JavaScript, not
# shell, expands their ${...}).
# shellcheck disable=SC2016

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
PG_BASE="${SENTRYAGENT_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS_BASE="${SENTRYAGENT_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
SKIP_PG="${SKIP_PG:-0}"
SKIP_PEER="${SKIP_PEER:-0}"
RESULTS="${RESULTS:-}"

# ---- checks ---------------------------------------------------------------

check_wrk_settings 600
if (( 10#$DURATION > 20 )); then
    printf 'loadtest: note: one enterprise tenant may issue 600,000 tokens in a burst plus 10,000 a second; a token or introspection run faster than 10,000 a second for more than about 20 s gets 429 answers, counted as errors\n' >&2
fi

need wrk "install it with: sudo apt-get update && sudo apt-get install -y wrk"
need curl "install it with: sudo apt-get update && sudo apt-get install -y curl"
need node "install Node.js 20 or later (Debian: sudo apt-get install -y nodejs npm)"
[[ "$SKIP_PEER" == 1 ]] || need npm "install npm (Debian: sudo apt-get install -y npm)"
need cargo "install a Rust toolchain (https://rustup.rs)"
need base64 "it is part of coreutils"

# ---- wrk ------------------------------------------------------------------

declare -a ROWS=()

# run_wrk LABEL SCRIPT URL [WARMUP_BASIC]: a warm-up (with the credentials
# WARMUP_BASIC when given), then the measured run; keeps its RESULT line.
run_wrk() {
    local label="$1" script="$2" url="$3" warmup_basic="${4:-${LOADTEST_BASIC:-}}" out line
    if (( 10#$WARMUP > 0 )); then
        LOADTEST_BASIC="$warmup_basic" LOADTEST_LABEL="warmup-$label" \
            wrk_to /dev/null -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$script" "$url"
    fi
    say "$label: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s -s $(basename "$script") $url  (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    out="$WORK/wrk-$label.txt"
    LOADTEST_LABEL="$label" wrk_to "$out" -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" \
        --latency -s "$script" "$url"
    grep -v '^RESULT ' "$out" | sed 's/^/    /' >&2
    line=$(grep '^RESULT ' "$out" | tail -n 1) || die "wrk printed no RESULT line for $label"
    line="$line load1=$(cut -d' ' -f1 /proc/loadavg)"
    ROWS+=("$line")
    printf '%s\n' "$line"
    if [[ -n "$RESULTS" ]]; then printf '%s\n' "$line" >>"$RESULTS"; fi
}

# ---- sentryagent ----------------------------------------------------------

SERVER_BIN=""

build_server() {
    say "building the server (release, features postgres,redis)"
    (cd "$ROOT" && cargo build --release --example server --features postgres,redis) >&2
    local target
    target="${CARGO_TARGET_DIR:-$ROOT/target}"
    [[ "$target" == /* ]] || target="$ROOT/$target"
    SERVER_BIN="$target/release/examples/server"
    [[ -x "$SERVER_BIN" ]] || die "no server binary at $SERVER_BIN"
}

# bench_sentryagent NAME STORE [LIMITER METER]
bench_sentryagent() {
    local name="$1" store="$2" limiter="${3:-}" meter="${4:-}"
    local port base op_key log
    port=$(free_port)
    base="http://127.0.0.1:$port"
    op_key="sa_ak_$(random_chars 40)"
    log="$WORK/server-$name.log"
    say "$name: starting the server on $base (RUST_LOG=warn)"
    local -a envs=(
        "SENTRYAGENT_LISTEN=127.0.0.1:$port"
        "SENTRYAGENT_STORE=$store"
        "SENTRYAGENT_BOOTSTRAP_KEY=$op_key"
        "RUST_LOG=warn"
    )
    [[ -n "$limiter" ]] && envs+=("SENTRYAGENT_LIMITER=$limiter")
    [[ -n "$meter" ]] && envs+=("SENTRYAGENT_METER=$meter")
    # taskset execs the server, so the PID below is the server's.
    local -a run=("$SERVER_BIN")
    [[ -n "$SERVER_CPUS" ]] && run=(taskset -c "$SERVER_CPUS" "$SERVER_BIN")
    # Billing off: no Stripe settings reach the server.
    env -u SENTRYAGENT_STRIPE_SECRET_KEY -u SENTRYAGENT_ISSUER \
        -u SENTRYAGENT_LIMITER -u SENTRYAGENT_METER "${envs[@]}" \
        "${run[@]}" >"$log" 2>&1 &
    SERVER_PID=$!
    wait_http "$base/health" "$SERVER_PID" "$log"

    # One tenant per measured endpoint, and one for the warm-up of the token
    # endpoint, so that each measured run starts with its tenant's full
    # burst: the enterprise tier allows 600,000 requests a minute per tenant,
    # and token requests, introspections and revocations all count.
    local tenant_key warmup_key intro_key warmup_agent basic warmup_basic rs_basic token
    tenant_key=$(enterprise_tenant_key "$base" "$op_key" "Load test $name")
    warmup_key=$(enterprise_tenant_key "$base" "$op_key" "Load test $name warm-up")
    intro_key=$(enterprise_tenant_key "$base" "$op_key" "Load test $name introspection")
    basic=$(agent_basic "$base" "$tenant_key" load-client)
    warmup_basic=$(agent_basic "$base" "$warmup_key" load-warm-up)
    # Introspection: a token of one agent, introspected by another agent
    # (the resource server) of the same tenant.
    token=$(access_token "$base" "$(agent_basic "$base" "$intro_key" load-client)") \
        || die "$name: no token from $base/oauth2/token"
    rs_basic=$(agent_basic "$base" "$intro_key" load-resource-server)
    check_active "$base" "$rs_basic" "$token" \
        || die "$name: the resource server does not see the token as active"

    LOADTEST_BASIC="$basic" run_wrk "sentryagent-$name-token" "$HERE/token.lua" \
        "$base/oauth2/token" "$warmup_basic"
    LOADTEST_BASIC="$rs_basic" LOADTEST_TOKEN="$token" \
        run_wrk "sentryagent-$name-introspect" "$HERE/introspect.lua" "$base/oauth2/introspect"

    if grep -qiE 'panicked|ERROR' "$log"; then
        say "$name: the server logged errors:"
        grep -iE 'panicked|ERROR' "$log" | head -n 20 >&2
    fi
    stop_pid "$SERVER_PID"
    SERVER_PID=""
}

# ---- the peer -------------------------------------------------------------

bench_peer() {
    local dir="$HERE/peer" port base secret log basic token alg
    if [[ ! -d "$dir/node_modules/oidc-provider" ]]; then
        say "peer: npm install (oidc-provider 9)"
        (cd "$dir" && npm install --no-audit --no-fund --loglevel=error) >&2
    fi
    port=$(free_port)
    base="http://127.0.0.1:$port"
    secret="$(random_chars 43)"
    log="$WORK/peer.log"
    say "peer: starting oidc-provider on $base (node $(node --version))"
    PEER_PORT="$port" PEER_CLIENT_ID=loadtest PEER_CLIENT_SECRET="$secret" NODE_ENV=production \
        node "$dir/server.mjs" >"$log" 2>&1 &
    PEER_PID=$!
    wait_http "$base/.well-known/openid-configuration" "$PEER_PID" "$log"
    basic=$(basic_of loadtest "$secret")
    token=$(curl -fsS -X POST "$base/token" -H "authorization: Basic $basic" \
        -H 'content-type: application/x-www-form-urlencoded' \
        --data 'grant_type=client_credentials' | json_get access_token) \
        || die "peer: no token from $base/token"
    alg=$(printf '%s' "${token%%.*}" | node -e '
        let s = ""; process.stdin.on("data", d => (s += d)).on("end", () => {
            const h = JSON.parse(Buffer.from(s, "base64url").toString());
            process.stdout.write(`${h.alg}/${h.typ}`); });')
    [[ "$alg" == "EdDSA/at+jwt" ]] || die "peer: the access token is not an EdDSA JWT (header $alg)"
    say "peer: access tokens are JWTs signed with $alg"
    LOADTEST_BASIC="$basic" run_wrk "oidc-provider-token" "$HERE/token.lua" "$base/token"
    stop_pid "$PEER_PID"
    PEER_PID=""
}

# ---- main -----------------------------------------------------------------

say "machine: $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ -n "$SERVER_CPUS$WRK_CPUS" ]]; then
    say "pinned: servers on CPUs ${SERVER_CPUS:-any}, wrk on CPUs ${WRK_CPUS:-any} (wrk -t$THREADS)"
fi
build_server

bench_sentryagent sled "sled://$WORK/sled-data"

if [[ "$SKIP_PG" == 1 ]]; then
    say "pg+redis: left out (SKIP_PG=1)"
else
    setup_pg_redis
    bench_sentryagent pg+redis "$pg_url" "$redis_url" "$redis_url"
fi

if [[ "$SKIP_PEER" == 1 ]]; then
    say "peer: left out (SKIP_PEER=1)"
else
    bench_peer
fi

# ---- summary --------------------------------------------------------------

printf '\n%-34s %12s %10s %10s %8s %7s\n' "run" "req/s" "p50 ms" "p99 ms" "errors" "load1"
printf '%-34s %12s %10s %10s %8s %7s\n' "---" "-----" "------" "------" "------" "-----"
sled_rps=""
peer_rps=""
sled_p99=""
sled_err=""
pg_rps=""
pg_p99=""
pg_err=""
for row in "${ROWS[@]}"; do
    label=$(field "$row" label)
    printf '%-34s %12s %10s %10s %8s %7s\n' "$label" "$(field "$row" rps)" \
        "$(field "$row" p50_ms)" "$(field "$row" p99_ms)" "$(field "$row" errors)" \
        "$(field "$row" load1)"
    case "$label" in
        sentryagent-sled-token)
            sled_rps=$(field "$row" rps)
            sled_p99=$(field "$row" p99_ms)
            sled_err=$(field "$row" errors)
            ;;
        sentryagent-pg+redis-token)
            pg_rps=$(field "$row" rps)
            pg_p99=$(field "$row" p99_ms)
            pg_err=$(field "$row" errors)
            ;;
        oidc-provider-token) peer_rps=$(field "$row" rps) ;;
    esac
done

ratio=$(awk -v a="$sled_rps" -v b="$peer_rps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
printf '\nratio sentryagent-sled-token / oidc-provider-token throughput: %s (target >= 5)\n' "$ratio"
verdict=$(awk -v r="$ratio" -v p="$sled_p99" -v e="$sled_err" 'BEGIN {
    ok = (r + 0 >= 5) && (p + 0 < 5) && (e + 0 == 0);
    print (ok ? "met" : "missed") }')
printf 'target (ratio >= 5, p99 < 5 ms, 0 errors on sentryagent-sled-token): %s (ratio %s, p99 %s ms, errors %s)\n' \
    "$verdict" "$ratio" "$sled_p99" "$sled_err"
if [[ -n "$RESULTS" ]]; then
    printf 'RATIO sled_token_over_peer=%s target=%s\n' "$ratio" "$verdict" >>"$RESULTS"
fi
if [[ -n "$pg_rps" ]]; then
    pg_ratio=$(awk -v a="$pg_rps" -v b="$sled_rps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    pg_verdict=$(awk -v r="$pg_ratio" -v p="$pg_p99" -v e="$pg_err" 'BEGIN {
        ok = (r + 0 >= 0.6) && (p + 0 < 10) && (e + 0 == 0);
        print (ok ? "met" : "missed") }')
    printf 'ratio sentryagent-pg+redis-token / sentryagent-sled-token throughput: %s; target (ratio >= 0.6, p99 < 10 ms, 0 errors): %s (p99 %s ms, errors %s)\n' \
        "$pg_ratio" "$pg_verdict" "$pg_p99" "$pg_err"
    if [[ -n "$RESULTS" ]]; then
        printf 'RATIO pg_token_over_sled=%s target=%s\n' "$pg_ratio" "$pg_verdict" >>"$RESULTS"
    fi
fi
