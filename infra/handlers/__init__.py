"""Lambda handlers that run at deploy time (CloudFormation custom resources), not per request."""
