"""MLflow webhooks (MLflow 3.3+ API): create, list, get, update, delete, test, per project.

A project's webhooks are one partition (`P#<p>#WH`, sort key `W#<id>`): list is one Query, and so is
the publisher's lookup of the webhooks subscribed to an event (filtered in memory). Secrets are
stored encrypted (shared/events/secrets.py) and never returned. Deliveries: shared/events/."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from botocore.exceptions import ClientError

from shared import db, keys, pagination
from shared.clock import now_ms
from shared.errors import not_found
from shared.events import secrets, webhooks as delivery
from shared.http import Request
from shared.registry import messages
EXAMPLES = {  # MLflow's example payloads (mlflow/webhooks/types.py), sent by the test route
    "registered_model.created": {"name": "example_model", "tags": {"example_key": "example_value"},
                                 "description": "An example registered model"},
    "model_version.created": {"name": "example_model", "version": "1", "source": "models:/123",
                              "run_id": "abcd1234abcd5678", "tags": {"example_key": "example_value"},
                              "description": "An example model version"},
    "model_version_tag.set": {"name": "example_model", "version": "1", "key": "example_key", "value": "example_value"},
    "model_version_tag.deleted": {"name": "example_model", "version": "1", "key": "example_key"},
    "model_version_alias.created": {"name": "example_model", "alias": "example_alias", "version": "1"},
    "model_version_alias.deleted": {"name": "example_model", "alias": "example_alias"},
}


# ---- JSON ------------------------------------------------------------------------------------------------

def webhook_json(hook: dict) -> dict:
    out = {k: hook[k] for k in ("webhook_id", "name", "url", "status", "creation_timestamp", "last_updated_timestamp")}
    if hook.get("description"):
        out["description"] = hook["description"]
    out["events"] = [{"entity": e.split(".")[0].upper(), "action": e.split(".")[1].upper()} for e in hook["events"]]
    return out


def _load(project: str, webhook_id: str) -> dict:
    hook = db.get(keys.webhooks(project), keys.webhook_sk(webhook_id))
    if hook is None:
        raise not_found(f"Webhook with ID {webhook_id} not found.")
    return hook


# ---- routes ---------------------------------------------------------------------------------------------

def create_webhook(req: Request, msg: messages.CreateWebhook) -> dict:
    webhook_id, ts = str(uuid.uuid4()), now_ms()
    hook = {"pk": keys.webhooks(req.project), "sk": keys.webhook_sk(webhook_id), "webhook_id": webhook_id,
            "name": msg.name, "url": delivery.validate_url(msg.url), "events": list(dict.fromkeys(msg.events)),
            "description": msg.description or None, "status": msg.status, "creation_timestamp": ts,
            "last_updated_timestamp": ts, "actor": req.token_id}
    if msg.secret:
        hook["secret"] = secrets.encrypt(msg.secret, req.project, webhook_id)
    db.put(hook, condition="attribute_not_exists(pk)")
    return {"webhook": webhook_json(hook)}


def list_webhooks(req: Request, msg: messages.ListWebhooks) -> dict:
    """Newest first, as MLflow; pages of 100 by default, at most 1000."""
    query = ["webhooks"]  # not max_results: clients change it between pages
    offset = pagination.decode(msg.page_token, req.project, query) or 0
    limit = msg.max_results
    hooks = sorted(db.query_all(keys.webhooks(req.project)), key=lambda h: (-h["creation_timestamp"], h["webhook_id"]))
    out: dict = {"webhooks": [webhook_json(h) for h in hooks[offset:offset + limit]]}
    if offset + limit < len(hooks):
        out["next_page_token"] = pagination.encode(req.project, query, offset + limit)
    return out


def get_webhook(req: Request, msg: messages.WebhookRef) -> dict:
    return {"webhook": webhook_json(_load(req.project, msg.webhook_id))}


def update_webhook(req: Request, msg: messages.UpdateWebhook) -> dict:
    """Only the fields given change; `"secret": ""` removes the secret (deliveries go unsigned)."""
    webhook_id = msg.webhook_id
    changes: dict = {"last_updated_timestamp": now_ms(), "actor": req.token_id}
    if msg.name:
        changes["name"] = msg.name
    if msg.url:
        changes["url"] = delivery.validate_url(msg.url)
    if msg.events:
        changes["events"] = list(dict.fromkeys(msg.events))
    if msg.description is not None:
        changes["description"] = msg.description
    if msg.status:
        changes["status"] = msg.status
    remove = []
    if msg.secret is not None:
        if msg.secret:
            changes["secret"] = secrets.encrypt(msg.secret, req.project, webhook_id)
        else:
            remove.append("secret")
    names = {f"#{k}": k for k in [*changes, *remove]}
    expression = "SET " + ", ".join(f"#{k} = :{k}" for k in changes) + (" REMOVE #secret" if remove else "")
    try:
        hook = db.update(keys.webhooks(req.project), keys.webhook_sk(webhook_id), expression, names=names,
                         values={f":{k}": v for k, v in changes.items()}, condition="attribute_exists(pk)",
                         return_new=True)
    except ClientError as err:
        if db.is_condition_failure(err):
            raise not_found(f"Webhook with ID {webhook_id} not found.") from None
        raise
    return {"webhook": webhook_json(hook)}


def delete_webhook(req: Request, msg: messages.WebhookRef) -> dict:
    db.delete(keys.webhooks(req.project), keys.webhook_sk(msg.webhook_id),
              missing=not_found(f"Webhook with ID {msg.webhook_id} not found."))
    return {}


def test_webhook(req: Request, msg: messages.WebhookTest) -> dict:
    """Sends MLflow's example payload of the event (default: the webhook's first) once, now, and
    reports the receiver's answer, as MLflow's test route does."""
    hook = _load(req.project, msg.webhook_id)
    event = msg.event or hook["events"][0]
    secret = secrets.decrypt(hook["secret"], req.project, hook["webhook_id"]) if hook.get("secret") else None
    outcome = delivery.deliver(hook["url"], secret, event, EXAMPLES[event], str(uuid.uuid4()),
                               datetime.now(timezone.utc).isoformat())
    result: dict = {"success": outcome.ok}
    if outcome.status is not None:
        result["response_status"] = outcome.status
    if outcome.response_body:
        result["response_body"] = outcome.response_body
    if outcome.error:
        result["error_message"] = f"Failed to test webhook: {outcome.error}"
    return {"result": result}
