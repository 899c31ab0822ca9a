"""/metrics through prometheus_client's parsers, text and OpenMetrics: process
metrics, kiln_build_info, per-model inference counters and latency, job durations and
queue waits, and request routes labelled by their matched pattern."""
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from common import URL, run


def scrape(accept=None):
    # Calls that the route labels must tell apart.
    requests.get(f"{URL}/v2/health/ready")
    requests.get(f"{URL}/v2/models/m")
    requests.post(f"{URL}/v2/models/m/infer", json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]})
    requests.post(f"{URL}/v1/models/m:predict", json={"instances": [[1, 2]]})
    r = requests.get(f"{URL}/metrics", headers={"Accept": accept} if accept else {})
    assert r.status_code == 200
    return r


def test_text_format():
    r = scrape()
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds", "process_max_fds"):
        assert name in families, name
    assert families["process_resident_memory_bytes"].samples[0].value > 1e6
    assert families["process_start_time_seconds"].samples[0].value > 1.7e9
    build = families["kiln_build_info"].samples[0]
    assert build.value == 1 and build.labels["version"]
    inference = families["kiln_model_inference_requests"].samples
    assert any(s.labels == {"model": "m", "outcome": "success"} and s.value >= 2 for s in inference)
    assert any(s.labels.get("model") == "m" for s in families["kiln_model_inference_duration_seconds"].samples)
    assert families["kiln_job_duration_seconds"].samples and families["kiln_job_queue_wait_seconds"].samples
    assert families["kiln_epochs_trained"].samples[0].value >= 6
    routes = {s.labels["route"] for s in families["kiln_http_requests"].samples}
    assert {"/v2/health/ready", "/v2/models/:name", "/v2/models/:name/infer", "/v1/models/:name:predict"} <= routes, routes
    assert not any(r.startswith("/v2/models/m") or "?" in r for r in routes), routes


def test_openmetrics_format():
    r = scrape("application/openmetrics-text; version=1.0.0")
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in openmetrics_families(r.text)}
    assert families["kiln_http_requests"].type == "counter"
    assert "process_cpu_seconds" in families and "kiln_build_info" in families


run(globals())
