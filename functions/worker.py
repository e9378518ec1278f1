"""Lambda function: the registry worker. The table's DynamoDB stream -> jobs on the jobs queue; the
jobs queue -> package copies and model purges (both report partial batch failures). See
shared/registry/worker.py and docs/registry.md."""

from shared.registry.worker import handle as handler  # noqa: F401
