#!/usr/bin/env bash
# Two Kiln nodes on one throwaway PostgreSQL (initdb into a temporary directory, a free
# loopback port, fsync on as in production; stopped and removed on exit):
#   - landing → prediction: a node `all` trains small models; as each lands, how long
#     until the other node (`api`) answers its first /predict for it (polled every 5 ms);
#   - epoch overhead: the same training job on one node with the data directory and
#     with the PostgreSQL stores, wall time per epoch (job start to finish / epochs),
#     runs interleaved; on a shared machine this moves by more than the overhead, so
#   - the commit itself: `kiln-bench pg-commit` times JobStore.commitEpoch of the same
#     model's checkpoint on both stores, interleaved, and gives the difference as a
#     share of the data-directory epoch measured above.
# Prints JSON lines.
# Usage: bench/pg-cluster.sh [MODELS] [RUNS] [COMMITS]
# KILN_BIN / KILN_BENCH_BIN=path use an already built kiln / kiln-bench.
set -euo pipefail
cd "$(dirname "$0")/.."
kiln=${KILN_BIN:-}
if [ -z "$kiln" ]; then
    swift build -c release --product kiln >/dev/null
    kiln=.build/release/kiln
fi
kiln=$(realpath "$kiln")
bench=${KILN_BENCH_BIN:-}
if [ -z "$bench" ]; then
    swift build -c release --product kiln-bench >/dev/null
    bench=.build/release/kiln-bench
fi

source bench/pg-server.sh
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    stop_postgres
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME PORT [database-url ROLE]
start() {
    mkdir -p "$work/$1"
    (cd "$work/$1" && KILN_DATABASE_URL="${3:-}" KILN_ROLE="${4:-all}" KILN_NODE_NAME="$1" \
        exec "$kiln" serve --port "$2" --data-dir "$work/$1" >"$work/$1.log" 2>&1) &
    pids+=($!)
}
trainer_port=$(free_port); api_port=$(free_port); dir_port=$(free_port)
start trainer "$trainer_port" "$db" all
start api "$api_port" "$db" api
start local "$dir_port"
python3 bench/pg_cluster.py "$trainer_port" "$api_port" "$dir_port" "${1:-20}" "${2:-3}" "$work/epoch_seconds"
as_postgres "$bin/psql" -q -h 127.0.0.1 -p "$pg_port" -U kiln -d postgres -c "CREATE DATABASE commits" >/dev/null
mkdir -p "$work/commit-dir"
"$bench" pg-commit "postgresql://kiln@127.0.0.1:$pg_port/commits" "$work/commit-dir" "${3:-30}" "$(cat "$work/epoch_seconds")"
