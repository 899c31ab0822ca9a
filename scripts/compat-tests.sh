#!/usr/bin/env bash
# Drives a live Kiln with the client libraries users already have: tritonclient
# (binary and JSON, sync and async), TF-Serving-style requests, prometheus_client's
# parser, promtool, and the kiln command line. Builds kiln, starts `kiln serve` on a
# free loopback port with a scratch data directory, trains tiny models, runs
# tests/compat/test_*.py against it. Exits non-zero if any call fails.
# Usage: scripts/compat-tests.sh [test-file-pattern]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/compat-venv.sh
swift build -c release -Xswiftc -enable-testing --product kiln >/dev/null
py=.venv-compat/bin/python
data=$(mktemp -d)
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.build/release/kiln serve --host 127.0.0.1 --port "$port" --data-dir "$data/server" 2>"$data/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT
export KILN_URL="http://127.0.0.1:$port" KILN_BIN="$PWD/.build/release/kiln" KILN_DATA="$data/server" KILN_SCRATCH="$data"
$py tests/compat/setup_models.py
status=0
for test in tests/compat/test_${1:-*}.py; do
    echo "== $test"
    $py "$test" || status=1
done
echo "== promtool check metrics"
if command -v promtool >/dev/null 2>&1; then
    curl -fsS "$KILN_URL/metrics" | promtool check metrics || status=1
else
    echo "promtool not installed (Debian's prometheus package): skipped"; status=1
fi
if [ "$status" != 0 ]; then echo "compat tests FAILED; server log:"; tail -n 30 "$data/server.log"; fi
exit $status
