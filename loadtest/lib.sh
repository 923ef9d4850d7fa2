# Shared by the load scripts (run.sh, multinode.sh, exchange.sh): messages,
# checks, URL helpers, the temporary directory and the cleanup of every
# process, schema and Redis key they make, free ports, the admin API calls
# that set up tenants and agents, the wrk and CPU settings, the release
# build of sentryagentd, and wrk in the background. Sourced, not
# run; expects `set -euo pipefail`, and PG_BASE / REDIS_BASE for
# setup_pg_redis.

# The node snippets below are in single quotes on purpose (JavaScript, not
# shell, expands their ${...}).
# shellcheck disable=SC2016

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'loadtest: %s\n' "$*" >&2; exit 1; }

is_int_in() { [[ "$1" =~ ^[0-9]+$ ]] && (( 10#$1 >= $2 && 10#$1 <= $3 )); }
need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is not installed; $2"
}
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
# More processes to stop on exit (multinode.sh's servers).
EXTRA_PIDS=()

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
    local rc=$? pid
    trap - EXIT INT TERM
    stop_pid "$WRK_PID"
    stop_pid "$SERVER_PID"
    stop_pid "$PEER_PID"
    for pid in "${EXTRA_PIDS[@]}"; do stop_pid "$pid"; done
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

# ---- settings and the server build ---------------------------------------

# Applies PIN=1 (the server on CPU 1, wrk on CPU 0 with one thread; each
# still settable) and checks SERVER_CPUS and WRK_CPUS. Sets THREADS only
# when PIN=1; callers give its default after.
cpu_settings() {
    PIN="${PIN:-0}"
    if [[ "$PIN" == 1 ]]; then
        THREADS="${THREADS:-1}"
        SERVER_CPUS="${SERVER_CPUS:-1}"
        WRK_CPUS="${WRK_CPUS:-0}"
    fi
    SERVER_CPUS="${SERVER_CPUS:-}"
    WRK_CPUS="${WRK_CPUS:-}"
    local cpus
    for cpus in "$SERVER_CPUS" "$WRK_CPUS"; do
        [[ -z "$cpus" || "$cpus" =~ ^[0-9]+([,-][0-9]+)*$ ]] \
            || die "SERVER_CPUS and WRK_CPUS are CPU lists such as 1 or 0-1, not '$cpus'"
    done
    if [[ -n "$SERVER_CPUS$WRK_CPUS" ]]; then
        need taskset "it is part of util-linux"
    fi
}

# check_wrk_settings MAX_DURATION: checks DURATION (1 to MAX_DURATION s),
# WARMUP, THREADS and CONNECTIONS.
check_wrk_settings() {
    is_int_in "$DURATION" 1 "$1" || die "DURATION must be whole seconds from 1 to $1, not '$DURATION'"
    is_int_in "$WARMUP" 0 60 || die "WARMUP must be whole seconds from 0 to 60, not '$WARMUP'"
    is_int_in "$THREADS" 1 64 || die "THREADS must be from 1 to 64, not '$THREADS'"
    is_int_in "$CONNECTIONS" 1 10000 || die "CONNECTIONS must be from 1 to 10000, not '$CONNECTIONS'"
    (( 10#$CONNECTIONS >= 10#$THREADS )) || die "CONNECTIONS must be at least THREADS"
}

# Builds sentryagentd in release and sets SERVER_BIN to it (ROOT: the
# repository), unless SERVER_BIN already names a server binary.
build_sentryagentd() {
    if [[ -n "${SERVER_BIN:-}" ]]; then
        # A given binary (e.g. two builds compared run by run): no build.
        [[ -x "$SERVER_BIN" ]] || die "SERVER_BIN names no executable: $SERVER_BIN"
        say "server binary: $SERVER_BIN (SERVER_BIN; not built)"
        return
    fi
    say "building sentryagentd (release)"
    (cd "$ROOT" && cargo build --release -p sentryagentd) >&2
    local target="${CARGO_TARGET_DIR:-$ROOT/target}"
    [[ "$target" == /* ]] || target="$ROOT/$target"
    SERVER_BIN="$target/release/sentryagentd"
    [[ -x "$SERVER_BIN" ]] || die "no server binary at $SERVER_BIN"
}

# ---- wrk ------------------------------------------------------------------

# Runs wrk with the given arguments, output to the file $1. In the
# background with `wait`, so that a signal stops the run at once (bash runs
# traps only between foreground commands).
wrk_to() {
    local out="$1" rc=0
    shift
    on_cpus "${WRK_CPUS:-}" wrk "$@" >"$out" &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    return "$rc"
}

# on_cpus CPUS COMMAND...: runs COMMAND on the CPU list CPUS (taskset -c),
# or unpinned when CPUS is empty.
on_cpus() {
    local cpus="$1"
    shift
    if [[ -n "$cpus" ]]; then
        taskset -c "$cpus" "$@"
    else
        "$@"
    fi
}

# ---- tenants and agents ---------------------------------------------------

# tier_tenant_key BASE OPERATOR_KEY NAME TIER: creates a tenant of TIER
# (free, pro or enterprise) and prints a new API key of it.
tier_tenant_key() {
    local tenant id
    tenant=$(api POST "$1/v1/tenants" "$2" "{\"name\":\"$3\",\"tier\":\"$4\"}" 201)
    id=$(json_get id <<<"$tenant")
    api POST "$1/v1/tenants/$id/api-keys" "$2" '{"name":"load test"}' 201 | json_get key
}

# enterprise_tenant_key BASE OPERATOR_KEY NAME: creates an enterprise tenant
# and prints a new API key of it.
enterprise_tenant_key() {
    tier_tenant_key "$1" "$2" "$3" enterprise
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

# ---- Postgres + Redis -----------------------------------------------------

# Checks that PG_BASE and REDIS_BASE are loopback and reachable, and sets
# PG_SCHEMA, REDIS_PREFIX (removed on exit), pg_url (the store URL, in the
# fresh schema) and redis_url (the limiter and meter URL, with the prefix).
setup_pg_redis() {
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
}

# field ROW NAME: the value of NAME=... in a RESULT line.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
