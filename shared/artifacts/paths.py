"""Artifact route paths -> S3 keys. Every key is built here from the authorised project, and every
path a client sends is checked first: nothing may resolve outside `projects/<project>/`.

Paths are taken literally: the transport decoded them once (a URL path in shared/http.py, a query
string or JSON body by its parser), and `report%41.txt` is stored, listed and served under that name.
MLflow's reference check is `mlflow.utils.uri.validate_path_is_safe`, which decodes until stable;
MLflow's clients decode listed names the same way, so no decoding of a path may hide a traversal
either. Stricter than MLflow because S3 keys are plain strings: `a//b`, `a/./b` and `a/b` would be
three different objects."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from shared.errors import MlflowError, invalid
from shared.projects import valid_project_id

PACKAGES = "packages"  # route paths below it map to the read-only model packages
MAX_KEY_BYTES = 1024  # S3's limit
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _decodings(path: str) -> list[str]:
    """The path and what percent-decoding makes of it, level by level, until stable."""
    forms = [path]
    for _ in range(10):
        decoded = unquote(forms[-1])
        if decoded == forms[-1]:
            return forms
        forms.append(decoded)
    raise invalid("Invalid path: too many levels of percent-encoding")


def _check(path: str, shown: str) -> None:
    # What MLflow refuses (validate_path_is_safe) gets its words; the rest keeps S3 keys plain.
    if "\\" in path or "#" in path or path.startswith("/") or _DRIVE.match(path) or ".." in path.split("/"):
        raise invalid("Invalid path")
    if _CONTROL.search(path):
        raise invalid("Invalid path: control characters are not allowed")
    if any(segment in ("", ".") for segment in path.split("/")):
        raise invalid(f"Invalid path {shown!r}: empty and '.' segments are not allowed")


def safe_path(path: str) -> str:
    """A relative artifact path with only plain segments, as given; INVALID_PARAMETER_VALUE otherwise."""
    if not isinstance(path, str) or not path:
        raise invalid("Invalid path: empty")
    for form in _decodings(path):
        _check(form, path)
    return path


def _key(project: str, path: str, write: bool) -> str:
    top, _, rest = path.partition("/")
    if top == PACKAGES:
        if write:
            raise MlflowError("Model packages are read-only: register a model version to create one",
                              "PERMISSION_DENIED")
        key = f"projects/{valid_project_id(project)}/{PACKAGES}/{rest}"
    else:
        key = f"projects/{valid_project_id(project)}/artifacts/{path}"
    if len(key.encode()) > MAX_KEY_BYTES:
        raise invalid(f"Invalid path: longer than S3's {MAX_KEY_BYTES}-byte key limit")
    return key


def object_key(project: str, path: str, write: bool = False) -> str:
    """The key of one object (a file) at artifact route path `path`."""
    path = safe_path(path)
    if path == PACKAGES:
        raise invalid("Invalid path: 'packages' is a folder")
    return _key(project, path, write)


def folder_path(path: str | None) -> str:
    """A folder's route path as a client may send it (maybe empty, maybe with a trailing '/'), checked."""
    if path is not None and not isinstance(path, str):
        raise invalid("Invalid path: expected one string")
    path = (path or "").rstrip("/")
    return safe_path(path) if path else ""


def package_uri_path(owner: str, semver: str) -> str:
    """A package's path in its `mlflow-artifacts:` URI: the owner segment (a model id; a model name for
    packages made before ids) escaped (a URI path is percent-encoded), so the client's URLs decode
    back to the literal key."""
    return f"{PACKAGES}/{quote(owner, safe='')}/{semver}"


def listed_folder(path: str | None) -> str | None:
    """A folder to list as the client sends it: MLflow's client copies the path of the artifact URI
    it was given, so a package's model name arrives escaped (package_uri_path) and is unescaped here;
    every other segment is literal (the roots mlreg hands out have no escapes)."""
    top, _, rest = path.partition("/") if isinstance(path, str) else ("", "", "")
    if top != PACKAGES or not rest:
        return path
    model, _, below = rest.partition("/")
    return "/".join(part for part in (PACKAGES, unquote(model), below) if part)


def folder_prefix(project: str, path: str | None) -> str:
    """The key prefix (ending in '/') of the folder at `path`; the project's artifact root if empty."""
    path = folder_path(path)
    if not path:
        return f"projects/{valid_project_id(project)}/artifacts/"
    return f"projects/{valid_project_id(project)}/{PACKAGES}/" if path == PACKAGES else _key(project, path, False) + "/"


def file_name(local_path: str) -> str:
    """The object name of a multipart upload: the basename of the client's local file path (as MLflow
    does), split on both separators so a Windows client's path works too."""
    name = re.split(r"[\\/]", local_path or "")[-1]
    safe_path(name)
    return name
