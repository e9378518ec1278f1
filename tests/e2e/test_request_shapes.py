"""Requests as MLflow's server reads them, end to end against `mlreg serve` with the real MLflow
client (2.x or 3.x) or raw HTTP as MLflow's own tests send it: page tokens, GET parameters in a
JSON body, and the malformed requests of issue 13 answered with MLflow's status and wording."""

from __future__ import annotations

import uuid

import mlflow
import pytest
import requests
from mlflow.entities import Metric

MLFLOW3 = int(mlflow.__version__.split(".")[0]) >= 3


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def api(service, method: str, route: str, headers: dict | None = None, **kwargs) -> requests.Response:
    return requests.request(method, f"{service.uri()}/api/2.0/{route}", timeout=60,
                            headers={"Authorization": f"Bearer {service.token}", **(headers or {})}, **kwargs)


# ---- page tokens (issue 14, item 5) ----------------------------------------------------------------------

def test_page_size_may_change_between_pages(service, tracking):
    """MLflow's clients may ask for a different max_results with a page token: the token is bound to
    the project, filter and order, not to the page size."""
    exp = tracking.create_experiment(unique("pages"))
    runs = [tracking.create_run(exp, start_time=1000 + i).info.run_id for i in range(7)]
    first = tracking.search_runs([exp], max_results=2, order_by=["attributes.start_time DESC"])
    rest = tracking.search_runs([exp], max_results=5, order_by=["attributes.start_time DESC"], page_token=first.token)
    assert [r.info.run_id for r in [*first, *rest]] == runs[::-1] and not rest.token
    with pytest.raises(mlflow.exceptions.MlflowException, match="page token"):
        tracking.search_runs([exp], max_results=5, order_by=["attributes.start_time ASC"], page_token=first.token)

    tracking.log_batch(runs[0], metrics=[Metric("loss", float(i), 0, i) for i in range(9)])
    history = {"run_id": runs[0], "metric_key": "loss"}
    page = api(service, "GET", "mlflow/metrics/get-history", params={**history, "max_results": 4}).json()
    tail = api(service, "GET", "mlflow/metrics/get-history",
               params={**history, "max_results": 10, "page_token": page["next_page_token"]}).json()
    assert [m["step"] for m in page["metrics"] + tail["metrics"]] == list(range(9))

    prefix = unique("paged")
    made = {tracking.create_experiment(f"{prefix}-{i}") for i in range(3)}
    one = tracking.search_experiments(max_results=1, filter_string=f"name LIKE '{prefix}-%'")
    others = tracking.search_experiments(max_results=10, filter_string=f"name LIKE '{prefix}-%'", page_token=one.token)
    assert {e.experiment_id for e in [*one, *others]} == made and len(one) == 1


# ---- GET parameters in a JSON body (issue 14, item 2) ----------------------------------------------------

def test_a_get_without_query_string_reads_its_json_body(service, tracking):
    """mlflow-export-import sends registered-models/get and experiments/get this way."""
    name = unique("get-body")
    tracking.create_registered_model(name)
    exp = tracking.create_experiment(f"{name}-exp")
    model = api(service, "GET", "mlflow/registered-models/get", json={"name": name})
    assert model.status_code == 200 and model.json()["registered_model"]["name"] == name
    experiment = api(service, "GET", "mlflow/experiments/get", json={"experiment_id": exp})
    assert experiment.status_code == 200 and experiment.json()["experiment"]["name"] == f"{name}-exp"
    both = api(service, "GET", "mlflow/experiments/get", params={"experiment_id": exp}, json={"experiment_id": "0"})
    assert both.json()["experiment"]["experiment_id"] == exp  # a query string wins, as in MLflow


# ---- malformed requests (issue 13): MLflow's status, code and wording ------------------------------------

HINT = " Hint: Value was of type '{}'. See the API docs for more information about request parameters."


def refused(response: requests.Response, message: str | None = None, code: str = "INVALID_PARAMETER_VALUE",
            status: int = 400) -> str:
    assert (response.status_code, response.json()["error_code"]) == (status, code), response.text
    if message is not None:
        assert response.json()["message"] == message
    return response.json()["message"]


@pytest.fixture
def run_id(tracking):
    return tracking.create_run(tracking.create_experiment(unique("malformed"))).info.run_id


def test_wrong_json_types_inside_lists_and_objects(service, tracking, run_id):
    batch = "mlflow/runs/log-batch"
    refused(api(service, "POST", batch, json={"run_id": run_id, "params": ["x"]}),
            "Invalid value \"x\" for parameter 'params[0]' supplied: " + HINT.format("str"))
    refused(api(service, "POST", batch, json={"run_id": run_id, "metrics": "foo"}),
            "Invalid value \"foo\" for parameter 'metrics' supplied: " + HINT.format("str"))
    refused(api(service, "POST", batch, json={"run_id": run_id, "tags": [{"key": "k", "value": 5}]}),
            "Invalid value 5 for parameter 'tags[0].value' supplied: " + HINT.format("int"))
    refused(api(service, "POST", batch, json={"run_id": run_id, "metrics": [{"key": "m", "value": 1, "step": 0}]}),
            "Missing value for required parameter 'metrics[0].timestamp'. See the API docs for more information "
            "about request parameters.")
    refused(api(service, "POST", "mlflow/runs/log-inputs", json={"run_id": run_id, "datasets": [["x"]]}))
    refused(api(service, "POST", "mlflow/runs/log-model", json={"run_id": run_id, "model_json": 5}),
            "Invalid value 5 for parameter 'model_json' supplied: " + HINT.format("int"))
    refused(api(service, "POST", "mlflow/runs/set-tag", json={"run_id": run_id, "key": "k", "value": 123}),
            "Invalid value 123 for parameter 'value' supplied: " + HINT.format("int"))
    refused(api(service, "POST", "mlflow/registered-models/create", json={"name": 123}),
            "Invalid value 123 for parameter 'name' supplied: " + HINT.format("int"))
    assert tracking.get_run(run_id).data.tags.get("k") is None  # nothing written by a refused request


@pytest.mark.skipif(not MLFLOW3, reason="logged models are MLflow 3")
def test_logged_model_fields_of_the_wrong_type(service, tracking):
    exp = tracking.create_experiment(unique("lm-types"))
    refused(api(service, "POST", "mlflow/logged-models", json={"experiment_id": exp, "params": [{"key": 1}]}),
            "Invalid value 1 for parameter 'params[0].key' supplied: " + HINT.format("int"))
    model = tracking.create_logged_model(exp)
    refused(api(service, "PATCH", f"mlflow/logged-models/{model.model_id}/tags", json={"tags": "x"}),
            "Invalid value \"x\" for parameter 'tags' supplied: " + HINT.format("str"))


def test_numbers_beyond_their_fields(service, tracking, run_id):
    """Every double is a metric value; integers beyond 64 bits and NaN are not timestamps or steps."""
    values = (1e308, -1e308, 1e-320, 5e-324, float("inf"), -float("inf"), float("nan"))
    for i, value in enumerate(values):
        tracking.log_metric(run_id, "extreme", value, timestamp=i, step=i)
    stored = [m.value for m in tracking.get_metric_history(run_id, "extreme")]
    assert stored[:-1] == list(values[:-1]) and stored[-1] != stored[-1]  # NaN
    assert tracking.get_run(run_id).data.metrics["extreme"] != tracking.get_run(run_id).data.metrics["extreme"]
    big = 12345678901234567890123456789012345678
    refused(api(service, "POST", "mlflow/runs/log-metric",
                json={"run_id": run_id, "key": "m", "value": 1, "timestamp": big}),
            f"Invalid value {big} for parameter 'timestamp' supplied: " + HINT.format("int"))
    refused(api(service, "POST", "mlflow/runs/update", data=f'{{"run_id": "{run_id}", "end_time": NaN}}',
                headers={"Content-Type": "application/json"}),
            "Invalid value NaN for parameter 'end_time' supplied: " + HINT.format("float"))


def test_bodies_no_parser_should_recurse_into(service, run_id):
    deep = "[" * 100_000 + "]" * 100_000
    for route in ("mlflow/runs/log-batch", "mlflow/experiments/create", "mlflow/registered-models/create"):
        assert "nested too deeply" in refused(api(service, "POST", route, data=deep))
    refused(api(service, "POST", "mlflow/registered-models/create", data='{"name": "\\ud800"}'),
            "Invalid value \"\\ud800\" for parameter 'name' supplied: it is not valid Unicode (a lone surrogate).")
    refused(api(service, "POST", "mlflow/runs/update", json={"run_id": run_id, "run_name": "x" * 1_000_000}),
            "'run_name' exceeds the maximum length of 8000 characters")


def test_webhook_url_that_cannot_be_parsed(service):
    hook = {"name": unique("hook"), "url": "http://[invalid", "events": [{"entity": "MODEL_VERSION", "action": "CREATED"}]}
    assert refused(api(service, "POST", "mlflow/webhooks", json=hook)).startswith("Invalid webhook URL 'http://[invalid'")


def test_multipart_with_an_unknown_upload_id(service, run_id, tracking):
    folder = f"{tracking.get_run(run_id).info.experiment_id}/{run_id}/artifacts"
    body = {"path": "/local/big.bin", "upload_id": "no-such-upload"}
    parts = [{"part_number": 1, "etag": "x"}]
    complete = api(service, "POST", f"mlflow-artifacts/mpu/complete/{folder}", json={**body, "parts": parts})
    refused(complete, code="RESOURCE_DOES_NOT_EXIST", status=404)
    abort = api(service, "POST", f"mlflow-artifacts/mpu/abort/{folder}", json=body)
    assert abort.status_code == 200  # aborting what is gone already is done


def test_long_param_values_are_cut_as_mlflows_server_cuts_them(tracking, run_id):
    """MLflow's server truncates param values over 6,000 characters unless its environment sets
    MLFLOW_TRUNCATE_LONG_VALUES=false (then it refuses them: tests/unit/test_request_parsing.py)."""
    tracking.log_param(run_id, "long", "x" * 7000)
    assert tracking.get_run(run_id).data.params["long"] == "x" * 6000
