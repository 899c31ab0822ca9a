#!/usr/bin/env bash
# Validates openapi.yaml with openapi-spec-validator (installed from PyPI if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import openapi_spec_validator, yaml" 2>/dev/null; then
    python3 -m pip install --quiet openapi-spec-validator pyyaml
fi
python3 - <<'PY'
import yaml
from openapi_spec_validator import validate
validate(yaml.safe_load(open("openapi.yaml")))
print("openapi.yaml: valid")
PY
