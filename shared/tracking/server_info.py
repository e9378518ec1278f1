"""What the MLflow 3 client asks before transferring artifacts."""

from shared.http import Request


def server_info(req: Request) -> dict:
    # Uploads and downloads of big files go straight between the client and S3 (presigned URLs).
    return {"store_type": "mlreg", "multipart_uploads_enabled": True, "multipart_downloads_enabled": True}
