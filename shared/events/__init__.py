"""Registry events: committed table changes (DynamoDB Streams) become EventBridge events and MLflow
webhook deliveries. See docs/events.md.

- schema.py    the event detail (pydantic), `source` and `detail-type` names
- mapping.py   stream record -> domain events (pure)
- bus.py       EventBridge PutEvents
- webhooks.py  MLflow webhook payloads, signing, SSRF-safe delivery, the delivery queue
- secrets.py   webhook secrets encrypted at rest (KMS deployed, AES-GCM locally)
- publisher.py the Lambda logic: stream batches and delivery-queue batches"""
