"""Lambda function: the artifact routes of the route table (small files, presigned S3 transfers)."""

from shared.http import make_dispatcher

handler = make_dispatcher("artifacts")
