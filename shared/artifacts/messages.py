"""Request messages of the artifact routes: MLflow's proxied artifact routes (`mlflow-artifacts/...`)
and the run-scoped ones (`mlflow/artifacts/...`). Paths are checked by shared/artifacts/paths.py when
they become keys; here only their type and length. A leaf module: shapes and rules only."""

from __future__ import annotations


from shared import validation as rules
from shared.message import LoggedModelId, Message, QueryText, RunId, long, many, model_validator, run_id_field, text
from shared.validation import Refused

MAX_PARTS = 10_000  # S3's limit
MAX_EXPIRATION = 604800  # what cloud providers accept; MLflow refuses anything outside 1..this
Path = text(rules.MAX_PATH_LENGTH)
Expiration = long(1, MAX_EXPIRATION, refusal=lambda value: Refused(
    f"expiration must be between 1 and {MAX_EXPIRATION} seconds (got {value})."))


# ---- mlflow-artifacts/... (the path is in the URL) ----------------------------------------------------------

class ListArtifacts(Message):
    path: Path = ""


class ArtifactRef(Message):
    """download, delete, presigned download"""
    artifact_path: Path


class UploadArtifact(ArtifactRef):
    raw_body = True  # the body is the file


class CreateMultipartUpload(ArtifactRef):
    path: Path  # the client's local file: its name becomes the object's
    num_parts: long(1, MAX_PARTS, refusal=lambda value: Refused(
        f"num_parts must be between 1 and {MAX_PARTS}, got {value}. Raise MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE for "
        "very large files.")) = 1


class Part(Message):
    part_number: long(1, MAX_PARTS)
    etag: text(rules.MAX_SHORT_TEXT_LENGTH)


class CompleteMultipartUpload(ArtifactRef):
    path: Path
    upload_id: text(rules.MAX_SHORT_TEXT_LENGTH)
    parts: list[Part] = many(MAX_PARTS)

    @model_validator(mode="after")
    def _some_parts(self):
        if not self.parts:
            raise Refused(rules.missing_value("parts") + rules.API_DOCS)
        return self


class AbortMultipartUpload(ArtifactRef):
    path: Path
    upload_id: text(rules.MAX_SHORT_TEXT_LENGTH)


# ---- mlflow/artifacts/... (run-scoped) -------------------------------------------------------------------

class ListRunArtifacts(Message):
    run_id: RunId = run_id_field()
    path: Path = ""
    page_token: QueryText = ""


class PresignedUploadUrl(Message):
    run_id: RunId = ""
    model_id: LoggedModelId = ""
    path: Path
    expiration: Expiration | None = None

    @model_validator(mode="after")
    def _one_owner(self):
        if bool(self.run_id) == bool(self.model_id):
            raise Refused("Exactly one of run_id and model_id must be provided.")
        return self


class PresignedDownloadUrl(Message):
    run_id: RunId
    path: Path
    expiration: Expiration | None = None
