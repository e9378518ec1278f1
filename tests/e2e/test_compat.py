"""MLflow compatibility found by others' code (issue 14): one regression test per cause, with the real
MLflow client (2.x or 3.x) or raw HTTP as MLflow's own REST tests send it, against `mlreg serve`.
Expected answers are those of `mlflow server` 3.17.2 (mlflow/server/handlers.py)."""

from __future__ import annotations

import re
import uuid

import mlflow
import pytest
import requests
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

MLFLOW3 = int(mlflow.__version__.split(".")[0]) >= 3
LOCAL_BUCKET = "mlreg-local"  # `mlreg serve`'s default bucket


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def call(service, method: str, route: str, api: str = "2.0", **kwargs) -> requests.Response:
    return requests.request(method, f"{service.uri()}/api/{api}/mlflow/{route}", timeout=60,
                            headers={"Authorization": f"Bearer {service.token}"}, **kwargs)


def create_version(service, **body) -> requests.Response:
    return call(service, "POST", "model-versions/create", json=body)


@pytest.fixture
def model(tracking):
    name = unique("compat")
    tracking.create_registered_model(name)
    return name


# ---- cause 1: versions whose source mlreg cannot copy ----------------------------------------------

def test_sources_outside_the_project_register_as_given_without_a_package(tracking, service, model):
    """Teams with models in their own buckets register them: the source and run are recorded as given
    (MLflow does not look the run up), the version is READY with its semver, has no package, and
    get-download-uri answers the source, as MLflow's does."""
    run_id = uuid.uuid4().hex  # a run mlreg does not hold
    mv = tracking.create_model_version(model, "s3://team-bucket/churn/model", run_id, tags={"team": "growth"})
    assert (mv.source, mv.run_id, mv.status, mv.version) == ("s3://team-bucket/churn/model", run_id, "READY", "1")
    assert mv.tags == {"team": "growth", "mlreg.version": "1.0.0", "mlreg.package": "external"}
    assert tracking.get_model_version_download_uri(model, "1") == "s3://team-bucket/churn/model"
    # A run the source names is not looked up either (MLflow's test_model_registry registers runs:/run_id/...).
    other = f"runs:/{run_id}/model"
    assert create_version(service, name=model, source=other, run_id=run_id).status_code == 200
    assert tracking.get_model_version_download_uri(model, "2") == other
    # A copy of an external version is external too, and downloads from the same place.
    copy = tracking.copy_model_version(f"models:/{model}/1", model)
    assert (copy.source, copy.run_id, copy.tags["mlreg.package"]) == (f"models:/{model}/1", run_id, "external")
    assert tracking.get_model_version_download_uri(model, copy.version) == "s3://team-bucket/churn/model"
    assert tracking.get_model_version_by_alias(model, "1.2.0").version == copy.version  # semvers as usual
    for kind in ("gs://b/m", "dbfs:/models/m", "wasbs://c@acct.blob.core.windows.net/m", "rtifacts:/1/2/artifacts"):
        answer = create_version(service, name=model, source=kind)
        assert answer.status_code == 200 and answer.json()["model_version"]["source"] == kind, answer.text
    tracking.delete_model_version(model, "1")  # no package to delete; the version goes
    assert "1" not in {v.version for v in tracking.search_model_versions(f"name = '{model}'")}


def test_the_package_marker_belongs_to_the_server(tracking, model, source_artifacts):
    run, path = source_artifacts
    # A version copied from another registry brings the tag: it is replaced by what this source is.
    mv = tracking.create_model_version(model, path, run.info.run_id, tags={"mlreg.package": "external"})
    assert "mlreg.package" not in mv.tags
    assert re.fullmatch(r"mlflow-artifacts:/packages/[0-9a-f]{32}/1\.0\.0~[0-9a-f]{8}",
                        tracking.get_model_version_download_uri(model, "1"))
    for change in (lambda: tracking.set_model_version_tag(model, "1", "mlreg.package", "x"),
                   lambda: tracking.delete_model_version_tag(model, "1", "mlreg.package")):
        with pytest.raises(MlflowException) as fixed:
            change()
        assert fixed.value.error_code == "INVALID_PARAMETER_VALUE"


def test_sources_in_the_project_storage_keep_their_package(tracking, model, source_artifacts):
    """Also as an s3:// URI of the project's own artifacts: copied, so the version loads from its package."""
    run, path = source_artifacts
    key = path.split(":", 1)[1].strip("/")
    mv = tracking.create_model_version(model, f"s3://{LOCAL_BUCKET}/projects/default/artifacts/{key}", run.info.run_id)
    assert "mlreg.package" not in mv.tags and tracking.get_model_version(model, "1").status == "READY"
    local = mlflow.artifacts.download_artifacts(f"models:/{model}/1")
    assert open(f"{local}/weights.txt").read() == "w"
    # Another project's keys are never read: that source is external.
    other = tracking.create_model_version(model, f"s3://{LOCAL_BUCKET}/projects/other/artifacts/{key}")
    assert other.tags["mlreg.package"] == "external"


@pytest.mark.parametrize("source, run_id, message", [
    ("/tmp/model", "RUN", "To use a local path as a model version source, the run_id request parameter"),
    ("file:///tmp/model", None, "To use a local path as a model version source"),
    ("file://10.1.2.3/path", "RUN", "is not a valid remote uri"),
    ("https://host/model", "RUN", "'source' cannot use the 'https' scheme"),
    ("mlflow-artifacts://host:9000/models", "RUN", "'source' cannot use the 'mlflow-artifacts' scheme"),
    ("s3://bucket/a/../../x", "RUN", "If supplying a source as an http, https,"),
    ("dbfs:/RUN/artifacts/a%3f/../../../", "RUN", "Invalid model version source"),
    ("s3a://b/x%00", "RUN", "If supplying a source as an http, https,"),
    ("runs:/OTHER/model", "RUN", "The run_id request parameter must identify the resource that contains the source"),
    ("mlflow-artifacts:/1/nowhere/artifacts", "RUN", "The run_id request parameter must identify"),
    ("mlflow-artifacts:/1/nowhere/artifacts", None, "The run_id request parameter must identify"),
])
def test_sources_mlflow_refuses_are_refused_with_its_words(service, model, source_artifacts, source, run_id, message):
    run = source_artifacts[0].info.run_id
    body = {"name": model, "source": source.replace("RUN", run)}
    if run_id:
        body["run_id"] = run
    answer = create_version(service, **body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE" and message in answer.json()["message"]


def test_a_model_version_source_must_match_its_run_and_model_ids(tracking, service, model, source_artifacts):
    run, path = source_artifacts
    tracking.create_model_version(model, path, run.info.run_id)
    mismatch = create_version(service, name=model, source=f"models:/{model}/1", run_id=uuid.uuid4().hex)
    assert mismatch.status_code == 400 and "must match the referenced model version" in mismatch.json()["message"]
    assert create_version(service, name=model, source=f"models:/{model}/1").status_code == 200


@pytest.fixture
def source_artifacts(tracking):
    exp = tracking.create_experiment(unique("compat-src"))
    run = tracking.create_run(exp)
    tracking.log_text(run.info.run_id, "w", "model/weights.txt")
    return run, f"{run.info.artifact_uri}/model"


@pytest.mark.skipif(not MLFLOW3, reason="logged models are MLflow 3")
def test_external_source_of_a_logged_model(tracking, service, model):
    exp = tracking.create_experiment(unique("compat-lm"))
    logged = tracking.create_logged_model(exp)
    mv = tracking.create_model_version(model, "s3://team-bucket/m", model_id=logged.model_id)
    assert mv.tags["mlreg.package"] == "external"
    got = call(service, "GET", "model-versions/get", params={"name": model, "version": mv.version}).json()
    assert got["model_version"]["model_id"] == logged.model_id  # (the client's ModelVersion drops it)
    assert model in tracking.get_logged_model(logged.model_id).tags["mlflow.modelVersions"]
    with pytest.raises(MlflowException) as missing:
        tracking.create_model_version(model, "s3://team-bucket/m", model_id="m-" + "0" * 32)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


# ---- cause 4: logged-model metrics --------------------------------------------------------------------

@pytest.mark.skipif(not MLFLOW3, reason="logged models are MLflow 3")
def test_metrics_logged_with_a_model_id_belong_to_the_logged_model(tracking):
    exp = tracking.create_experiment(unique("compat-metrics"))
    run = tracking.create_run(exp)
    first, second = tracking.create_logged_model(exp), tracking.create_logged_model(exp)
    tracking.log_metric(run.info.run_id, "metric", 0.5, timestamp=123456789, step=1, dataset_name="name",
                        dataset_digest="digest", model_id=first.model_id)
    assert tracking.get_logged_model(first.model_id).metrics == [
        Metric(key="metric", value=0.5, timestamp=123456789, step=1, model_id=first.model_id,
               dataset_name="name", dataset_digest="digest", run_id=run.info.run_id)]
    assert tracking.get_run(run.info.run_id).data.metrics == {"metric": 0.5}  # the run's metric too
    tracking.log_batch(run.info.run_id, metrics=[
        Metric("metric", 0.9, 2, 0, model_id=second.model_id, dataset_name="other", dataset_digest="d2"),
        Metric("metric", 0.1, 3, 0, model_id=second.model_id, dataset_name="name", dataset_digest="digest")])
    search = tracking.search_logged_models
    assert [m.model_id for m in search([exp], datasets=[{"dataset_name": "name", "dataset_digest": "digest"}])] == [
        second.model_id, first.model_id]
    assert [m.model_id for m in search([exp], datasets=[{"dataset_name": "other"}])] == [second.model_id]
    assert [m.model_id for m in search([exp], filter_string="metrics.metric > 0.4",
                                       datasets=[{"dataset_name": "name"}])] == [first.model_id]
    assert [m.model_id for m in search([exp], filter_string="metrics.metric > 0.4")] == [second.model_id,
                                                                                         first.model_id]
    by_newest = search([exp], order_by=[{"field_name": "metrics.metric", "ascending": True}])
    assert [m.model_id for m in by_newest] == [second.model_id, first.model_id]  # newest values 0.1 and 0.5
    on_other = search([exp], order_by=[{"field_name": "metrics.metric", "ascending": False, "dataset_name": "other"}])
    assert [m.model_id for m in on_other] == [second.model_id, first.model_id]  # no value on it: last
    with pytest.raises(MlflowException) as unknown:
        tracking.log_metric(run.info.run_id, "m", 1.0, model_id="m-" + "0" * 32)
    assert unknown.value.error_code == "RESOURCE_DOES_NOT_EXIST"


@pytest.mark.skipif(not MLFLOW3, reason="logged models are MLflow 3")
def test_metrics_of_a_run_that_logged_a_model_show_on_the_model(tracking):
    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    mlflow.set_experiment(unique("compat-fluent"))
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo())
        mlflow.log_metric("accuracy", 0.93)  # the client attaches the model the run produced at this step
    assert [(m.key, m.value) for m in mlflow.get_logged_model(info.model_id).metrics] == [("accuracy", 0.93)]


# ---- cause 7: webhook URLs without DNS ---------------------------------------------------------------

@pytest.mark.skipif(not hasattr(mlflow.MlflowClient, "create_webhook"), reason="webhooks are MLflow 3.3+")
def test_webhook_urls_are_not_resolved_until_delivery(tracking):
    """This machine has no DNS: a public-looking host is accepted at create and update; the address
    check happens when delivering (here: the name does not resolve, so the test delivery fails)."""
    from mlflow.entities.webhook import WebhookAction, WebhookEntity, WebhookEvent

    created = WebhookEvent(WebhookEntity.MODEL_VERSION, WebhookAction.CREATED)
    hook = tracking.create_webhook(unique("hook"), "https://hooks.example.invalid/mlflow", [created])
    updated = tracking.update_webhook(hook.webhook_id, url="https://deploy.example.invalid/x")
    assert updated.url == "https://deploy.example.invalid/x"
    result = tracking.test_webhook(hook.webhook_id)
    assert not result.success and "Cannot resolve webhook URL hostname" in result.error_message
    # Private addresses are refused unless `mlreg serve --webhook-allow-private-ips` (this service: not).
    for url, why in (("https://127.0.0.1/x", "non-public"), ("https://10.1.2.3/x", "non-public"),
                     ("https://127.1/x", "not a canonical IP address literal"),
                     ("http://[invalid", "Invalid webhook URL")):
        with pytest.raises(MlflowException, match=why) as refused:
            tracking.create_webhook(unique("hook"), url, [created])
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    named = tracking.create_webhook(unique("hook"), "https://localhost:9/x", [created])  # a name: checked later
    result = tracking.test_webhook(named.webhook_id)
    assert not result.success and "non-public" in result.error_message
    for hook_id in (hook.webhook_id, named.webhook_id):
        tracking.delete_webhook(hook_id)


# ---- cause 9: trace and dataset lists -----------------------------------------------------------------

def test_trace_and_dataset_lists_answer_empty(tracking, service):
    exp = tracking.create_experiment(unique("compat-traces"))
    assert tracking.search_traces(experiment_ids=[exp]) == []  # 3.x: traces/search; 2.x: GET traces
    assert call(service, "GET", "traces", params={"experiment_ids": exp}).json() == {}
    missing = call(service, "GET", "traces")
    assert missing.status_code == 400 and "Missing value for required parameter 'experiment_ids'" in missing.text
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp}}
    assert call(service, "POST", "traces/search", "3.0", json={"locations": [location]}).json() == {}
    too_many = call(service, "POST", "traces/search", "3.0", json={"locations": [location], "max_results": 501})
    assert too_many.status_code == 400
    assert call(service, "POST", "datasets/search", "3.0", json={"experiment_ids": [exp]}).json() == {}
    if MLFLOW3:
        from mlflow.genai.datasets import search_datasets

        assert list(search_datasets(experiment_ids=[exp])) == []
