"""Request messages of the registry routes (registered models, versions, aliases, webhooks): each
route's fields, types and MLflow's limits, declared once. The route table names them; the dispatcher
parses them (shared/message.py). A leaf module: shapes and rules only."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit


from shared import validation as rules
from shared.events.webhooks import EVENTS
from shared.message import (Bool, KeyRef, LoggedModelId, Message, QueryText, RunId, TagKey, choice, long, many,
                            model_validator, text, typed)
from shared.validation import Refused, wrong_type


def _version(value: Any) -> int:
    """MLflow sends versions as strings (`"3"`); the number is what is kept."""
    if type(value) is not str:
        raise wrong_type(value)
    return rules.version_number(value)


ModelName = text(rules.MAX_NAME_LENGTH, rules.model_name)
Version = typed(_version, int, {"type": "string", "pattern": "^[0-9]+$"})
Description = text(rules.MAX_DESCRIPTION_LENGTH)
RegistryTagValue = text(rules.MAX_REGISTRY_TAG_VALUE_LENGTH, name="value")
Stage = text(20, rules.stage)
ALIAS_NAME = "Registered model alias name"  # how MLflow's length message names the field
Alias = text(rules.MAX_ALIAS_LENGTH, rules.alias, name=ALIAS_NAME)


class RegistryTag(Message):
    key: TagKey
    value: RegistryTagValue = ""


# ---- registered models ------------------------------------------------------------------------------------

class CreateRegisteredModel(Message):
    name: ModelName
    tags: list[RegistryTag] = many()
    description: Description = ""


class ModelRef(Message):
    """get, delete"""
    name: ModelName


class RenameRegisteredModel(Message):
    name: ModelName
    new_name: ModelName


class UpdateRegisteredModel(Message):
    name: ModelName
    description: Description = ""


class SearchRegisteredModels(Message):
    filter: QueryText = ""
    max_results: long(1, 1000) = 100
    order_by: list[QueryText] = many()
    page_token: QueryText = ""


class GetLatestVersions(Message):
    name: ModelName
    stages: list[Stage] = many()


class SetRegisteredModelTag(Message):
    name: ModelName
    key: TagKey
    value: RegistryTagValue = ""


class DeleteRegisteredModelTag(Message):
    name: ModelName
    key: KeyRef


class SetRegisteredModelAlias(Message):
    name: ModelName
    alias: text(rules.MAX_ALIAS_LENGTH, lambda alias: rules.settable_alias(rules.alias(alias)), name=ALIAS_NAME)
    version: Version


class DeleteRegisteredModelAlias(Message):
    name: ModelName
    alias: Alias


class GetModelVersionByAlias(Message):
    """The alias may also be `latest` or a semantic version (`1.2.0`, `v1.2.0`)."""
    name: ModelName
    alias: text(rules.MAX_ALIAS_LENGTH, rules.key_bytes)


# ---- model versions ---------------------------------------------------------------------------------------

class CreateModelVersion(Message):
    name: ModelName
    source: text(rules.MAX_SOURCE_LENGTH)
    run_id: RunId = ""
    tags: list[RegistryTag] = many()
    run_link: text(rules.MAX_URI_LENGTH) = ""
    description: Description = ""
    model_id: LoggedModelId = ""

    @model_validator(mode="after")
    def _tags_fit_the_version_item(self):
        rules.item_text(sum(len(t.key.encode()) + len(t.value.encode()) for t in self.tags),
                        f"The tags of the new version of model {self.name}")
        return self


class VersionRef(Message):
    """get, delete, get-download-uri"""
    name: ModelName
    version: Version


class UpdateModelVersion(VersionRef):
    description: Description = ""


class TransitionStage(VersionRef):
    stage: Stage
    archive_existing_versions: Bool = False


class SearchModelVersions(Message):
    filter: QueryText = ""
    max_results: long(1, 200_000) = 10_000
    order_by: list[QueryText] = many()
    page_token: QueryText = ""


class SetModelVersionTag(VersionRef):
    key: TagKey
    value: RegistryTagValue = ""


class DeleteModelVersionTag(VersionRef):
    key: KeyRef


# ---- webhooks ---------------------------------------------------------------------------------------------
_WEBHOOK_NAME = re.compile(r"^(?=.{1,63}$)[a-z0-9]([a-z0-9._-]*[a-z0-9])?$", re.IGNORECASE)


def _webhook_name(name: str) -> str:
    if not _WEBHOOK_NAME.fullmatch(name):
        raise Refused(f"Webhook name {name!r} is invalid. It must start and end with a letter or digit, be less "
                      "than 63 characters long, and contain only letters, digits, dots (.), underscores (_), and "
                      "hyphens (-).")
    return name


def _webhook_url(url: str) -> str:
    """The URL's syntax (its scheme and host are checked, and resolved, by the handler)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parses the port: `http://host:x` raises here
    except ValueError as err:
        raise Refused(f"Invalid webhook URL {url!r}: {err}") from None
    if not url.strip():
        raise Refused(f"Webhook URL cannot be empty or just whitespace: {url!r}")
    return url


def _event(value: Any) -> str:
    """{"entity": "MODEL_VERSION", "action": "CREATED"} (MLflow's JSON) or "model_version.created"."""
    if isinstance(value, dict) and all(type(value.get(k, "")) is str for k in ("entity", "action")):
        name = f"{value.get('entity', '').lower()}.{value.get('action', '').lower()}"
    elif type(value) is str:
        name = value.lower()
    else:
        raise wrong_type(value)
    if name not in EVENTS:
        raise Refused(f"Invalid webhook event {rules.shown(value)}: mlreg delivers {', '.join(EVENTS)}")
    return name


WebhookName = text(63, _webhook_name)
WebhookUrl = text(rules.MAX_URI_LENGTH, _webhook_url)
WebhookEvent = typed(_event, str, {"type": "object", "properties": {"entity": {"type": "string"},
                                                                     "action": {"type": "string"}}})
WebhookStatus = choice({"ACTIVE": "ACTIVE", "DISABLED": "DISABLED", "active": "ACTIVE", "disabled": "DISABLED"},
                       refusal=lambda value: Refused(f"Invalid webhook status {rules.shown(value)}: one of ACTIVE, "
                                                     "DISABLED"))
WebhookText = text(rules.MAX_SHORT_TEXT_LENGTH)


class CreateWebhook(Message):
    name: WebhookName
    url: WebhookUrl
    events: list[WebhookEvent] = many(len(EVENTS) * 4)
    description: WebhookText = ""
    secret: WebhookText = ""
    status: WebhookStatus = "ACTIVE"

    @model_validator(mode="after")
    def _some_events(self):
        if not self.events:
            raise Refused("Webhook events must be a non-empty list of WebhookEvent objects: [].")
        return self


class ListWebhooks(Message):
    max_results: long(1, 1000) = 100
    page_token: QueryText = ""


class WebhookRef(Message):
    """get, delete"""
    webhook_id: text(rules.MAX_NAME_LENGTH, rules.key_bytes)


class UpdateWebhook(WebhookRef):
    """Only the fields given change; `"secret": ""` removes the secret."""
    name: WebhookName = ""
    url: WebhookUrl = ""
    events: list[WebhookEvent] = many(len(EVENTS) * 4)
    description: WebhookText | None = None
    secret: WebhookText | None = None
    status: WebhookStatus | None = None


class WebhookTest(WebhookRef):
    event: WebhookEvent | None = None
