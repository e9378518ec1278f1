"""The web UI's static files for `mlreg serve`: MLflow's bundle (mlreg/ui_bundle.py) at
`/projects/<p>/static-files/<path>`, with no authorization, as a deployed API serves them from S3.
Also hands the bundle's folder to the UI's page (shared/ui/pages.py reads MLREG_UI_DIR)."""

from __future__ import annotations

import mimetypes
import os
import re
import sys
import threading
from pathlib import Path

from mlreg import ui_bundle

STATIC = re.compile(r"^/projects/[a-z0-9][a-z0-9-]{0,62}/static-files/(?P<path>[^?#]+)$")
# Hashed file names (static/js/main.<hash>.js) never change: browsers may keep them.
IMMUTABLE = re.compile(r"\.[0-9a-f]{8,}\.(chunk\.)?(js|css)$|/media/")
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".cjs": "text/javascript", ".css": "text/css",
         ".json": "application/json", ".svg": "image/svg+xml", ".woff2": "font/woff2", ".woff": "font/woff",
         ".ttf": "font/ttf", ".eot": "application/vnd.ms-fontobject", ".txt": "text/plain"}
_ready = threading.Lock()


def bundle() -> Path:
    """The bundle's folder, found or extracted once (and published to the UI's page)."""
    with _ready:
        if "MLREG_UI_DIR" not in os.environ:
            os.environ["MLREG_UI_DIR"] = str(ui_bundle.bundle_dir())
    return Path(os.environ["MLREG_UI_DIR"])


def prepare_in_background() -> None:
    """Extract the bundle while the service starts (the first time it may download the wheel)."""
    def prepare() -> None:
        try:
            bundle()
        except ui_bundle.BundleError as err:
            print(f"mlreg: the web UI is not available: {err}", file=sys.stderr, flush=True)

    threading.Thread(target=prepare, daemon=True, name="ui-bundle").start()


def content_type(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    return TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def static_file(method: str, path: str) -> tuple[int, dict[str, str], bytes] | None:
    """(status, headers, body) for a static path, None for any other path."""
    m = STATIC.match(path)
    if not m or method not in ("GET", "HEAD"):
        return None
    try:
        root = bundle().resolve()
    except ui_bundle.BundleError as err:
        return 503, {"Content-Type": "text/plain; charset=utf-8"}, f"The web UI is not available: {err}".encode()
    file = (root / m["path"]).resolve()
    if not file.is_relative_to(root) or not file.is_file():
        return 404, {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"}, b"Not found"
    cache = "public, max-age=31536000, immutable" if IMMUTABLE.search(m["path"]) else "public, max-age=300"
    return 200, {"Content-Type": content_type(file.name), "Cache-Control": cache,
                 "X-Content-Type-Options": "nosniff"}, file.read_bytes()
