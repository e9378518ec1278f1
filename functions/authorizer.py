"""API Gateway Lambda REQUEST authorizer: a Bearer token valid for the project in the path, or (for
the web UI, without a token) a session cookie of that project (shared/sessions.py).

API Gateway's contract, which the local gateway (mlreg/gateway.py) follows too:
- raising "Unauthorized" -> 401 (missing, malformed, unknown, expired or revoked token);
- a policy that does not allow the method ARN -> 403 (a token that names another project).
An Allow covers every method below `/projects/<project>/` and nothing else, so a cached Allow can
never serve another project. The context (project, role, token id) reaches the handlers, which
enforce each route's role from the route table. See docs/auth.md."""

from __future__ import annotations

from shared import db, projects, sessions

db.client()  # in the init phase: every call reads the token (docs/performance.md, cold start)


class Unauthorized(Exception):
    def __init__(self) -> None:
        super().__init__("Unauthorized")  # the exact message API Gateway maps to 401


def handler(event: dict, context=None) -> dict:
    project = (event.get("pathParameters") or {}).get("project", "")
    token = bearer_token(event)
    if not projects.is_project_id(project):
        raise Unauthorized()
    if not token:
        return session_policy(event, project)
    record = projects.authenticate(project, token)
    if record is not None:
        projects.note_use(record)
        return policy(record["token_id"], "Allow", event, project,
                      {"project": project, "role": record["role"], "token_id": record["token_id"]})
    if projects.project_named_by(token) not in (None, project):
        # A token of another project: refuse without reading that project, and without a hint
        # whether anything exists in this one.
        return policy(projects.token_id_of(token), "Deny", event, project)
    raise Unauthorized()


def session_policy(event: dict, project: str) -> dict:
    """The web UI's requests: API Gateway invokes the authorizer for them with the Cookie header as
    identity source (a second authorizer on the UI's resources; docs/auth.md)."""
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    record = sessions.authenticate(project, headers.get("cookie"))
    if record is None:
        raise Unauthorized()
    return policy(record["token_id"], "Allow", event, project,
                  {"project": project, "role": record["role"], "token_id": record["token_id"], "session": "true"})


def bearer_token(event: dict) -> str:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def policy(principal: str, effect: str, event: dict, project: str, context: dict | None = None) -> dict:
    result = {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": project_arn(event, project)}],
        },
    }
    if context:
        result["context"] = context
    return result


def project_arn(event: dict, project: str) -> str:
    """Every method and path of this project in this API stage: one cached policy serves all of
    the project's routes, and nothing outside it."""
    api, stage = event["methodArn"].split("/")[:2]
    return f"{api}/{stage}/*/projects/{project}/*"
