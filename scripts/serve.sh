#!/usr/bin/env bash
# Installs what is missing, builds Kiln optimised and serves on the default config.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
swift build -c release --product kiln
exec .build/release/kiln serve "$@"
