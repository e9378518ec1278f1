"""Request messages of the tracking routes (experiments, runs, metrics, logged models): each route's
fields, types and MLflow's limits, declared once. The route table names them; the dispatcher parses
them (shared/message.py). A leaf module: shapes and rules only."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any


from shared import validation as rules
from shared.message import (Bool, Double, ExperimentId, Field, KeyRef, LoggedModelId, Message, QueryText, RunId,
                            TagKey, ViewType, enum, long, many, model_validator, run_id_field, text, typed)
from shared.validation import (MAX_ENTITIES_PER_BATCH, MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH, Refused,
                               invalid_value)

ExperimentName = text(rules.MAX_EXPERIMENT_NAME_LENGTH, rules.experiment_name, name="name")
ExperimentTagValue = text(rules.MAX_EXPERIMENT_TAG_VAL_LENGTH, name="value")
MetricKey = text(rules.MAX_ENTITY_KEY_LENGTH, lambda key: rules.key_name(key, "Metric name"), name="Metric name")
ParamKey = text(rules.MAX_ENTITY_KEY_LENGTH, lambda key: rules.key_name(key, "Param key"), name="Param key")
ParamValue = text(rules.MAX_PARAM_VAL_LENGTH, name="Param value", truncatable=True)
RunTagValue = text(rules.MAX_TAG_VAL_LENGTH, truncatable=True)
RunName = text(rules.MAX_TAG_VAL_LENGTH)  # the name is also the mlflow.runName tag
Timestamp = long(0, refusal=lambda value: Refused(lambda path: invalid_value(
    path, value, "Timestamp must be a nonnegative long (64-bit integer)")))
RunStatus = enum("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED",
                 refusal=lambda value: Refused(lambda path: invalid_value(path, value, "not a run status")))
LoggedModelStatus = enum("LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED",
                         refusal=lambda value: Refused(lambda path: invalid_value(path, value)))


# ---- experiments ------------------------------------------------------------------------------------------

class ExperimentTag(Message):
    key: TagKey
    value: ExperimentTagValue = ""


class CreateExperiment(Message):
    name: ExperimentName
    artifact_location: text(rules.MAX_SHORT_TEXT_LENGTH) = ""
    tags: list[ExperimentTag] = many()


class ExperimentRef(Message):
    """get, delete, restore"""
    experiment_id: ExperimentId


class GetExperimentByName(Message):
    experiment_name: ExperimentName


class SearchExperiments(Message):
    max_results: long(1, 50000, refusal=rules.search_limit(50000)) = 1000
    filter: QueryText = ""
    page_token: QueryText = ""
    order_by: list[QueryText] = many()
    view_type: ViewType = "ACTIVE_ONLY"


class UpdateExperiment(Message):
    experiment_id: ExperimentId
    new_name: ExperimentName


class SetExperimentTag(Message):
    experiment_id: ExperimentId
    key: TagKey
    value: ExperimentTagValue = ""


class DeleteExperimentTag(Message):
    experiment_id: ExperimentId
    key: KeyRef


# ---- runs -------------------------------------------------------------------------------------------------

class RunTag(Message):
    key: TagKey
    value: RunTagValue = ""


class Param(Message):
    key: ParamKey
    value: ParamValue = ""


class Metric(Message):
    key: MetricKey
    value: Double
    timestamp: Timestamp
    step: long() = 0
    # MLflow 3: a value that also belongs to a logged model (and, optionally, was measured on a dataset)
    model_id: LoggedModelId = ""
    dataset_name: text(rules.MAX_DATASET_NAME_SIZE) = ""
    dataset_digest: text(rules.MAX_DATASET_DIGEST_SIZE) = ""


class CreateRun(Message):
    experiment_id: ExperimentId = "0"
    user_id: text(rules.MAX_NAME_LENGTH) = ""
    start_time: long(0) | None = None
    tags: list[RunTag] = many()
    run_name: RunName = ""


class RunRef(Message):
    """get, delete, restore"""
    run_id: RunId = run_id_field()


class UpdateRun(Message):
    run_id: RunId = run_id_field()
    status: RunStatus | None = None
    end_time: long(0) | None = None
    run_name: RunName = ""


class LogParam(Message):
    run_id: RunId = run_id_field()
    key: ParamKey
    value: ParamValue = ""


class SetTag(Message):
    run_id: RunId = run_id_field()
    key: TagKey
    value: RunTagValue = ""


class DeleteTag(Message):
    run_id: RunId = run_id_field()
    key: KeyRef


class LogMetric(Metric):
    run_id: RunId = run_id_field()


class LogBatch(Message):
    max_body_bytes = rules.MAX_BATCH_LOG_REQUEST_SIZE
    run_id: RunId
    metrics: list[Metric] = many(None)  # the batch limits below word the refusal; the body holds at most 1 MB
    params: list[Param] = many(None)
    tags: list[RunTag] = many(None)

    @model_validator(mode="after")
    def _mlflow_batch_rules(self):
        n_metrics, n_params, n_tags = len(self.metrics), len(self.params), len(self.tags)
        for name, limit, n in (("metrics", MAX_METRICS_PER_BATCH, n_metrics),
                               ("params", MAX_PARAMS_TAGS_PER_BATCH, n_params),
                               ("tags", MAX_PARAMS_TAGS_PER_BATCH, n_tags),
                               ("metrics, params, and tags", MAX_ENTITIES_PER_BATCH, n_metrics + n_params + n_tags)):
            if n > limit:
                raise Refused(f"A batch logging request can contain at most {limit} {name}. Got {n} {name}. "
                              f"Please split up {name} across multiple requests and try again.")
        dupes = [key for key, n in Counter(p.key for p in self.params).items() if n > 1]
        if dupes:
            raise Refused(f"Duplicate parameter keys have been submitted: {dupes}. Please ensure the request contains "
                          "only one param value per param key.")
        return self


class InputTag(Message):
    key: text(rules.MAX_INPUT_TAG_KEY_SIZE, name="key")
    value: text(rules.MAX_INPUT_TAG_VALUE_SIZE, name="value") = ""


class Dataset(Message):
    name: text(rules.MAX_DATASET_NAME_SIZE, rules.key_bytes, name="name")
    digest: text(rules.MAX_DATASET_DIGEST_SIZE, name="digest")
    source_type: text(rules.MAX_DATASET_DIGEST_SIZE) = ""
    source: text(rules.MAX_DATASET_SOURCE_SIZE) = ""
    schema_: text(rules.MAX_DATASET_SCHEMA_SIZE) = Field("", validation_alias="schema")  # `schema` on the wire
    profile: text(rules.MAX_DATASET_PROFILE_SIZE) = ""

    @model_validator(mode="after")
    def _fits_one_item(self):
        rules.item_text(sum(len(v.encode()) for v in (self.name, self.source, self.schema_, self.profile)),
                        f"The dataset {self.name!r} (name, source, schema and profile)")
        return self

    def as_stored(self) -> dict:
        """MLflow's JSON of the dataset, as kept and served."""
        out = {"name": self.name, "digest": self.digest, "source_type": self.source_type, "source": self.source,
               "schema": self.schema_, "profile": self.profile}
        return {k: v for k, v in out.items() if v}


class DatasetInput(Message):
    tags: list[InputTag] = many()
    dataset: Dataset


class ModelInput(Message):
    model_id: LoggedModelId


class LogInputs(Message):
    run_id: RunId
    datasets: list[DatasetInput] = many()
    models: list[ModelInput] = many()


class ModelOutput(Message):
    model_id: LoggedModelId
    step: long() = 0


class LogOutputs(Message):
    run_id: RunId
    models: list[ModelOutput] = many()


_MODEL_FIELDS = {"artifact_path", "flavors", "utc_time_created", "run_id"}


def _model_json(value: Any) -> dict:
    if type(value) is not str:
        raise rules.wrong_type(value)
    try:
        model = json.loads(value)
    except (ValueError, RecursionError):
        model = None
    if not isinstance(model, dict):
        raise Refused(f"Malformed model info. \n {value[:1000]} \n is not a valid JSON.")
    if _MODEL_FIELDS - set(model):
        raise Refused(f"Model json is missing mandatory fields: {_MODEL_FIELDS - set(model)}")
    return model


class LogModel(Message):
    """MLflow 2's legacy route: `model_json` arrives parsed."""
    run_id: RunId = run_id_field()
    model_json: typed(_model_json, dict, {"type": "string", "maxLength": rules.MAX_ITEM_TEXT_BYTES})


class SearchRuns(Message):
    experiment_ids: list[ExperimentId] = many()
    filter: QueryText = ""
    run_view_type: ViewType = "ACTIVE_ONLY"
    max_results: long(1, 50000, refusal=rules.search_limit(50000)) = 1000
    order_by: list[QueryText] = many()
    page_token: QueryText = ""


# ---- metrics ----------------------------------------------------------------------------------------------

class GetMetricHistory(Message):
    run_id: RunId = run_id_field()
    metric_key: KeyRef
    max_results: long(1, 25000, refusal=lambda value: Refused(
        f"Invalid value {value} for parameter 'max_results' supplied. It must be a positive integer at most 25000."
    )) = 25000
    page_token: QueryText = ""


class GetMetricHistoryBulkInterval(Message):
    run_ids: list[RunId] = many(None)
    metric_key: KeyRef
    start_step: long() | None = None
    end_step: long() | None = None
    max_results: long(1, 2500, refusal=lambda value: Refused(
        "max_results must be between 1 and 2500." + rules.API_DOCS)) = 2500

    @model_validator(mode="after")
    def _mlflow_rules(self):
        if not self.run_ids:
            raise Refused(rules.missing_value("run_ids") + rules.API_DOCS)
        if len(self.run_ids) > 100:
            raise Refused(f"GetMetricHistoryBulkInterval request must specify at most 100 run_ids. Received "
                          f"{len(self.run_ids)} run_ids." + rules.API_DOCS)
        if (self.start_step is None) != (self.end_step is None):
            raise Refused("If either start step or end step are specified, both must be specified.")
        if self.start_step is not None and self.start_step > self.end_step:
            raise Refused(f"end_step must be greater than start_step. Found start_step={self.start_step} and "
                          f"end_step={self.end_step}.")
        return self


# ---- logged models ----------------------------------------------------------------------------------------

class LoggedModelParam(Message):
    key: ParamKey
    value: ParamValue = ""


class LoggedModelTag(Message):
    key: TagKey
    value: RunTagValue = ""


class CreateLoggedModel(Message):
    experiment_id: ExperimentId
    name: text(rules.MAX_DATASET_NAME_SIZE, rules.logged_model_name) = ""  # MLflow's column: 500, as dataset names
    model_type: text(rules.MAX_DATASET_NAME_SIZE) = ""
    source_run_id: RunId = ""
    params: list[LoggedModelParam] = many()
    tags: list[LoggedModelTag] = many()


class LoggedModelRef(Message):
    """finalize's status aside, the routes below /logged-models/{model_id}"""
    model_id: LoggedModelId


class GetLoggedModel(LoggedModelRef):
    allow_deleted: Bool = False


class FinalizeLoggedModel(LoggedModelRef):
    status: LoggedModelStatus


class SetLoggedModelTags(LoggedModelRef):
    tags: list[LoggedModelTag] = many()


class DeleteLoggedModelTag(LoggedModelRef):
    tag_key: KeyRef


class LogLoggedModelParams(LoggedModelRef):
    params: list[LoggedModelParam] = many()


class ListLoggedModelArtifacts(LoggedModelRef):
    artifact_directory_path: text(1024) = ""
    page_token: QueryText = ""


class DatasetFilter(Message):
    dataset_name: text(rules.MAX_DATASET_NAME_SIZE) = ""
    dataset_digest: text(rules.MAX_DATASET_DIGEST_SIZE) = ""


class LoggedModelOrder(Message):
    field_name: QueryText = ""
    ascending: Bool | None = None
    dataset_name: text(rules.MAX_DATASET_NAME_SIZE) = ""
    dataset_digest: text(rules.MAX_DATASET_DIGEST_SIZE) = ""


class SearchLoggedModels(Message):
    experiment_ids: list[ExperimentId] = many()
    filter: QueryText = ""
    datasets: list[DatasetFilter] = many()
    max_results: long(1, 1000, refusal=lambda value: Refused(
        f"Invalid value {value} for parameter 'max_results': it must be between 1 and 1000")) = 100
    order_by: list[LoggedModelOrder] = many()
    page_token: QueryText = ""

    @model_validator(mode="after")
    def _mlflow_rules(self):
        if not self.experiment_ids:
            raise Refused(rules.missing_value("experiment_ids"))
        if any(not d.dataset_name for d in self.datasets):
            raise Refused("`dataset_name` in the `datasets` clause must be specified.")
        return self


# ---- traces and evaluation datasets: not stored, their list routes answer empty (shared/tracking/genai.py) ----

class SearchTraces(Message):
    """GET /api/2.0/mlflow/traces: MLflow requires the experiments; the rest is read and ignored."""
    experiment_ids: list[ExperimentId] = many()

    @model_validator(mode="after")
    def _mlflow_rules(self):
        if not self.experiment_ids:  # an empty list is a missing value, as in protobuf
            raise Refused(rules.missing_value("experiment_ids") + rules.API_DOCS)
        return self


class SearchTracesV3(Message):
    locations: list[Any] = many()
    max_results: long(1, 500, refusal=rules.search_limit(500)) = 500

    @model_validator(mode="after")
    def _mlflow_rules(self):
        if not self.locations:
            raise Refused(rules.missing_value("locations") + rules.API_DOCS)
        return self
