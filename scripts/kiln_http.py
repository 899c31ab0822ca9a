"""The HTTP calls the scripts that drive a live Kiln make (onnx_tests.py,
keras_roundtrip.py): JSON in and out, errors returned, not raised."""
import json
import urllib.error
import urllib.request


def client(base):
    """A `call(method, path, body=None, raw=False, content_type=...)` against `base`,
    returning (status, JSON or bytes); a dict body is sent as JSON, bytes as they are."""
    base = base.rstrip("/")

    def call(method, path, body=None, raw=False, content_type="application/json"):
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": content_type} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                payload = r.read()
                return r.status, payload if raw else json.loads(payload)
        except urllib.error.HTTPError as e:
            payload = e.read()
            try:
                return e.code, json.loads(payload)
            except ValueError:
                return e.code, payload

    return call
