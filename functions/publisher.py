"""Lambda function: the table's DynamoDB stream -> EventBridge events and webhook delivery messages,
and the webhook delivery queue -> receivers (both report partial batch failures). See
shared/events/publisher.py and docs/events.md."""

from shared.events.publisher import handle as handler  # noqa: F401
