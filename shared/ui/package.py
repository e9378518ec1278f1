"""A model version's package, on a page of our own (MLflow's UI has no place for it): its semantic
version, its files with sizes and SHA-256, and download links, at the stable URL
`/projects/<p>/package?name=<model>&version=<number>` that the version's `mlreg.package_url` tag
names (docs/ui.md)."""

from __future__ import annotations

import html
from urllib.parse import quote

from shared.errors import MlflowError
from shared.http import Request, Response
from shared.registry import items, packages
from shared.ui import messages
from shared.ui.pages import page


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _checksum(f: packages.File) -> str:
    if f.sha256:
        return f.sha256
    if f.part_sha256:
        return html.escape(f"parts of {_size(f.part_size or 0)}: {f.part_sha256}")
    return "—"


def package_page(req: Request, msg: messages.PackagePage) -> Response:
    try:
        _, mv = items.load_version(req.project, msg.name, msg.version)
    except MlflowError as err:
        return page("Package not found · mlreg", f"<h1>Package not found</h1><p>{html.escape(err.message)}</p>",
                    err.status)
    name, semver, e = msg.name, mv["semver"], html.escape
    files = packages.files(req.project, mv["package"]) if mv.get("package") and mv["status"] == items.READY else []
    download = "ajax-api/2.0/mlflow-artifacts/artifacts/" + packages.download_uri(mv["package"] or "").split(":/", 1)[1] + "/"
    rows = "".join(
        f"<tr><td><a href='{e(download + quote(f.path))}' download>{e(f.path)}</a></td>"
        f"<td class=num title='{f.size:,} bytes'>{_size(f.size)}</td><td class=sha>{_checksum(f)}</td></tr>"
        for f in files)
    version_page = f"./#/models/{quote(name, safe='')}/versions/{mv['version']}"
    body = (f"<h1>{e(name)} <code>{e(semver)}</code></h1>"
            f"<p>Version {mv['version']} · stage {e(mv['current_stage'])} · {e(mv['status'])} · "
            f"<a href='{e(version_page)}'>version page</a> · <a href=signout>sign out</a></p>"
            f"<p>Load it: <code>mlflow.pyfunc.load_model(\"models:/{e(name)}@{e(semver)}\")</code></p>"
            f"<table><thead><tr><th>file</th><th>size</th><th>SHA-256</th></tr></thead><tbody>{rows}</tbody></table>"
            f"<p><small>{len(files)} files, {_size(sum(f.size for f in files))}. The package is this version's own "
            f"copy of <code>{e(mv.get('source') or '')}</code>; it never changes."
            + (" A file copied in parts shows S3's checksum of its parts' SHA-256 (part size given); packages "
               "made before mlreg asked S3 for checksums show none." if any(f.sha256 is None for f in files) else "")
            + "</small></p>")
    return page(f"{name} {semver} · package · mlreg", body, wide=True)
