"""Lambda function: the artifact routes of the route table (small files, presigned S3 transfers)."""

from shared.artifacts import store
from shared.http import make_dispatcher

handler = make_dispatcher("artifacts")
store.client()  # in the init phase: every route uses S3 (docs/performance.md, cold start)
