#!/usr/bin/env bash
# Installs the system libraries Kiln builds against, where missing (Debian).
set -euo pipefail
need=()
# libpq-dev is the PostgreSQL client (KilnPostgres); postgresql provides the initdb and
# pg_ctl that the PostgreSQL tests and bench/pg-queue.sh start throwaway servers with.
# python3-venv and curl: scripts/onnx-tests.sh (a test-only venv with onnxruntime).
for pkg in libopenblas-dev libdnnl-dev libcurl4-openssl-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev libpq-dev postgresql python3-venv curl; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}"
fi
