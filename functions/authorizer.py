"""API Gateway Lambda REQUEST authorizer: a Bearer token valid for the project in the path.

Returns an Allow policy for that project's paths with the project, role and token id as context;
handlers enforce the route's role from the route table. Invalid tokens get 401 ("Unauthorized"),
valid tokens of another project get 403 (an explicit Deny)."""

from __future__ import annotations

from shared.projects import lookup_token


def handler(event: dict, context=None) -> dict:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    project = (event.get("pathParameters") or {}).get("project", "")
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or not project:
        raise Exception("Unauthorized")  # API Gateway's contract for a 401
    record = lookup_token(project, token.strip())
    if record is None:
        raise Exception("Unauthorized")
    return {
        "principalId": record["token_id"],
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": project_arn(event, project)}],
        },
        "context": {"project": project, "role": record["role"], "token_id": record["token_id"]},
    }


def project_arn(event: dict, project: str) -> str:
    """Every method and path of this project in this API stage (so a cached policy covers them all,
    and nothing outside the project)."""
    arn = event.get("methodArn", "arn:aws:execute-api:local:000000000000:local/local/GET/")
    api, stage = arn.split("/")[0], arn.split("/")[1]
    return f"{api}/{stage}/*/projects/{project}/*"
