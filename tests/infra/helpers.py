"""Reading synthesised CloudFormation templates."""

from __future__ import annotations

from typing import Any, Iterator


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def one(template: dict, kind: str) -> tuple[str, dict]:
    found = resources(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.items()))


def flat(value: Any) -> str:
    """A template value as one string, references as <LogicalId> / <LogicalId.Attr> (cdk-nag's way)."""
    from infra.nag import _flatten

    return _flatten(value)


def statements(template: dict) -> Iterator[tuple[str, dict]]:
    """(logical id, statement) of every identity policy: inline policies, managed policies, roles."""
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        docs = []
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs.append(props["PolicyDocument"])
        if resource["Type"] == "AWS::IAM::Role":
            docs += [p["PolicyDocument"] for p in props.get("Policies", [])]
        for doc in docs:
            for statement in doc["Statement"]:
                yield logical_id, statement


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def role_policy(template: dict, role_id: str) -> list[dict]:
    """Every statement the role `role_id` holds: inline, attached AWS::IAM::Policy, managed policies."""
    found = []
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and \
                {"Ref": role_id} in props.get("Roles", []):
            found += props["PolicyDocument"]["Statement"]
        if logical_id == role_id:
            found += [s for p in props.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    return found


def function_role(function: dict) -> str:
    return function["Properties"]["Role"]["Fn::GetAtt"][0]


def function_policy(template: dict, name: str) -> list[dict]:
    """The statements of the role of function `name` (functions/<name>.py)."""
    (function,) = [f for f in resources(template, "AWS::Lambda::Function").values()
                   if f["Properties"].get("Handler") == f"functions.{name}.handler"]
    return role_policy(template, function_role(function))


def api_body(template: dict) -> dict:
    _, api = one(template, "AWS::ApiGateway::RestApi")
    return api["Properties"]["Body"]
