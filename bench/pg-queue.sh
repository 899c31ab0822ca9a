#!/usr/bin/env bash
# The PostgreSQL job queue's figures on a throwaway server (initdb into a temporary
# directory, a free loopback port, fsync on as in production; stopped and removed on
# exit): claims per second of no-op jobs, and the time from enqueue to the claim of an
# idle worker woken by NOTIFY. Prints JSON lines.
# Usage: bench/pg-queue.sh [JOBS] [WORKERS] [SAMPLES]
# KILN_BENCH_BIN=path uses an already built kiln-bench instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "PostgreSQL is not installed; run scripts/setup-deps.sh" >&2; exit 1; }
bench=${KILN_BENCH_BIN:-}
if [ -z "$bench" ]; then
    swift build -c release --product kiln-bench >/dev/null
    bench=.build/release/kiln-bench
fi

work=$(mktemp -d /tmp/kiln-pg-bench-XXXXXX)
# initdb and pg_ctl refuse to run as root.
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres: "$work"
cleanup() {
    [ -f "$work/data/postmaster.pid" ] && (cd "$work" && as_postgres "$bin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1)
    rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work" && as_postgres "$bin/initdb" -D "$work/data" -U kiln -A trust -E UTF8 --locale=C >/dev/null)
printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = ''\n" "$port" >>"$work/data/postgresql.conf"
(cd "$work" && as_postgres "$bin/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null)
"$bench" pg-queue "postgresql://kiln@127.0.0.1:$port/postgres" "${1:-2000}" "${2:-4}" "${3:-200}"
