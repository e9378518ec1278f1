"""Lambda function: the registry routes of the route table."""

from shared.http import make_dispatcher

handler = make_dispatcher("registry")
