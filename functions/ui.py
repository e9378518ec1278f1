"""Lambda function: the web UI's page, sign-in and sign-out (shared/ui/pages.py)."""

from shared import db
from shared.http import make_dispatcher

handler = make_dispatcher("ui")
db.client()  # in the init phase: the page and sign-in read the session or the token (docs/performance.md)
