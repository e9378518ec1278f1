"""Where a model version's files come from, and whether mlreg copies them into a package.

MLflow 3.17.2's server (`mlflow/server/handlers.py`: `_create_model_version`, `_validate_source_run`,
`_validate_source_model`, `_resolve_registered_model_source_lineage`) registers a version from any
source it does not refuse, without reading it. mlreg accepts and refuses the same sources with the
same messages, and adds one decision, made only here in `resolve`:

- a source in the project's storage (`runs:/` of a run of the project, `mlflow-artifacts:/` inside
  the given run's or logged model's artifacts, `models:/<logged model id>`, `models:/<name>/<version>`
  of a version with a package, `s3://<bucket>/projects/<project>/artifacts/...`) is copied into the
  version's package (`Origin.package_from` is the S3 prefix to copy);
- any other accepted source (another bucket, `gs://`, `dbfs:/`, a run mlreg does not hold...) is
  **external**: recorded as given, no package, `get-download-uri` answers it as MLflow does.

Extensions over MLflow (documented in docs/compatibility.md): `runs:/` and `models:/<logged model id>`
sources need no run_id/model_id request parameter (mlreg takes it from the source)."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus, urlparse, urlsplit

from shared import db, keys
from shared.errors import MlflowError, invalid
from shared.registry import identity, items, packages
from shared.registry.models import version_by_alias
from shared.tracking import logged_models
from shared.validation import key_bytes, model_name, stage, version_number

# Schemes whose artifact repositories connect to the host named in the URI (MLflow's
# mlflow/store/artifact/host_policy.py); MLflow refuses them as sources by default.
HOST_ADDRESSED = frozenset({"ftp", "sftp", "hdfs", "viewfs", "http", "https", "mlflow-artifacts", "r2", "b2", "abfss"})
_WINDOWS_DRIVE = re.compile(r"^[a-zA-Z]$")


@dataclass
class Origin:
    source: str  # as recorded on the version
    run_id: str | None
    model_id: str | None
    package_from: str | None  # S3 prefix copied into the package; None: external, no package
    download_uri: str | None = None  # external only: what get-download-uri answers
    run_in_project: bool = True  # False: a run id mlreg does not hold (no run link is written)
    copy_of: tuple[str, str] | None = None  # (model id, semver) of the registry version a models:/ source names

    @property
    def external(self) -> bool:
        return self.package_from is None


# ---- MLflow's refusals, with its wording ----------------------------------------------------------------

def _not_identified(source: str, id_name: str) -> MlflowError:
    return invalid(f"Invalid model version source: '{source}'. The {id_name} request parameter must identify the "
                   "resource that contains the source.")


def _local_path_refused(source: str, id_name: str) -> MlflowError:
    # mlreg keeps no artifacts on a local disk, so no run's (or model's) artifact directory contains a local path.
    owner = "run" if id_name == "run_id" else "model"
    return invalid(f"Invalid model version source: '{source}'. To use a local path as a model version source, the "
                   f"{id_name} request parameter has to be specified and the local path has to be contained within "
                   f"the artifact directory of the {owner} specified by the {id_name}.")


def _check_scheme(source: str) -> None:
    parsed = urlparse(source)
    scheme = parsed.scheme.lower()
    if scheme in HOST_ADDRESSED and not (scheme == "mlflow-artifacts" and not parsed.netloc):
        raise invalid(f"'source' cannot use the '{scheme}' scheme: the '{scheme}' scheme addresses a host other than "
                      "the tracking server's configured artifact storage, so the server would connect to the host "
                      "named in the URI. Set the MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES environment variable "
                      "on the server to allow it.")


def _is_local(source: str) -> bool:
    parsed = urlparse(source)
    if parsed.scheme == "" or _WINDOWS_DRIVE.match(parsed.scheme):
        return True
    if parsed.scheme == "file":
        host = parsed.hostname
        if host and not (host == "." or host.startswith("localhost") or host.startswith("127.0.0.1")):
            # MLflow answers this with a 500; a client's mistake is a 400 here.
            raise invalid(f"{source} is not a valid remote uri. For remote access on windows, please consider "
                          "using a different scheme such as SMB (e.g. smb://<hostname>/<path>).")
        return True
    return False


def _check_no_relative_parts(source: str) -> None:
    """MLflow's `_validate_non_local_source_contains_relative_paths`: no `..`, no NUL, an absolute,
    normalised path (also after URL-decoding, repeatedly)."""
    while (unquoted := unquote_plus(source)) != source:
        source = unquoted
    path = re.sub(r"/+", "/", urlparse(source).path.rstrip("/"))
    if "\x00" in path or ".." in source.split("/") or not path.startswith("/") or posixpath.normpath(path) != path:
        raise invalid(f"Invalid model version source: '{source}'. If supplying a source as an http, https, local file "
                      "path, ftp, objectstore, or mlflow-artifacts uri, an absolute path must be provided without "
                      "relative path references present. Please provide an absolute path.")


def _parts(uri: str) -> tuple[str, ...]:
    return tuple(_unquote_all(p) for p in urlsplit(uri).path.split("/") if p)


def _unquote_all(text: str) -> str:
    while (unquoted := unquote(text)) != text:
        text = unquoted
    return text


def _within(source: str, root: str) -> bool:
    """MLflow's `_is_uri_within_root`, for mlflow-artifacts:/ URIs: path segments, decoded, empty ones dropped."""
    root_parts = _parts(root)
    return bool(root_parts) and _parts(source)[:len(root_parts)] == root_parts


def _artifacts(project: str, uri: str) -> str:
    """The S3 prefix of an `mlflow-artifacts:/<path>` URI of this project."""
    return packages.artifacts_prefix(project, "/".join(_parts(uri)))


# ---- the decision --------------------------------------------------------------------------------------

def resolve(project: str, source: str, run_id: str | None, model_id: str | None) -> Origin:
    """Accept or refuse `source` as MLflow 3.17.2 does, and decide package or external.
    `run_id`/`model_id`: the request parameters, None when not given."""
    if not isinstance(source, str):
        raise invalid(f"Invalid value {source!r} for parameter 'source' supplied.")
    _check_scheme(source)
    if urlparse(source).scheme == "models":
        return _from_models_uri(project, source, run_id, model_id)
    if model_id:
        return _with_model(project, source, run_id, model_id)
    return _with_run(project, source, run_id)


def _with_run(project: str, source: str, run_id: str | None) -> Origin:
    if _is_local(source):
        raise _local_path_refused(source, "run_id")
    _check_no_relative_parts(source)
    parsed = urlparse(source)
    if parsed.scheme == "runs":
        if parsed.netloc:
            raise _not_identified(source, "run_id")
        source_run, _, sub = parsed.path.strip("/").partition("/")
        if not source_run or (run_id and run_id != source_run):
            raise _not_identified(source, "run_id")
        run = _run(project, source_run)
        if run is None:  # MLflow does not look the run up: a run elsewhere is a source like any other
            return Origin(source, source_run, None, None, source, run_in_project=False)
        root = "/".join(_parts(run["artifact_uri"]))
        return Origin(source, source_run, None, packages.artifacts_prefix(project, f"{root}/{sub}" if sub else root))
    if parsed.scheme == "mlflow-artifacts":
        run = _run(project, run_id) if run_id else None
        if run is None or not _within(source, run["artifact_uri"]):
            raise _not_identified(source, "run_id")
        return Origin(source, run_id, None, _artifacts(project, source))
    own = _own_artifacts(project, source)
    in_project = not run_id or _run(project, run_id) is not None  # no run id: mlreg makes a candidate run
    return Origin(source, run_id, None, own, None if own else source, run_in_project=in_project)


def _with_model(project: str, source: str, run_id: str | None, model_id: str) -> Origin:
    if _is_local(source):
        raise _local_path_refused(source, "model_id")
    _check_no_relative_parts(source)
    scheme = urlparse(source).scheme
    if scheme == "runs":
        raise _not_identified(source, "model_id")
    model = _logged_model(project, model_id)
    if scheme == "mlflow-artifacts":
        if model is None or not _within(source, model["artifact_uri"]):
            raise _not_identified(source, "model_id")
        return Origin(source, run_id or model.get("source_run_id"), model_id, _artifacts(project, source))
    if model is None:  # MLflow would register the version, then fail to tag the model: refuse first
        raise logged_models.model_not_found(model_id)
    run_id = run_id or model.get("source_run_id")
    own = _own_artifacts(project, source)
    return Origin(source, run_id, model_id, own, None if own else source)


def _from_models_uri(project: str, source: str, run_id: str | None, model_id: str | None) -> Origin:
    """`models:/<logged model id>`, `models:/<name>/<version or stage>`, `models:/<name>@<alias>`."""
    parsed = urlparse(source)
    if parsed.netloc:
        raise invalid(f"Invalid model version source: '{source}'. Registered model sources must use the active "
                      "model registry.")
    _check_no_relative_parts(source)
    path = parsed.path.strip("/")
    if not path:
        raise _not_identified(source, "model_id")
    if "/" not in path and "@" not in path:  # a logged model's id
        if model_id and model_id != path:
            raise _not_identified(source, "model_id")
        model = logged_models.load(project, path)
        return Origin(source, run_id or model.get("source_run_id"), path,
                      _artifacts(project, model["artifact_uri"]))
    if "@" in path:
        name, _, alias = path.partition("@")
        registry_id, mv = version_by_alias(project, model_name(name), key_bytes(alias))  # they key items: checked
    else:                                                                             # as a request's
        name, _, ref = path.partition("/")
        registry_id, mv = _version_or_stage(project, model_name(name), ref)
    if (run_id is not None and (run_id or "") != (mv.get("run_id") or "")) or \
            (model_id is not None and (model_id or "") != (mv.get("model_id") or "")):
        raise invalid(f"Invalid model version source: '{source}'. The run_id and model_id request parameters must "
                      "match the referenced model version.")
    resolved, run, model = f"models:/{name}/{mv['version']}", mv.get("run_id"), mv.get("model_id")
    shared = {"run_in_project": mv.get("run_linked", True), "copy_of": (registry_id, mv["semver"])}
    if packages.is_external(mv):
        return Origin(resolved, run, model, None, packages.version_download_uri(mv), **shared)
    return Origin(resolved, run, model, packages.prefix(project, mv["package"]), **shared)


def _version_or_stage(project: str, name: str, ref: str) -> tuple[str, dict]:
    """(the registered model's id, the version) a `models:/<name>/<ref>` names."""
    if ref.isdigit():
        return items.load_version(project, name, version_number(ref))
    registry_id = identity.resolve(project, name)
    if ref.lower() == "latest":
        newest = items.newest_version(project, registry_id)
        if newest is None:
            raise identity.model_not_found(name)
        return registry_id, newest
    wanted = stage(ref)
    latest = items.latest_versions(project, registry_id, (wanted,))
    if not latest:
        raise invalid(f"No versions of model with name '{name}' and stage '{wanted}' found")
    return registry_id, latest[0]


# ---- lookups that do not fail ----------------------------------------------------------------------------

def _run(project: str, run_id: str) -> dict | None:
    if not isinstance(run_id, str) or not run_id or "#" in run_id:
        return None
    return db.get(keys.run(project, run_id), keys.RUN_SK)


def _logged_model(project: str, model_id: str) -> dict | None:
    if not isinstance(model_id, str) or not model_id or "#" in model_id or "/" in model_id:
        return None
    return db.get(keys.logged_model(project, model_id), keys.LOGGED_MODEL_SK)


def _own_artifacts(project: str, source: str) -> str | None:
    """`s3://<our bucket>/projects/<project>/artifacts/<path>`: the S3 prefix, else None. Other
    projects' keys and packages stay external (never copied: a token of this project may not read them)."""
    parsed = urlparse(source)
    root = packages.artifacts_root(project)
    key = "/".join(_parts(source)) + "/"
    if parsed.scheme == "s3" and parsed.netloc == packages.bucket() and key.startswith(root) and key != root:
        return key
    return None
