"""Reading a request into its route's message as MLflow's server does: where fields come from (query
string, JSON body, path), their JSON types, MLflow's limits and MLflow's exact wording. The expected
messages are what `mlflow server` 3.17.2 (SQLite) answered to the same requests."""

from __future__ import annotations

import base64
import json

import pytest
from botocore.exceptions import ClientError

from shared import http
from shared.errors import MlflowError
from shared.registry import messages as registry
from shared.routes import ROUTES
from shared.tracking import messages as tracking

RUN = "0123456789abcdef0123456789abcdef"
DOCS = " See the API docs for more information about request parameters."


def hint(kind: str) -> str:
    return f" Hint: Value was of type '{kind}'." + DOCS


# What MLflow 3.17.2's server answers (probed), message for message.
MLFLOW_ANSWERS = [
    (tracking.SetTag, {"run_id": RUN, "key": "k", "value": 123},
     "Invalid value 123 for parameter 'value' supplied: " + hint("int")),
    (tracking.SetTag, {"run_id": RUN, "key": 5, "value": "v"},
     "Invalid value 5 for parameter 'key' supplied: " + hint("int")),
    (tracking.SetTag, {"run_id": RUN, "value": "v"}, "Missing value for required parameter 'key'." + DOCS),
    (tracking.SetTag, {"run_id": RUN, "key": "", "value": "v"}, "Missing value for required parameter 'key'." + DOCS),
    (tracking.LogBatch, {"run_id": RUN, "metrics": "foo"},
     "Invalid value \"foo\" for parameter 'metrics' supplied: " + hint("str")),
    (tracking.LogBatch, {"run_id": RUN, "metrics": [{"key": "m", "value": 1, "step": 0}]},
     "Missing value for required parameter 'metrics[0].timestamp'." + DOCS),
    (tracking.LogBatch, {"run_id": RUN, "params": [{"key": "../x", "value": "a"}]},
     "Invalid value \"../x\" for parameter 'params[0].key' supplied: Names may be treated as files in certain cases, "
     "and must not resolve to other names when treated as such. This name would resolve to '../x'"),
    (tracking.LogBatch, {"run_id": RUN, "params": [{"key": "k" * 251}]},
     "'Param key' exceeds the maximum length of 250 characters"),
    (tracking.LogBatch, {"run_id": RUN, "tags": [{"key": "k" * 251}]},
     "'tags[0].key' exceeds the maximum length of 250 characters"),
    (tracking.LogBatch, {"run_id": RUN, "metrics": [{"key": "k" * 251, "value": 1, "timestamp": 1}]},
     "'Metric name' exceeds the maximum length of 250 characters"),
    (tracking.LogBatch, {"run_id": RUN, "params": [{"key": "d", "value": "a"}, {"key": "d", "value": "b"}]},
     "Duplicate parameter keys have been submitted: ['d']. Please ensure the request contains only one param "
     "value per param key."),
    (tracking.LogBatch, {"run_id": RUN, "metrics": [{"key": f"m{i}", "value": 1, "timestamp": 1} for i in range(1001)]},
     "A batch logging request can contain at most 1000 metrics. Got 1001 metrics. Please split up metrics across "
     "multiple requests and try again."),
    (tracking.LogMetric, {"run_id": RUN, "key": "m", "value": 1.0}, "Missing value for required parameter 'timestamp'."
     + DOCS),
    (tracking.LogMetric, {"run_id": RUN, "key": "m", "value": 1.0, "timestamp": "abc"},
     "Invalid value \"abc\" for parameter 'timestamp' supplied: " + hint("str")),
    (tracking.LogMetric, {"run_id": 31, "key": "m", "value": 1.0, "timestamp": 1},
     "Invalid value 31 for parameter 'run_id' supplied: " + hint("int")),
    (tracking.CreateRun, {"experiment_id": "1", "start_time": "abc"},
     "Invalid value \"abc\" for parameter 'start_time' supplied: " + hint("str")),
    (tracking.CreateRun, {"experiment_id": 5}, "Invalid value 5 for parameter 'experiment_id' supplied: " + hint("int")),
    (tracking.UpdateRun, {"run_id": RUN, "end_time": float("nan")},
     "Invalid value NaN for parameter 'end_time' supplied: " + hint("float")),
    (tracking.LogModel, {"run_id": RUN, "model_json": 5}, "Invalid value 5 for parameter 'model_json' supplied: "
     + hint("int")),
    (tracking.LogModel, {"run_id": RUN, "model_json": "{"}, "Malformed model info. \n { \n is not a valid JSON."),
    (tracking.CreateExperiment, {"name": 123}, "Invalid value 123 for parameter 'name' supplied: " + hint("int")),
    (tracking.CreateExperiment, {"name": "x" * 501}, "'name' exceeds the maximum length of 500 characters"),
    (tracking.CreateExperiment, {}, "Missing value for required parameter 'name'." + DOCS),
    (tracking.CreateExperiment, {"name": "e", "artifact_location": 9.0},
     "Invalid value 9.0 for parameter 'artifact_location' supplied: " + hint("float")),
    (tracking.CreateExperiment, {"name": "e", "tags": "5"}, "Invalid value \"5\" for parameter 'tags' supplied: "
     + hint("str")),
    (tracking.SetExperimentTag, {"experiment_id": "1", "key": "k", "value": "x" * 20001},
     "'value' exceeds the maximum length of 20000 characters"),
    (tracking.ExperimentRef, {"experiment_id": "abc"},
     "Invalid experiment ID 'abc'. Experiment ID must be a valid integer."),
    (tracking.SearchRuns, {"experiment_ids": "1"}, "Invalid value \"1\" for parameter 'experiment_ids' supplied: "
     + hint("str")),
    (tracking.SearchRuns, {"max_results": "abc"}, "Invalid value \"abc\" for parameter 'max_results' supplied: "
     + hint("str")),
    (tracking.SearchRuns, {"filter": 5}, "Invalid value 5 for parameter 'filter' supplied: " + hint("int")),
    (tracking.SearchRuns, {"max_results": 0},
     "Invalid value 0 for parameter 'max_results' supplied. It must be a positive integer"),
    (tracking.SearchExperiments, {"max_results": 50001},
     "Invalid value 50001 for parameter 'max_results' supplied. It must be at most 50000"),
    (tracking.LogInputs, {"run_id": RUN, "datasets": [{"dataset": {"name": "d", "digest": "x" * 37}}]},
     "'digest' exceeds the maximum length of 36 characters"),
    (tracking.LogInputs, {"run_id": RUN, "datasets": [{"dataset": {"name": "d" * 501, "digest": "x"}}]},
     "'name' exceeds the maximum length of 500 characters"),
    (tracking.LogInputs, {"run_id": RUN, "datasets": [{"dataset": {"name": "d", "digest": "x"},
                                                       "tags": [{"key": "k" * 256}]}]},
     "'key' exceeds the maximum length of 255 characters"),
    (tracking.LogInputs, {"run_id": RUN, "datasets": [{"dataset": {"name": "d", "digest": "x"},
                                                       "tags": [{"key": "k", "value": "v" * 501}]}]},
     "'value' exceeds the maximum length of 500 characters"),
    (tracking.GetMetricHistoryBulkInterval, {"run_ids": [RUN], "metric_key": "m", "max_results": "0"},
     "max_results must be between 1 and 2500." + DOCS),
    (tracking.GetMetricHistoryBulkInterval, {"run_ids": [RUN], "metric_key": "m", "start_step": "x", "end_step": "1"},
     "Invalid value \"x\" for parameter 'start_step' supplied: " + hint("str")),
    (tracking.CreateLoggedModel, {"experiment_id": "1", "name": "a/b"},
     "Invalid model name ('a/b') provided. Model name must be a non-empty string and cannot contain the following "
     "characters: ('/', ':', '.', '%', '\"', \"'\")"),
    (tracking.CreateLoggedModel, {"experiment_id": 5}, "Invalid value 5 for parameter 'experiment_id' supplied: "
     + hint("int")),
    (tracking.CreateLoggedModel, {}, "Missing value for required parameter 'experiment_id'." + DOCS),
    (registry.CreateRegisteredModel, {"name": 123}, "Invalid value 123 for parameter 'name' supplied: " + hint("int")),
    (registry.CreateRegisteredModel, {"name": ""}, "Missing value for required parameter 'name'." + DOCS),
    (registry.CreateRegisteredModel, {"name": "m", "tags": "x"}, "Invalid value \"x\" for parameter 'tags' supplied: "
     + hint("str")),
    (registry.CreateRegisteredModel, {"name": "m", "tags": [{"key": "k", "value": "v" * 100001}]},
     "'value' exceeds the maximum length of 100000 characters"),
    (registry.SetRegisteredModelTag, {"name": "m", "key": "k" * 251, "value": "v"},
     "'key' exceeds the maximum length of 250 characters"),
    (registry.UpdateRegisteredModel, {"name": "m", "description": 5},
     "Invalid value 5 for parameter 'description' supplied: " + hint("int")),
    (registry.VersionRef, {"name": "m", "version": "abc"}, "Parameter 'version' must be an integer, got 'abc'."),
    (registry.TransitionStage, {"name": "m", "version": 1, "stage": "Staging"},
     "Invalid value 1 for parameter 'version' supplied: " + hint("int")),
    (registry.TransitionStage, {"name": "m", "version": "1", "stage": "bogus"},
     "Invalid Model Version stage: bogus. Value must be one of None, Staging, Production, Archived."),
    (registry.SetRegisteredModelAlias, {"name": "m", "alias": "bad alias", "version": "1"},
     "Invalid alias name: 'bad alias'. Names may only contain alphanumerics, underscores (_), and dashes (-)."),
    (registry.SetRegisteredModelAlias, {"name": "m", "alias": "a" * 256, "version": "1"},
     "'Registered model alias name' exceeds the maximum length of 255 characters"),
    (registry.SetRegisteredModelAlias, {"name": "m", "alias": "v1", "version": "1"},
     "Version alias name 'v1' is reserved."),
    (registry.SearchRegisteredModels, {"max_results": "1001"},
     "Invalid value \"1001\" for parameter 'max_results' supplied: " + hint("str")),
    (registry.SearchModelVersions, {"max_results": "200001"},
     "Invalid value \"200001\" for parameter 'max_results' supplied: " + hint("str")),
    (registry.GetLatestVersions, {"name": "m", "stages": ["bogus"]},
     "Invalid Model Version stage: bogus. Value must be one of None, Staging, Production, Archived."),
    (registry.CreateWebhook, {"name": "w", "url": 5, "events": []},
     "Invalid value 5 for parameter 'url' supplied: " + hint("int")),
    (registry.CreateWebhook, {"name": "w", "url": "https://example.com/x", "events": "x"},
     "Invalid value \"x\" for parameter 'events' supplied: " + hint("str")),
    (registry.ListWebhooks, {"max_results": "abc"}, "Invalid value \"abc\" for parameter 'max_results' supplied: "
     + hint("str")),
]


@pytest.mark.parametrize("message,fields,expected", MLFLOW_ANSWERS,
                         ids=[f"{m.__name__}-{i}" for i, (m, _, _) in enumerate(MLFLOW_ANSWERS)])
def test_refusals_are_worded_as_mlflows_server_words_them(message, fields, expected):
    with pytest.raises(MlflowError) as refused:
        message.parse(fields)
    assert (refused.value.status, refused.value.error_code) == (400, "INVALID_PARAMETER_VALUE")
    assert refused.value.message == expected


def test_values_are_taken_as_protobuf_json_sends_them():
    metric = tracking.LogMetric.parse({"run_uuid": RUN, "key": "m", "value": "NaN", "timestamp": "17", "step": 2.0})
    assert (metric.run_id, metric.timestamp, metric.step) == (RUN, 17, 2) and metric.value != metric.value
    assert tracking.SearchRuns.parse({"run_view_type": 3}).run_view_type == "ALL"
    assert registry.TransitionStage.parse({"name": "m", "version": "2", "stage": "production",
                                           "archive_existing_versions": "TRUE"}).model_dump() == {
        "name": "m", "version": 2, "stage": "Production", "archive_existing_versions": True}
    assert tracking.RunTag.parse({"key": "k", "value": None}).value == ""  # null is an absent field


# ---- through the dispatcher --------------------------------------------------------------------------------

def route(method: str, path: str):
    return next(r for r in ROUTES if r.method == method and r.path.endswith(path))


def fields_of(method: str, path: str, query=None, body: bytes = b"", path_params=None) -> dict:
    request = http.Request(project="p", role=http.Role.ADMIN, token_id="t", method=method,
                           path_params={"project": "p", **(path_params or {})}, query=query or {}, headers={},
                           body=body, base_url="http://localhost")
    return request.fields(http._resolve(route(method, path).message))


def test_the_declared_type_decides_list_or_scalar_in_a_query_string():
    assert fields_of("GET", "/experiments/search", {"order_by": ["name"], "max_results": ["5", "6"]}) == {
        "order_by": ["name"], "max_results": "5"}  # the first of repeated scalars, as MLflow's server takes it
    assert fields_of("GET", "/metrics/get-history-bulk-interval", {"run_ids": [RUN], "metric_key": ["m"]}) == {
        "run_ids": [RUN], "metric_key": "m"}


def test_a_get_reads_its_body_only_without_a_query_string():
    body = json.dumps({"name": "from-body"}).encode()
    assert fields_of("GET", "/registered-models/get", body=body) == {"name": "from-body"}
    assert fields_of("GET", "/registered-models/get", {"name": ["from-query"]}, body) == {"name": "from-query"}


def test_path_parameters_win_over_fields_of_the_same_name():
    assert fields_of("PATCH", "/logged-models/{model_id}", body=b'{"model_id": "other", "status": 2}',
                     path_params={"model_id": "m-1"}) == {"model_id": "m-1", "status": 2}


def test_bodies_that_are_not_a_json_object():
    assert fields_of("POST", "/runs/set-tag", body=json.dumps(json.dumps({"key": "k"})).encode()) == {"key": "k"}
    for body, why in ((b"[" * 100_000 + b"]" * 100_000, "nested too deeply"), (b"[1]", "expected an object"),
                      (b"\xff", "Malformed JSON"), (b"1" * 5000, "Malformed JSON")):
        with pytest.raises(MlflowError, match=why):
            fields_of("POST", "/runs/set-tag", body=body)
    with pytest.raises(MlflowError, match="Batched logging API requests must be at most 1000000 bytes"):
        fields_of("POST", "/runs/log-batch", body=b" " * 1_000_001)


def dispatch(method: str, path: str, body: dict) -> dict:
    r = route(method, path)
    event = {"resource": r.resource, "httpMethod": method, "path": path, "pathParameters": {"project": "p"},
             "body": base64.b64encode(json.dumps(body).encode()).decode(), "isBase64Encoded": True,
             "requestContext": {"authorizer": {"project": "p", "role": "write", "token_id": "t"}}}
    response = http.make_dispatcher(r.function)(event)
    return {"status": response["statusCode"], **json.loads(response["body"])}


def test_long_param_values_are_refused_when_truncation_is_off(aws, monkeypatch):
    """MLflow's server cuts param and run tag values to 6,000 and 8,000 characters, or refuses them
    when its environment sets MLFLOW_TRUNCATE_LONG_VALUES=false; mlreg reads the same variable."""
    from shared.tracking import experiments

    experiments.insert("p", "Default", {}, experiment_id="0")
    run = dispatch("POST", "/runs/create", {})["run"]["info"]["run_id"]
    assert dispatch("POST", "/runs/log-parameter", {"run_id": run, "key": "a", "value": "x" * 6001})["status"] == 200
    monkeypatch.setenv("MLFLOW_TRUNCATE_LONG_VALUES", "false")
    assert dispatch("POST", "/runs/log-parameter", {"run_id": run, "key": "b", "value": "x" * 6001}) == {
        "status": 400, "error_code": "INVALID_PARAMETER_VALUE",
        "message": "'Param value' exceeds the maximum length of 6000 characters"}
    assert dispatch("POST", "/runs/set-tag", {"run_id": run, "key": "t", "value": "x" * 8001})["message"] == (
        "'value' exceeds the maximum length of 8000 characters")
    run_data = dispatch("POST", "/runs/search", {"experiment_ids": ["0"]})["runs"][0]["data"]
    assert run_data["params"] == [{"key": "a", "value": "x" * 6000}]


def test_an_item_over_dynamodbs_size_limits_is_the_requests_fault():
    too_big = ClientError({"Error": {"Code": "ValidationException",
                                     "Message": "Item size has exceeded the maximum allowed size"}}, "PutItem")
    in_a_transaction = ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                                    "CancellationReasons": [{"Code": "None"}, {
                                        "Code": "ValidationError", "Message": "Item size to update has exceeded the "
                                                                             "maximum allowed size"}]}, "Transact")
    for err in (too_big, in_a_transaction):
        assert (http._aws_error(err, None).status, http._aws_error(err, None).error_code) == (
            400, "INVALID_PARAMETER_VALUE")
    other = ClientError({"Error": {"Code": "ValidationException", "Message": "Invalid UpdateExpression"}}, "Update")
    assert http._aws_error(other, None).status == 500


def test_the_reliability_doc_states_every_limit():
    """docs/reliability.md lists the limits per field: each limit constant's value appears there."""
    from pathlib import Path

    from shared import validation

    doc = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    section = doc.split("## Limits per field and malformed input", 1)[1].split("\n## ", 1)[0]
    missing = [name for name, value in vars(validation).items()
               if name.startswith("MAX_") and name != "MAX_INT64" and str(value) not in section]
    assert not missing, missing
