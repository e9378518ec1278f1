"""CloudFormation custom resource: one project declared in cdk.json for this environment.

Create/Update make sure the project exists (with its default experiment, as `mlreg project create`
does) and carries the declared description. Delete does nothing on purpose: taking a project out of
cdk.json revokes its IAM policies but never deletes data; `mlreg project delete` does that, explicitly.

The handler answers CloudFormation itself (a PUT to the presigned ResponseURL), so it needs no
provider framework and no extra functions."""

from __future__ import annotations

import json
import logging
import urllib.request

from shared import db, keys, projects

_log = logging.getLogger()
_log.setLevel(logging.INFO)


def handler(event: dict, context) -> None:
    props = event.get("ResourceProperties") or {}
    project = props.get("Project", "")
    status, reason = "SUCCESS", "OK"
    try:
        if event["RequestType"] in ("Create", "Update"):
            declare(project, props.get("Description", ""))
    except Exception as exc:  # any failure must reach CloudFormation, or the stack waits an hour
        _log.exception("declaring project %s failed", project)
        status, reason = "FAILED", f"{type(exc).__name__}: {exc}"[:900]
    respond(event, context, status, reason, physical_id=f"mlreg-project-{project}")


def declare(project: str, description: str) -> None:
    existing = projects.get_project(project)
    if existing is None:
        projects.create_project(project, description)
        _log.info("created project %s", project)
    elif existing.get("state") == projects.DELETED:
        raise ValueError(f"project {project} was deleted and its id stays taken; declare a new id")
    elif existing.get("description", "") != description:
        db.update(keys.project(project), keys.PROJECT_SK, "SET description = :d", values={":d": description})
        _log.info("updated the description of project %s", project)


def respond(event: dict, context, status: str, reason: str, physical_id: str) -> None:
    body = json.dumps({
        "Status": status,
        "Reason": f"{reason} (log stream {getattr(context, 'log_stream_name', '?')})",
        "PhysicalResourceId": event.get("PhysicalResourceId") or physical_id,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": {},
    }).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                     headers={"Content-Type": "", "Content-Length": str(len(body))})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (CloudFormation's URL)
        response.read()
