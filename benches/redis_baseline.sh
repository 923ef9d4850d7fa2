#!/usr/bin/env bash
# The redis-benchmark side of the Redis rate limiter comparison
# (docs/benchmarks.md, "Redis limiter"): on the Redis the benches use, at the
# pipelining depth of `rate_limiter/redis_pipelined` and on one connection,
# as that id uses one:
#
#   1. `redis-benchmark -t set -P 16 -c 1`: the issue's baseline;
#   2. the limiter's own Lua script (sentryagent-storage/src/redis/gcra.lua)
#      called by EVALSHA the same way, without the Rust client;
#   3. a script that only returns 1, the floor of any EVALSHA;
#
# then each one's server-side time per call from `INFO commandstats`.
#
#   benches/redis_baseline.sh             # DEPTH=16 N=1000000
#   DEPTH=32 N=2000000 benches/redis_baseline.sh
#
# It resets the server's command statistics (CONFIG RESETSTAT) and loads
# two scripts; its keys (`{sa-baseline:...}`) expire within a second.
set -euo pipefail

HOST="${REDIS_HOST:-127.0.0.1}"
PORT="${REDIS_PORT:-6379}"
DEPTH="${DEPTH:-16}"
N="${N:-1000000}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GCRA="$HERE/../sentryagent-storage/src/redis/gcra.lua"

for tool in redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null || {
        echo "redis_baseline: $tool is not installed (Debian package redis-tools)" >&2
        exit 1
    }
done
cli() { redis-cli -h "$HOST" -p "$PORT" "$@"; }
cli PING >/dev/null || {
    echo "redis_baseline: redis unreachable at $HOST:$PORT" >&2
    exit 1
}

# run LABEL STAT COMMAND...: redis-benchmark's rate, then the server's time
# per call of command STAT.
run() {
    local label="$1" name="$2" rps stat
    shift 2
    cli CONFIG RESETSTAT >/dev/null
    rps=$(redis-benchmark -h "$HOST" -p "$PORT" -P "$DEPTH" -c 1 -n "$N" --csv "$@" |
        tail -n 1 | cut -d, -f2 | tr -d '"')
    stat=$(cli INFO commandstats | tr -d '\r' | grep "^cmdstat_${name}:" |
        sed 's/.*usec_per_call=\([0-9.]*\).*/\1/')
    printf '%-34s %9.0f requests/s %6s µs/call in the server\n' "$label" "$rps" "$stat"
}

echo "redis $(cli INFO server | tr -d '\r' | grep '^redis_version:' | cut -d: -f2) at $HOST:$PORT, -P $DEPTH -c 1 -n $N"
run "SET (redis-benchmark -t set)" set -t set
gcra=$(cli SCRIPT LOAD "$(cat "$GCRA")")
# T = 1 µs, D = 10^9 µs, cost 1: every call is admitted, as in the bench.
run "EVALSHA gcra.lua (the limiter)" evalsha EVALSHA "$gcra" 1 '{sa-baseline:rl:key}' 1 1000000000 1
one=$(cli SCRIPT LOAD 'return 1')
run "EVALSHA 'return 1' (the floor)" evalsha EVALSHA "$one" 1 '{sa-baseline:one}'
