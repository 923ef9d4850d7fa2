#!/usr/bin/env bash
# Resident memory of the release server holding one million agents on sled
# (see docs/benchmarks.md, "One million agents"):
#
#   SENTRYAGENT_BENCH_1M_PREPARE_ONLY=1 cargo bench --bench store_1m   # the fixture, once
#   loadtest/rss_1m.sh                       # cache_mb=128
#   CACHE_MB=64 loadtest/rss_1m.sh
#
# Copies the prepared sled fixture (target/bench-data/sled-1m-v2, made by
# benches/store_1m.rs) to a temporary directory, starts the release server
# on it with `sled://<copy>?cache_mb=$CACHE_MB`, then drives
#   1. token requests (wrk, client_credentials, one agent registered here),
#   2. marketplace searches over the million agents (curl, words of the
#      fixture's vocabulary),
#   3. reads of single marketplace agents by id (ids from those searches),
# and prints VmRSS and VmHWM (peak) of the server from /proc after start and
# after each phase, plus one RESULT line. Everything listens on 127.0.0.1;
# the server is stopped and the copy removed on exit.
#
# Environment:
#   FIXTURE      the sled fixture (default target/bench-data/sled-1m-v2)
#   CACHE_MB     sled page cache in MiB (default 128); `default` for sled's 1 GiB
#   TOKEN_SECS   seconds of token requests (default 5; wrk -t1 -c8)
#   SEARCHES     marketplace searches (default 1000)
#   READS        single-agent reads (default 2000)
#   SERVER_BIN   a built server (default: cargo build --release --example server)

set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET" == /* ]] || TARGET="$ROOT/$TARGET"

FIXTURE="${FIXTURE:-$TARGET/bench-data/sled-1m-v2}"
CACHE_MB="${CACHE_MB:-128}"
TOKEN_SECS="${TOKEN_SECS:-5}"
SEARCHES="${SEARCHES:-1000}"
READS="${READS:-2000}"
SERVER_BIN="${SERVER_BIN:-}"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'rss_1m: %s\n' "$*" >&2; exit 1; }

is_int_in() { [[ "$1" =~ ^[0-9]+$ ]] && (( 10#$1 >= $2 && 10#$1 <= $3 )); }
[[ "$CACHE_MB" == default ]] || is_int_in "$CACHE_MB" 1 1048576 \
    || die "CACHE_MB must be 1 to 1048576 or 'default', not '$CACHE_MB'"
is_int_in "$TOKEN_SECS" 1 600 || die "TOKEN_SECS must be 1 to 600, not '$TOKEN_SECS'"
is_int_in "$SEARCHES" 1 1000000 || die "SEARCHES must be 1 to 1000000, not '$SEARCHES'"
is_int_in "$READS" 0 1000000 || die "READS must be 0 to 1000000, not '$READS'"
for tool in curl jq wrk; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (Debian: sudo apt-get install -y $tool)"
done
[[ -f "$FIXTURE/db" ]] || die "no sled fixture at $FIXTURE; make it with:
  SENTRYAGENT_BENCH_1M_PREPARE_ONLY=1 cargo bench --bench store_1m"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sentryagent-rss.XXXXXX")"
SERVER_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z "$SERVER_BIN" ]]; then
    say "building the server (release)"
    (cd "$ROOT" && cargo build --release --example server) >&2
    SERVER_BIN="$TARGET/release/examples/server"
fi
[[ -x "$SERVER_BIN" ]] || die "no server binary at $SERVER_BIN"

say "copying the fixture ($(du -sh "$FIXTURE" | cut -f1)) from $FIXTURE"
cp -a "$FIXTURE" "$WORK/data"

port=""
for _ in $(seq 1 100); do
    p=$(( 20000 + RANDOM % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[[ -n "$port" ]] || die "no free port on 127.0.0.1"
BASE="http://127.0.0.1:$port"
OP_KEY="sa_ak_$(head -c 64 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9' | head -c 40)"
while (( ${#OP_KEY} < 46 )); do
    OP_KEY+="$(head -c 64 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9' | head -c 1)"
done
STORE="sled://$WORK/data"
[[ "$CACHE_MB" == default ]] || STORE="$STORE?cache_mb=$CACHE_MB"

say "starting the server on $BASE with SENTRYAGENT_STORE=$STORE"
env -u SENTRYAGENT_STRIPE_SECRET_KEY -u SENTRYAGENT_ISSUER -u SENTRYAGENT_LIMITER \
    -u SENTRYAGENT_METER SENTRYAGENT_LISTEN="127.0.0.1:$port" SENTRYAGENT_STORE="$STORE" \
    SENTRYAGENT_BOOTSTRAP_KEY="$OP_KEY" RUST_LOG=warn \
    "$SERVER_BIN" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
started=$(date +%s.%N)
for _ in $(seq 1 600); do
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited: $(tail -n 30 "$WORK/server.log")"
    curl -fsS -o /dev/null --max-time 1 "$BASE/health" 2>/dev/null && break
    sleep 0.1
done
curl -fsS -o /dev/null --max-time 1 "$BASE/health" || die "the server did not answer within 60 s"
say "up after $(echo "$(date +%s.%N) - $started" | bc) s"

# VmRSS and VmHWM of the server, in MiB.
mem() {
    local rss hwm
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status")
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status")
    printf 'rss_mib=%d hwm_mib=%d' $(( rss / 1024 )) $(( hwm / 1024 ))
}
declare -a PHASES=()
phase() {
    local line
    line="$1 $(mem) load1=$(cut -d' ' -f1 /proc/loadavg)"
    PHASES+=("$line")
    say "$line"
}
phase started

# api METHOD PATH BEARER JSON: the answer body (fails unless 2xx).
api() {
    curl -fsS -X "$1" "$BASE$2" -H "authorization: Bearer $3" \
        -H 'content-type: application/json' --data-binary "$4"
}
tenant=$(api POST /v1/tenants "$OP_KEY" '{"name":"RSS run","tier":"enterprise"}' | jq -r .id)
key=$(api POST "/v1/tenants/$tenant/api-keys" "$OP_KEY" '{"name":"rss"}' | jq -r .key)
agent=$(api POST /v1/agents "$key" '{"name":"rss-client"}')
basic=$(printf '%s:%s' "$(jq -r .client_id <<<"$agent")" "$(jq -r .client_secret <<<"$agent")" | base64 -w0)

say "token requests for ${TOKEN_SECS} s (wrk -t1 -c8)"
LOADTEST_BASIC="$basic" LOADTEST_LABEL=rss-token \
    wrk -t1 -c8 -d"${TOKEN_SECS}s" -s "$HERE/token.lua" "$BASE/oauth2/token" >"$WORK/wrk.txt"
token_line=$(grep '^RESULT ' "$WORK/wrk.txt" | tail -n 1)
say "$token_line"
phase after_tokens

# Words of the fixture's vocabulary (benches/store_1m.rs) and syllable
# pairs of its product names.
WORDS=(invoice billing payment ledger report summary translate language search index
    crawler scraper calendar meeting schedule email inbox support ticket triage code review
    deploy monitor alert incident data pipeline warehouse query image vision speech audio
    contract legal compliance security audit research)
SYL=(zan quo ri vel mak tor lux pen dra kil bo sen fy gar nox tri ul wem ca jo hex pli stu dor)
say "$SEARCHES marketplace searches"
: >"$WORK/ids.txt"
bad=0
search_start=$(date +%s.%N)
for i in $(seq 1 "$SEARCHES"); do
    case $(( i % 3 )) in
        0) q="${WORDS[RANDOM % ${#WORDS[@]}]}" ;;
        1) q="${SYL[RANDOM % ${#SYL[@]}]}${SYL[RANDOM % ${#SYL[@]}]}${SYL[RANDOM % ${#SYL[@]}]}" ;;
        *) q="${WORDS[RANDOM % ${#WORDS[@]}]}+${WORDS[RANDOM % ${#WORDS[@]}]}" ;;
    esac
    if body=$(curl -fsS "$BASE/v1/marketplace/agents?q=$q&limit=20"); then
        jq -r '.items[]?.id // empty' <<<"$body" >>"$WORK/ids.txt" || true
    else
        bad=$(( bad + 1 ))
    fi
done
search_secs=$(echo "$(date +%s.%N) - $search_start" | bc)
say "searches: $SEARCHES in $search_secs s, $bad failed, $(sort -u "$WORK/ids.txt" | wc -l) distinct agents found"
phase after_searches

say "$READS reads of single agents"
read_bad=0
mapfile -t IDS < <(sort -u "$WORK/ids.txt" | shuf -n "$READS" || true)
for id in "${IDS[@]}"; do
    curl -fsS -o /dev/null "$BASE/v1/marketplace/agents/$id" || read_bad=$(( read_bad + 1 ))
done
say "reads: ${#IDS[@]} done, $read_bad failed"
phase after_reads

printf '%s\n' "${PHASES[@]}"
final=$(mem)
printf 'RESULT label=rss_1m cache_mb=%s %s token_%s searches=%s search_failures=%s reads=%s read_failures=%s load1=%s\n' \
    "$CACHE_MB" "$final" "$(sed -e 's/^RESULT //' -e 's/ / token_/g' <<<"$token_line")" \
    "$SEARCHES" "$bad" "${#IDS[@]}" "$read_bad" "$(cut -d' ' -f1 /proc/loadavg)"
