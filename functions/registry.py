"""Lambda function: the registry routes of the route table."""

from shared import db
from shared.http import make_dispatcher

handler = make_dispatcher("registry")
db.client()  # in the init phase: every route reads the table (docs/performance.md, cold start)
