#!/usr/bin/env bash
# Peak server memory while Kiln accepts a 1 GiB dataset, as .npy and as .npz (issue 13):
# starts `kiln serve` (scripts/kiln-server.sh), then bench/upload_bench.py writes the
# arrays into the scratch directory, uploads each with curl and prints one JSON line per
# upload. KILN_UPLOAD_MIB sets the array size (default 1024).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/kiln-server.sh
python3 bench/upload_bench.py "$KILN_URL" "$pid" "$data" "${KILN_UPLOAD_MIB:-1024}"
check_server_alive
