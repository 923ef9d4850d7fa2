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
#   RESULTS=path  also append the RESULT lines to this file

# The node snippets below are in single quotes on purpose (JavaScript, not
# shell, expands their ${...}).
# shellcheck disable=SC2016

set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

DURATION="${DURATION:-20}"
WARMUP="${WARMUP:-3}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
PG_BASE="${SENTRYAGENT_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS_BASE="${SENTRYAGENT_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
SKIP_PG="${SKIP_PG:-0}"
RESULTS="${RESULTS:-}"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'loadtest: %s\n' "$*" >&2; exit 1; }

# ---- checks ---------------------------------------------------------------

is_int_in() { [[ "$1" =~ ^[0-9]+$ ]] && (( 10#$1 >= $2 && 10#$1 <= $3 )); }
is_int_in "$DURATION" 1 600 || die "DURATION must be whole seconds from 1 to 600, not '$DURATION'"
is_int_in "$WARMUP" 0 60 || die "WARMUP must be whole seconds from 0 to 60, not '$WARMUP'"
is_int_in "$THREADS" 1 64 || die "THREADS must be from 1 to 64, not '$THREADS'"
is_int_in "$CONNECTIONS" 1 10000 || die "CONNECTIONS must be from 1 to 10000, not '$CONNECTIONS'"
(( 10#$CONNECTIONS >= 10#$THREADS )) || die "CONNECTIONS must be at least THREADS"
if (( 10#$DURATION > 20 )); then
    printf 'loadtest: note: one enterprise tenant may issue 600,000 tokens in a burst plus 10,000 a second; a token or introspection run faster than 10,000 a second for more than about 20 s gets 429 answers, counted as errors\n' >&2
fi

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is not installed; $2"
}
need wrk "install it with: sudo apt-get update && sudo apt-get install -y wrk"
need curl "install it with: sudo apt-get update && sudo apt-get install -y curl"
need node "install Node.js 20 or later (Debian: sudo apt-get install -y nodejs npm)"
need npm "install npm (Debian: sudo apt-get install -y npm)"
need cargo "install a Rust toolchain (https://rustup.rs)"
need base64 "it is part of coreutils"

# The host of a URL (postgres://user@host:port/db -> host).
url_host() {
    local rest="${1#*://}"
    rest="${rest%%[/?]*}"
    rest="${rest##*@}"
    if [[ "$rest" == \[* ]]; then
        rest="${rest#[}"
        printf '%s' "${rest%%]*}"
    else
        printf '%s' "${rest%%:*}"
    fi
}
url_port() {
    local rest="${1#*://}"
    rest="${rest%%[/?]*}"
    rest="${rest##*@}"
    rest="${rest##*]}"
    if [[ "$rest" == *:* ]]; then printf '%s' "${rest##*:}"; else printf '%s' "$2"; fi
}
is_loopback() {
    case "$1" in
        localhost | ::1 | 127.*) return 0 ;;
        *) return 1 ;;
    esac
}
# Whether something accepts TCP connections on host:port.
tcp_open() {
    local host="$1"
    [[ "$host" == localhost ]] && host=127.0.0.1
    timeout 2 bash -c "exec 3<>/dev/tcp/$host/$2" 2>/dev/null
}

# ---- state and cleanup ----------------------------------------------------

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sentryagent-loadtest.XXXXXX")"
SERVER_PID=""
PEER_PID=""
WRK_PID=""
PG_SCHEMA=""
PG_ADMIN_URL=""
REDIS_PREFIX=""
REDIS_URL_USED=""

stop_pid() {
    local pid="$1"
    [[ -n "$pid" ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$WRK_PID"
    stop_pid "$SERVER_PID"
    stop_pid "$PEER_PID"
    if [[ -n "$PG_SCHEMA" ]] && command -v psql >/dev/null 2>&1; then
        psql -q -X "$PG_ADMIN_URL" -c "DROP SCHEMA IF EXISTS \"$PG_SCHEMA\" CASCADE" \
            >/dev/null 2>&1 || say "could not drop the Postgres schema $PG_SCHEMA"
    fi
    if [[ -n "$REDIS_PREFIX" ]] && command -v redis-cli >/dev/null 2>&1; then
        redis-cli -u "$REDIS_URL_USED" --scan --pattern "${REDIS_PREFIX}*" 2>/dev/null \
            | xargs -r -n 500 redis-cli -u "$REDIS_URL_USED" DEL >/dev/null 2>&1 \
            || say "could not delete the Redis keys ${REDIS_PREFIX}*"
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A TCP port nobody listens on, on 127.0.0.1.
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$(( 20000 + RANDOM % 40000 ))
        if ! tcp_open 127.0.0.1 "$p"; then
            printf '%s' "$p"
            return 0
        fi
    done
    die "found no free port on 127.0.0.1"
}

# `n` random characters of A-Z a-z 0-9.
random_chars() {
    local out=""
    while (( ${#out} < $1 )); do
        out+="$(head -c 256 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')"
    done
    printf '%s' "${out:0:$1}"
}

# Reads JSON on stdin and prints the string at a dotted path (a.b.c).
json_get() {
    node -e '
        let s = "";
        process.stdin.on("data", d => (s += d)).on("end", () => {
            let v = JSON.parse(s);
            for (const k of process.argv[1].split(".")) v = v == null ? undefined : v[k];
            if (typeof v !== "string") { console.error(`no string at ${process.argv[1]} in ${s}`); process.exit(1); }
            process.stdout.write(v);
        });' "$1"
}

# api METHOD URL BEARER JSON EXPECTED_STATUS: prints the answer body.
api() {
    local method="$1" url="$2" bearer="$3" body="$4" want="$5" out status
    out="$WORK/answer.json"
    status=$(curl -sS -o "$out" -w '%{http_code}' -X "$method" "$url" \
        -H "authorization: Bearer $bearer" -H 'content-type: application/json' \
        --data-binary "$body") || die "$method $url failed"
    [[ "$status" == "$want" ]] || die "$method $url answered $status, not $want: $(head -c 500 "$out")"
    cat "$out"
}

# Base64 of client_id:client_secret for HTTP Basic. Both must be plain
# characters, which the form-urlencoding of RFC 6749 §2.3.1 leaves as they are.
basic_of() {
    [[ "$1:$2" =~ ^[A-Za-z0-9._~-]+:[A-Za-z0-9._~-]+$ ]] \
        || die "client id or secret has characters that need form-urlencoding"
    printf '%s:%s' "$1" "$2" | base64 -w0
}

# Waits until GET url answers 2xx (bounded), while pid lives.
wait_http() {
    local url="$1" pid="$2" log="$3"
    for _ in $(seq 1 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            die "the process serving $url exited; its log:
$(tail -n 30 "$log")"
        fi
        if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    die "$url did not answer within 30 s; log:
$(tail -n 30 "$log")"
}

# ---- wrk ------------------------------------------------------------------

declare -a ROWS=()

# Runs wrk with the given arguments, output to the file $1. In the
# background with `wait`, so that a signal stops the run at once (bash runs
# traps only between foreground commands).
wrk_to() {
    local out="$1" rc=0
    shift
    wrk "$@" >"$out" &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    return "$rc"
}

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

# enterprise_tenant_key BASE OPERATOR_KEY NAME: creates an enterprise tenant
# and prints a new API key of it.
enterprise_tenant_key() {
    local tenant id
    tenant=$(api POST "$1/v1/tenants" "$2" "{\"name\":\"$3\",\"tier\":\"enterprise\"}" 201)
    id=$(json_get id <<<"$tenant")
    api POST "$1/v1/tenants/$id/api-keys" "$2" '{"name":"load test"}' 201 | json_get key
}

# agent_basic BASE TENANT_KEY NAME: registers an agent and prints its
# client_secret_basic credentials (base64 of client_id:client_secret).
agent_basic() {
    local agent
    agent=$(api POST "$1/v1/agents" "$2" "{\"name\":\"$3\"}" 201)
    basic_of "$(json_get client_id <<<"$agent")" "$(json_get client_secret <<<"$agent")"
}

# access_token BASE BASIC: prints an access token issued to BASIC.
access_token() {
    curl -fsS -X POST "$1/oauth2/token" -H "authorization: Basic $2" \
        -H 'content-type: application/x-www-form-urlencoded' \
        --data 'grant_type=client_credentials' | json_get access_token
}

# check_active BASE RS_BASIC TOKEN: whether introspection says TOKEN is active.
check_active() {
    local active
    active=$(curl -fsS -X POST "$1/oauth2/introspect" -H "authorization: Basic $2" \
        -H 'content-type: application/x-www-form-urlencoded' \
        --data "token=$3" | node -e '
            let s = ""; process.stdin.on("data", d => (s += d)).on("end", () => {
                process.stdout.write(String(JSON.parse(s).active === true)); });')
    [[ "$active" == true ]]
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
    # Billing off: no Stripe settings reach the server.
    env -u SENTRYAGENT_STRIPE_SECRET_KEY -u SENTRYAGENT_ISSUER \
        -u SENTRYAGENT_LIMITER -u SENTRYAGENT_METER "${envs[@]}" \
        "$SERVER_BIN" >"$log" 2>&1 &
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
build_server

bench_sentryagent sled "sled://$WORK/sled-data"

if [[ "$SKIP_PG" == 1 ]]; then
    say "pg+redis: left out (SKIP_PG=1)"
else
    pg_host=$(url_host "$PG_BASE")
    redis_host=$(url_host "$REDIS_BASE")
    is_loopback "$pg_host" || die "the Postgres URL must point at loopback, not $pg_host"
    is_loopback "$redis_host" || die "the Redis URL must point at loopback, not $redis_host"
    if ! tcp_open "$pg_host" "$(url_port "$PG_BASE" 5432)"; then
        die "Postgres is unreachable at $pg_host (set SENTRYAGENT_TEST_POSTGRES_URL, or SKIP_PG=1)"
    fi
    if ! tcp_open "$redis_host" "$(url_port "$REDIS_BASE" 6379)"; then
        die "Redis is unreachable at $redis_host (set SENTRYAGENT_TEST_REDIS_URL, or SKIP_PG=1)"
    fi
    suffix="$(random_chars 10 | LC_ALL=C tr '[:upper:]' '[:lower:]')"
    PG_SCHEMA="loadtest_$suffix"
    PG_ADMIN_URL="$PG_BASE"
    REDIS_PREFIX="loadtest-$suffix:"
    REDIS_URL_USED="$REDIS_BASE"
    sep='?'
    [[ "$PG_BASE" == *\?* ]] && sep='&'
    pg_url="$PG_BASE${sep}schema=$PG_SCHEMA"
    sep='?'
    [[ "$REDIS_BASE" == *\?* ]] && sep='&'
    redis_url="$REDIS_BASE${sep}prefix=$REDIS_PREFIX"
    bench_sentryagent pg+redis "$pg_url" "$redis_url" "$redis_url"
fi

bench_peer

# ---- summary --------------------------------------------------------------

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

printf '\n%-34s %12s %10s %10s %8s %7s\n' "run" "req/s" "p50 ms" "p99 ms" "errors" "load1"
printf '%-34s %12s %10s %10s %8s %7s\n' "---" "-----" "------" "------" "------" "-----"
sled_rps=""
peer_rps=""
sled_p99=""
sled_err=""
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
