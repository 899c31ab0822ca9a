"""Shared by the client-compatibility tests: the server's address and a tiny runner
(each test_* function runs; a failure is reported and makes the file exit 1)."""
import json
import os
import sys
import traceback
import urllib.request

URL = os.environ["KILN_URL"]
HOSTPORT = URL.split("://", 1)[1]
TOLERANCE = 1e-6


def call(method, path, body=None, headers=None):
    """(status, headers, parsed JSON or raw bytes) of one request."""
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    request = urllib.request.Request(URL + path, data=data, method=method, headers=headers or {})
    if body is not None and not isinstance(body, bytes):
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            status, h, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, h, raw = e.code, dict(e.headers), e.read()
    try:
        return status, h, json.loads(raw)
    except ValueError:
        return status, h, raw


def predict(model, inputs, outputs=None):
    """Kiln's own /predict: the reference every protocol's answer must equal."""
    body = {"model": model, "inputs": inputs}
    if outputs:
        body["outputs"] = outputs
    status, _, answer = call("POST", "/predict", body)
    assert status == 200, answer
    return answer["outputs"]


def close(a, b, tolerance=TOLERANCE):
    import numpy as np
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    assert np.allclose(a, b, rtol=0, atol=tolerance), f"values differ by {np.abs(a - b).max()}"


def models():
    with open(os.path.join(os.environ["KILN_SCRATCH"], "models.json")) as f:
        return json.load(f)


def run(namespace):
    failed = 0
    tests = [(name, f) for name, f in namespace.items() if name.startswith("test_") and callable(f)]
    for name, f in tests:
        try:
            f()
            print(f"ok   {name}")
        except Exception:
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
    print(f"{len(tests) - failed}/{len(tests)} passed")
    sys.exit(1 if failed else 0)
