#!/usr/bin/env bash
# Makes the test-only virtual environment for the client-compatibility tests
# (.venv-compat/): the real client libraries users already have. Never part of the
# build. promtool comes from Debian's `prometheus` package. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
    else
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null
    fi
fi
# Debian starts the packaged Prometheus server on install; only promtool is wanted.
if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus >/dev/null 2>&1 || true; fi
if [ ! -x .venv-compat/bin/python ] || ! .venv-compat/bin/python -c 'import tritonclient.http, requests, prometheus_client, numpy, gevent' 2>/dev/null; then
    python3 -m venv .venv-compat
    .venv-compat/bin/pip install --quiet --disable-pip-version-check 'tritonclient[http]' requests prometheus_client numpy
fi
