"""The EventBridge contract: `source`, `detail-type` names and the detail, as pydantic models so the
JSON Schema in docs/events.md is generated from the code that builds the events."""

from __future__ import annotations

import json

from pydantic import BaseModel, Field

SOURCE = "mlreg"

MODEL_CREATED = "Registered Model Created"
MODEL_RENAMED = "Registered Model Renamed"
MODEL_DELETED = "Registered Model Deleted"
VERSION_CREATED = "Model Version Created"
VERSION_FAILED = "Model Version Registration Failed"
VERSION_DELETED = "Model Version Deleted"
STAGE_TRANSITIONED = "Model Version Stage Transitioned"
ALIAS_SET = "Model Version Alias Set"
ALIAS_DELETED = "Model Version Alias Deleted"
TAG_SET = "Model Version Tag Set"
TAG_DELETED = "Model Version Tag Deleted"

DETAIL_TYPES = (MODEL_CREATED, MODEL_RENAMED, MODEL_DELETED, VERSION_CREATED, VERSION_FAILED, VERSION_DELETED,
                STAGE_TRANSITIONED, ALIAS_SET, ALIAS_DELETED, TAG_SET, TAG_DELETED)


class EventDetail(BaseModel):
    """The `detail` of every mlreg event. Fields that do not apply to a detail-type are null."""

    event_id: str = Field(description="Stable id of this change (stream record id + index): the same on a "
                                      "re-publication after a retry, so consumers can drop duplicates")
    sequence: str = Field(description="DynamoDB Streams sequence number of the change; increases with commit "
                                      "order within a model (compare as integers)")
    project: str
    model: str = Field(description="Registered model name (its name when the event is published)")
    model_id: str | None = Field(None, description="The registered model's immutable id (a rename keeps it)")
    version: int | None = Field(None, description="MLflow version number")
    semver: str | None = Field(None, description="The version's semantic version (also its alias)")
    run_id: str | None = None
    source: str | None = Field(None, description="The version's source URI as registered")
    package_uri: str | None = Field(None, description="Where the version's immutable package is read: "
                                                      "mlflow-artifacts:/packages/<model id>/<semver>~<attempt>")
    status: str | None = Field(None, description="READY or FAILED_REGISTRATION for version events")
    status_message: str | None = None
    stage: str | None = Field(None, description="The version's stage after the change")
    previous_stage: str | None = None
    alias: str | None = None
    previous_version: int | None = Field(None, description="Alias set: the version the alias pointed to before")
    tag_key: str | None = None
    tag_value: str | None = None
    previous_name: str | None = Field(None, description="Registered Model Renamed: the old name")
    description: str | None = None
    actor: str | None = Field(None, description="Token id (or IAM caller ARN) that made the change; null for "
                                                "deletions, whose removed item cannot record who removed it")
    timestamp: int = Field(description="Commit time, milliseconds since the epoch")


class DomainEvent(BaseModel):
    """One event before it goes to the bus, with the MLflow webhook event it also is (if any)."""

    detail_type: str
    detail: EventDetail
    webhook_event: str | None = None  # "model_version.created", ...
    webhook_payload: dict | None = None

    def entry(self, bus: str) -> dict:
        """The PutEvents entry."""
        return {"Source": SOURCE, "DetailType": self.detail_type, "EventBusName": bus,
                "Resources": [], "Detail": self.detail.model_dump_json()}


def json_schema() -> str:
    return json.dumps(EventDetail.model_json_schema(), indent=2)
