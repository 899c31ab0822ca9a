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
py=.venv-compat/bin/python
source scripts/kiln-server.sh
export KILN_BIN="$PWD/.build/release/kiln" KILN_DATA="$server_data" KILN_SCRATCH="$data"
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
