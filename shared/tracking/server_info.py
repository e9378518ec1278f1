"""What the MLflow 3 client asks before transferring artifacts."""

from __future__ import annotations

from shared.http import Request
from shared.message import Empty


def server_info(req: Request, msg: Empty) -> dict:
    # Uploads and downloads of big files go straight between the client and S3 (presigned URLs).
    return {"store_type": "mlreg", "multipart_uploads_enabled": True, "multipart_downloads_enabled": True}
