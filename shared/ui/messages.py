"""Request messages of the web UI's own routes (shared/routes.py; docs/ui.md). A leaf module:
shapes and rules only. The UI's twins of the API routes (`/ajax-api/...`) use those routes' messages."""

from __future__ import annotations

from typing import Any


from shared import validation as rules
from shared.artifacts.messages import Path
from shared.message import Empty, Field, LoggedModelId, Message, RunId, run_id_field, text
from shared.registry.messages import VersionRef

__all__ = ["Empty", "SignIn", "GraphqlQuery", "RunArtifact", "ModelVersionArtifact", "LoggedModelArtifact",
           "PackagePage"]
MAX_QUERY_CHARS = 20_000  # GraphQL documents the UI sends are about 1,500


class SignIn(Message):
    """A form (token, next) the sign-in page reads itself: never logged or echoed."""
    raw_body = True


class GraphqlQuery(Message):
    query: text(MAX_QUERY_CHARS)
    variables: dict[str, Any] | None = None
    operation_name: text(rules.MAX_SHORT_TEXT_LENGTH) = Field("", validation_alias="operationName")


class RunArtifact(Message):
    """get-artifact?run_uuid=&path= (the run page's file previews)"""
    run_id: RunId = run_id_field()
    path: Path


class ModelVersionArtifact(VersionRef):
    """model-versions/get-artifact?name=&version=&path= (the version page reads MLmodel)"""
    path: Path


class LoggedModelArtifact(Message):
    """ajax-api/2.0/mlflow/logged-models/<id>/artifacts/files?artifact_file_path="""
    model_id: LoggedModelId
    artifact_file_path: Path


class PackagePage(VersionRef):
    """package?name=&version= (a version's package page, shared/ui/package.py)"""
