"""Artifact bytes as the API answers them. The web UI shares the API's origin, so a file someone
uploaded must never run there: every artifact answer names a content type browsers only display
(HTML, XML and scripts go as text/plain), forbids sniffing another, asks to be saved rather than
opened, and carries a sandboxing CSP in case it is opened anyway. MLflow's server sends the
attachment and nosniff headers too; the UI fetches the bytes and shows them itself."""

from __future__ import annotations

import posixpath
import urllib.parse

from shared.artifacts import store
from shared.http import Response

# Lambda answers at most 6 MB and binary bodies travel base64-encoded (4/3 bigger): above this a
# GET is redirected to S3 instead.
INLINE_MAX_BYTES = 4 * 1024 * 1024

# Types a browser shows but never executes (SVG too, as an image: scripts in it never run in an
# <img>, and opened directly the CSP below stops them). Anything else unknown is plain bytes.
_SHOWN = {
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp",
    "bmp": "image/bmp", "ico": "image/x-icon", "svg": "image/svg+xml", "json": "application/json",
    "pdf": "application/pdf",
}
_TEXT = {"txt", "log", "csv", "tsv", "md", "markdown", "yaml", "yml", "toml", "ini", "cfg", "py", "ipynb", "r",
         "sql", "sh", "mlmodel", "mlproject", "html", "htm", "xhtml", "xml", "js", "mjs", "css", "jsonl",
         "geojson"}
TEXT = "text/plain"  # as MLflow answers (the UI decodes the bytes itself)
BINARY = "application/octet-stream"


def content_type(path: str) -> str:
    name = posixpath.basename(path).lower()
    extension = name.rpartition(".")[2] if "." in name else name  # MLmodel, MLproject: no extension
    if extension in _SHOWN:
        return _SHOWN[extension]
    return TEXT if extension in _TEXT else BINARY


def attachment(path: str) -> str:
    name = posixpath.basename(path)
    if not name.isascii() or not name.isprintable():
        return f"attachment; filename*=UTF-8''{urllib.parse.quote(name)}"
    return 'attachment; filename="%s"' % name.replace("\\", "\\\\").replace('"', '\\"')


def serve(key: str, path: str) -> Response:
    """The object at `key` (shown as `path`): its bytes, or a redirect to a presigned GET when it is
    too big for a Lambda answer (both MLflow client lines follow it)."""
    body = store.read_up_to(key, INLINE_MAX_BYTES)
    if body is None:
        return Response(status=307, body="", headers={"Location": store.presigned_get(key)})
    return file_response(body, path)


def file_response(body: bytes, path: str) -> Response:
    return Response(body=body, headers={
        "Content-Type": content_type(path),
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": attachment(path),
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox",
    })
