"""The artifact reads of MLflow's web UI (`get-artifact`, `model-versions/get-artifact`, a logged
model's `artifacts/files`), as MLflow's server answers them: one file, located through its run,
version or logged model, always in the caller's project. The files go out as
shared/artifacts/responses.py shapes every artifact answer, so none can run on the UI's origin."""

from __future__ import annotations

from shared.artifacts.paths import PACKAGES, object_key
from shared.artifacts.responses import serve
from shared.artifacts.run_artifacts import artifact_root
from shared.http import Request, Response
from shared.ui import messages


def _serve(req: Request, root: str, path: str) -> Response:
    """`path` is safe already (its message's type checked it)."""
    return serve(object_key(req.project, f"{root}/{path}"), path)


def run_artifact(req: Request, msg: messages.RunArtifact) -> Response:
    """GET get-artifact?run_uuid=&path= (the run page's file previews)."""
    from shared.tracking import runs

    return _serve(req, artifact_root(runs.load_meta(req.project, msg.run_id)["artifact_uri"]), msg.path)


def model_version_artifact(req: Request, msg: messages.ModelVersionArtifact) -> Response:
    """GET model-versions/get-artifact?name=&version=&path= (the version page reads MLmodel): from
    the version's package, where its download URI points."""
    from shared.registry import items

    _, mv = items.load_version(req.project, msg.name, msg.version)
    return _serve(req, mv.get("package") or f"{PACKAGES}/{msg.name}/{mv['semver']}", msg.path)


def logged_model_artifact(req: Request, msg: messages.LoggedModelArtifact) -> Response:
    """GET ajax-api/2.0/mlflow/logged-models/<id>/artifacts/files?artifact_file_path="""
    from shared.tracking import logged_models

    model = logged_models.load(req.project, msg.model_id)
    return _serve(req, artifact_root(model["artifact_uri"]), msg.artifact_file_path)
