"""Lambda function: the web UI's page, sign-in and sign-out (shared/ui/pages.py)."""

from shared.http import make_dispatcher

handler = make_dispatcher("ui")
