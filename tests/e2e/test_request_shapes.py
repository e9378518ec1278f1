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


def api(service, method: str, route: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{service.uri()}/api/2.0/{route}", timeout=60,
                            headers={"Authorization": f"Bearer {service.token}"}, **kwargs)


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
