#!/usr/bin/env bash
# Load and slow-client checks against a running Kiln server, using whatever of
# wrk and slowhttptest (Debian packages) is installed; missing tools are skipped.
#   scripts/http-load.sh [base-url]      (default http://127.0.0.1:8080)
# Start the server first (e.g. `swift run kiln serve --port 8080`). After each tool the
# script checks /healthz still answers 200.
set -uo pipefail
base="${1:-http://127.0.0.1:8080}"
host_port="${base#http://}"; host_port="${host_port%%/*}"
host="${host_port%%:*}"; port="${host_port##*:}"

healthy() {
    local status
    status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$base/healthz" || true)
    if [[ "$status" == 200 ]]; then echo "healthz: 200"; else echo "healthz: FAILED ($status)"; return 1; fi
}

healthy || { echo "no server at $base"; exit 1; }
failed=0

if command -v wrk >/dev/null; then
    echo "== wrk: keep-alive load, 2 threads, 64 connections, 15 s"
    wrk -t2 -c64 -d15s --latency "$base/healthz" || failed=1
    healthy || failed=1
else
    echo "== wrk not installed (apt-get install wrk); skipped"
fi

if command -v slowhttptest >/dev/null; then
    echo "== slowhttptest: slow headers (slowloris), 200 connections, 40 s"
    slowhttptest -H -c 200 -r 50 -i 10 -x 24 -p 3 -l 40 -u "$base/healthz" -o /tmp/kiln-slow-headers || failed=1
    healthy || failed=1
    echo "== slowhttptest: slow body (R.U.D.Y.), 200 connections, 40 s"
    slowhttptest -B -c 200 -r 50 -i 10 -s 8192 -x 10 -p 3 -l 40 -u "$base/echo" -t POST -o /tmp/kiln-slow-body || failed=1
    healthy || failed=1
    echo "== slowhttptest: slow read, 200 connections, 40 s"
    slowhttptest -X -c 200 -r 50 -w 10 -y 20 -n 5 -z 32 -k 3 -p 3 -l 40 -u "$base/healthz" -o /tmp/kiln-slow-read || failed=1
    healthy || failed=1
else
    echo "== slowhttptest not installed (apt-get install slowhttptest); skipped"
fi

echo "target: $host:$port"
exit $failed
