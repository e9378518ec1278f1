"""MLflow 3 logged models end to end: the real 3.x client against `mlreg serve`."""

from __future__ import annotations

import uuid

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException

pytestmark = pytest.mark.skipif(int(mlflow.__version__.split(".")[0]) < 3, reason="logged models are MLflow 3")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def api(service, method: str, route: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{service.uri()}/api/2.0/mlflow/{route}", timeout=60,
                            headers={"Authorization": f"Bearer {service.token}"}, **kwargs)


@pytest.fixture
def experiment_id(tracking):
    return tracking.create_experiment(unique("lm"))


def test_create_get_finalize_tags_params_delete(tracking, experiment_id):
    run = tracking.create_run(experiment_id)
    model = tracking.create_logged_model(experiment_id, name="clf", source_run_id=run.info.run_id,
                                         tags={"t": "1"}, params={"lr": "0.1"}, model_type="sklearn")
    assert model.model_id.startswith("m-") and model.status == "PENDING"
    assert model.artifact_location == f"mlflow-artifacts:/{experiment_id}/models/{model.model_id}/artifacts"
    assert tracking.finalize_logged_model(model.model_id, "READY").status == "READY"
    tracking.set_logged_model_tags(model.model_id, {"u": "2"})
    tracking.delete_logged_model_tag(model.model_id, "t")
    tracking.log_model_params(model.model_id, {"epochs": "3"})
    got = tracking.get_logged_model(model.model_id)
    assert (got.name, got.source_run_id, got.model_type) == ("clf", run.info.run_id, "sklearn")
    assert got.tags == {"u": "2"} and got.params == {"lr": "0.1", "epochs": "3"}
    with pytest.raises(MlflowException) as no_tag:
        tracking.delete_logged_model_tag(model.model_id, "never-set")
    assert no_tag.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    tracking.delete_logged_model(model.model_id)
    with pytest.raises(MlflowException) as gone:
        tracking.get_logged_model(model.model_id)
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as bad_name:
        tracking.create_logged_model(experiment_id, name="a/b")
    assert bad_name.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as no_exp:
        tracking.create_logged_model("999999")
    assert no_exp.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_search_filters_orders_pages_and_answers_empty_experiments(tracking, experiment_id):
    assert tracking.search_logged_models([experiment_id]) == []
    ids = [tracking.create_logged_model(experiment_id, name=f"m{i}", tags={"even": str(i % 2 == 0)}).model_id
           for i in range(3)]
    tracking.finalize_logged_model(ids[1], "READY")
    assert [m.model_id for m in tracking.search_logged_models([experiment_id])] == ids[::-1]  # newest first
    assert [m.name for m in tracking.search_logged_models([experiment_id], filter_string="name = 'm1'")] == ["m1"]
    ready = tracking.search_logged_models([experiment_id], filter_string="status = 'READY'")
    assert [m.model_id for m in ready] == [ids[1]]
    by_tag = tracking.search_logged_models([experiment_id], filter_string="tags.even = 'True'",
                                           order_by=[{"field_name": "name", "ascending": True}])
    assert [m.name for m in by_tag] == ["m0", "m2"]
    page1 = tracking.search_logged_models([experiment_id], max_results=2)
    page2 = tracking.search_logged_models([experiment_id], max_results=2, page_token=page1.token)
    assert [m.model_id for m in [*page1, *page2]] == ids[::-1] and not page2.token
    tracking.delete_logged_model(ids[0])
    assert len(tracking.search_logged_models([experiment_id])) == 2


def test_log_model_outside_a_run_lists_artifacts_and_loads(tracking, service, experiment_id):
    class Double(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [2 * x for x in model_input]

    mlflow.set_experiment(experiment_id=experiment_id)
    info = mlflow.pyfunc.log_model(name="doubler", python_model=Double())
    listing = api(service, "GET", f"logged-models/{info.model_id}/artifacts/directories").json()
    assert listing["root_uri"] == f"mlflow-artifacts:/{experiment_id}/models/{info.model_id}/artifacts"
    assert "MLmodel" in {f["path"] for f in listing["files"]}
    assert list(mlflow.pyfunc.load_model(f"models:/{info.model_id}").predict([1, 2])) == [2, 4]
    assert tracking.get_logged_model(info.model_id).status == "READY"
    missing = api(service, "GET", "logged-models/m-nope/artifacts/directories")
    assert (missing.status_code, missing.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
