#!/usr/bin/env bash
# Sourced by bench/pg-queue.sh and bench/pg-cluster.sh: a throwaway PostgreSQL (initdb
# into a fresh temporary directory $work, a free loopback port, fsync on as in
# production). Sets $bin, $work, $pg_port and $db (a URL of the `postgres` database),
# and defines as_postgres and stop_postgres; the caller's EXIT trap calls stop_postgres.
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "PostgreSQL is not installed; run scripts/setup-deps.sh" >&2; exit 1; }
work=$(mktemp -d /tmp/kiln-pg-bench-XXXXXX)
# initdb and pg_ctl refuse to run as root.
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres: "$work"
stop_postgres() {
    [ -f "$work/pg/postmaster.pid" ] && (cd "$work" && as_postgres "$bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1)
    rm -rf "$work"
}
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work" && as_postgres "$bin/initdb" -D "$work/pg" -U kiln -A trust -E UTF8 --locale=C >/dev/null)
printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = ''\n" "$pg_port" >>"$work/pg/postgresql.conf"
(cd "$work" && as_postgres "$bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null)
db="postgresql://kiln@127.0.0.1:$pg_port/postgres"
