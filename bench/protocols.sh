#!/usr/bin/env bash
# Prediction latency through each serving protocol (bench/protocols.py): starts
# `kiln serve` on a free loopback port with a scratch data directory, uses the
# client-compatibility venv (scripts/compat-venv.sh). Prints one JSON line per figure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/compat-venv.sh
py=.venv-compat/bin/python
source scripts/kiln-server.sh
$py bench/protocols.py
