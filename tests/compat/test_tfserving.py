"""TensorFlow Serving's REST API with `requests`, as its documentation shows it:
model status, metadata (signature_def), predict in the row and columnar forms (a bare
value for a single input, named outputs for several), signature_name, versions and
labels, and errors as {"error": "<string>"}. Answers equal /predict within 1e-6."""
import requests

from common import URL, close, models, predict, run

ids = models()
rows = [[0.1, -0.2], [0.3, 0.4], [-0.5, 0.6]]


def test_status():
    r = requests.get(f"{URL}/v1/models/m")
    assert r.status_code == 200
    status = r.json()["model_version_status"]
    assert [s["version"] for s in status] == ["2", "1"]
    assert all(s["state"] == "AVAILABLE" and s["status"]["error_code"] == "OK" for s in status)
    one = requests.get(f"{URL}/v1/models/m/versions/1").json()["model_version_status"]
    assert one == [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    stable = requests.get(f"{URL}/v1/models/m/labels/stable").json()["model_version_status"]
    assert stable[0]["version"] == "2"


def test_metadata():
    meta = requests.get(f"{URL}/v1/models/two/metadata").json()
    assert meta["model_spec"] == {"name": "two", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert set(sig["inputs"]) == {"a", "b"} and set(sig["outputs"]) == {"p", "r"}
    a = sig["inputs"]["a"]
    assert a["dtype"] == "DT_FLOAT" and [d["size"] for d in a["tensor_shape"]["dim"]] == ["-1", "3"]
    assert requests.get(f"{URL}/v1/models/m/versions/1/metadata").json()["model_spec"]["version"] == "1"


def test_predict_row_form():
    r = requests.post(f"{URL}/v1/models/m:predict", json={"signature_name": "serving_default", "instances": rows})
    assert r.status_code == 200, r.text
    close(r.json()["predictions"], predict("m", {"x": rows})["y"])
    named = requests.post(f"{URL}/v1/models/m:predict", json={"instances": [{"x": row} for row in rows]}).json()
    close(named["predictions"], predict("m", {"x": rows})["y"])


def test_predict_columnar_forms():
    bare = requests.post(f"{URL}/v1/models/m:predict", json={"inputs": rows}).json()
    close(bare["outputs"], predict("m", {"x": rows})["y"])
    named = requests.post(f"{URL}/v1/models/m:predict", json={"inputs": {"x": rows}}).json()
    close(named["outputs"], predict("m", {"x": rows})["y"])


def test_predict_versions_and_labels():
    for n, job in enumerate(ids["m"], start=1):
        r = requests.post(f"{URL}/v1/models/m/versions/{n}:predict", json={"instances": rows}).json()
        close(r["predictions"], predict(job, {"x": rows})["y"])
    stable = requests.post(f"{URL}/v1/models/m/labels/stable:predict", json={"instances": rows}).json()
    close(stable["predictions"], predict(ids["m"][-1], {"x": rows})["y"])


def test_named_outputs():
    a, b = [[0.1, 0.2, 0.3], [0.4, -0.5, 0.6]], [[1, 2], [-1, 0.5]]
    expected = predict("two", {"a": a, "b": b})
    rows_answer = requests.post(f"{URL}/v1/models/two:predict", json={"instances": [{"a": a[i], "b": b[i]} for i in range(2)]}).json()
    for i, p in enumerate(rows_answer["predictions"]):
        close(p["p"], expected["p"][i])
        close(p["r"], expected["r"][i])
    columns = requests.post(f"{URL}/v1/models/two:predict", json={"inputs": {"a": a, "b": b}}).json()
    close(columns["outputs"]["p"], expected["p"])
    close(columns["outputs"]["r"], expected["r"])


def test_errors():
    for method, path, body, status in (
        ("post", "/v1/models/nope:predict", {"instances": rows}, 404),
        ("get", "/v1/models/m/versions/9", None, 404),
        ("get", "/v1/models/m/labels/canary", None, 404),
        ("post", "/v1/models/m:predict", {"signature_name": "other", "instances": rows}, 400),
        ("post", "/v1/models/m:predict", {"instances": [[1, 2, 3]]}, 400),
        ("post", "/v1/models/two:predict", {"inputs": [[1, 2, 3]]}, 400),
        ("post", "/v1/models/m:predict", {"instances": rows, "inputs": rows}, 400),
        ("get", "/v1/no/such/path", None, 404),
    ):
        r = getattr(requests, method)(URL + path, json=body)
        assert r.status_code == status, (path, r.status_code, r.text)
        assert isinstance(r.json()["error"], str) and r.json()["error"], r.text


run(globals())
