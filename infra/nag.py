"""cdk-nag acknowledgments, kept next to the construct they concern.

cdk-nag 3 runs as a CDK validation plugin (`Validations.of(app).add_plugins(AwsSolutionsChecks(app))`,
see infra/app.py): any finding that is not acknowledged fails synthesis. Findings that name a resource
(`AwsSolutions-IAM5[Resource::...]`) are acknowledged one by one, with the resource rendered the way
cdk-nag renders it, so a new wildcard always needs its own reason."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct

PACK = "AwsSolutions"


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Accept finding `rule` (e.g. "AwsSolutions-L1" or "AwsSolutions-IAM5[Resource::*]") on
    `construct` and everything below it, for `reason`."""
    if len(reason) < 20:
        raise ValueError(f"acknowledging {rule} needs a real reason")
    Validations.of(construct).acknowledge(Acknowledgment(id=f"{PACK}::{rule}", reason=reason))


def wildcard_resource(scope: IConstruct, resource: str) -> str:
    """The finding id cdk-nag's IAM5 gives a wildcard resource (its `flattenCfnReference`)."""
    return f"AwsSolutions-IAM5[Resource::{_flatten(Stack.of(scope).resolve(resource))}]"


def _flatten(node: Any) -> str:
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(_flatten(i) for i in items)
        if "Fn::Sub" in node:
            return _flatten(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{_flatten(resource)}.{_flatten(attribute)}>"
        if "Fn::ImportValue" in node:
            return _flatten(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{_flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))
