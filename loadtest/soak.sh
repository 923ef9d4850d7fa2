#!/usr/bin/env bash
# The multi-node soak (docs/reliability.md): three sentryagentd processes on
# one Postgres schema and one Redis key prefix, token requests,
# introspection, registrations and rotations spread over the three for
# DURATION seconds (default 300). Prints the SOAK lines: throughput, p50/p99
# per operation, errors, the shared rate limit's over-admission, resident
# memory of each node at start and end, rotations honoured across nodes;
# fails when a bound is broken.
#
#   loadtest/soak.sh                    # 300 s, debug build (as cargo test)
#   DURATION=600 loadtest/soak.sh       # longer
#   PROFILE=release loadtest/soak.sh    # the release build
#
# Postgres and Redis come from SENTRYAGENT_TEST_POSTGRES_URL and
# SENTRYAGENT_TEST_REDIS_URL (defaults: the local ones); the schema and the
# keys are removed at the end. `cargo test` runs the same soak for 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
export SENTRYAGENT_SOAK_SECS="${DURATION:-300}"
# The build settings of .ci/run, so that the build `cargo test` made is
# reused rather than rebuilt.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
export SENTRYAGENT_REQUIRE_SERVICES=1
release=()
if [ "${PROFILE:-debug}" = release ]; then
    release=(--release)
fi
cargo test "${release[@]}" -p sentryagentd --all-features --test soak -- --nocapture 2>&1 |
    grep -E '^SOAK|^test |test result|panicked|assert'
