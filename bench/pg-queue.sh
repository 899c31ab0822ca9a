#!/usr/bin/env bash
# The PostgreSQL job queue's figures on a throwaway server (initdb into a temporary
# directory, a free loopback port, fsync on as in production; stopped and removed on
# exit): claims per second of no-op jobs, and the time from enqueue to the claim of an
# idle worker woken by NOTIFY. Prints JSON lines.
# Usage: bench/pg-queue.sh [JOBS] [WORKERS] [SAMPLES]
# KILN_BENCH_BIN=path uses an already built kiln-bench instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${KILN_BENCH_BIN:-}
if [ -z "$bench" ]; then
    swift build -c release --product kiln-bench >/dev/null
    bench=.build/release/kiln-bench
fi

source bench/pg-server.sh
trap stop_postgres EXIT
"$bench" pg-queue "$db" "${1:-2000}" "${2:-4}" "${3:-200}"
