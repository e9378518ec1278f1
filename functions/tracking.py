"""Lambda function: the tracking routes of the route table."""

from shared import db
from shared.http import make_dispatcher

handler = make_dispatcher("tracking")
db.client()  # in the init phase: nearly every route reads the table (docs/performance.md, cold start)
