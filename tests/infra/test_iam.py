"""Least privilege: each function's role, and the per-project policies of SigV4 callers."""

from __future__ import annotations

import pytest

from infra import grants
from infra.constructs.api import STAGE
from shared import table as table_definition
from shared.routes import IAM_PREFIX, Role
from tests.infra.helpers import as_list, flat, function_policy, function_role, one, resources, role_policy, statements

ENVIRONMENTS = ("dev", "staging", "prod")
# Actions that have no resource-level permissions: "*" is the narrowest resource they accept.
RESOURCELESS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "dynamodb:ListStreams"}
S3_WRITES = {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}
ALLOWED_VARIABLES = {"MLREG_TABLE", "MLREG_BUCKET", "MLREG_EVENT_BUS", "MLREG_ENV", "POWERTOOLS_SERVICE_NAME",
                     "POWERTOOLS_METRICS_NAMESPACE", "MLREG_SECRET_ARN",
                     # events: the publisher's webhook queues, the webhook secrets key (infra/constructs/events.py)
                     "MLREG_WEBHOOK_QUEUE_URL", "MLREG_WEBHOOK_DLQ_URL", "MLREG_WEBHOOK_KEY_ARN",
                     "MLREG_CORS_ORIGIN",  # the web front end's origin, on every answer of the functions
                     "MLREG_WORKER_QUEUE_URL",  # the registry worker's jobs (infra/constructs/registry_worker.py)
                     "MLREG_UI_BUCKET"}  # the web UI's files, of which the ui function reads index.html
# CDK's BucketDeployment handler (infra/constructs/ui.py) runs at deploy time with the grants CDK gives it.
CDK_DEPLOYMENT = "CustomCDKBucketDeployment"


def _ours(template: dict):
    """Every identity policy statement but those of CDK's own deploy-time handler."""
    return [(i, s) for i, s in statements(template) if not i.startswith(CDK_DEPLOYMENT)]


def _actions(policy: list[dict], prefix: str = "") -> set[str]:
    return {a for s in policy for a in as_list(s["Action"]) if a.startswith(prefix)}


def _resources(policy: list[dict], actions: set[str]) -> set[str]:
    return {flat(r) for s in policy if set(as_list(s["Action"])) & actions for r in as_list(s["Resource"])}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_wildcard_resource_where_a_narrower_one_exists(synthesis, env):
    for logical_id, statement in _ours(synthesis.templates[env]):
        actions = set(as_list(statement["Action"]))
        assert not any("*" in a for a in actions), (logical_id, actions)
        if "*" in as_list(statement["Resource"]):
            assert actions <= RESOURCELESS, (logical_id, actions)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_table_access_names_the_table_and_each_index(synthesis, env):
    template = synthesis.templates[env]
    table_id, _ = one(template, "AWS::DynamoDB::Table")
    allowed = {f"<{table_id}.Arn>", f"<{table_id}.StreamArn>"} | {
        f"<{table_id}.Arn>/index/{gsi.name}" for gsi in table_definition.GSIS}
    for logical_id, statement in statements(template):
        actions = set(as_list(statement["Action"]))
        if any(a.startswith("dynamodb:") for a in actions) and not actions <= RESOURCELESS:
            assert {flat(r) for r in as_list(statement["Resource"])} <= allowed, logical_id
            assert "dynamodb:Scan" not in actions, "requests never Scan the table"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_object_access_stays_below_projects(synthesis, env):
    """Of the data bucket; the UI's bucket holds MLflow's public UI build only."""
    template = synthesis.templates[env]
    ui_bucket = next(k for k in resources(template, "AWS::S3::Bucket") if k.startswith("UiBucket"))
    for logical_id, statement in _ours(template):
        if all(flat(r).startswith(f"<{ui_bucket}.Arn>") for r in as_list(statement["Resource"])):
            assert as_list(statement["Action"]) == ["s3:GetObject"], logical_id
            continue
        actions = set(as_list(statement["Action"]))
        if "s3:ListBucket" in actions:
            # Unconditional only for roles that read objects (so missing keys answer 404, not 403).
            prefixes = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix", ["projects/"])
            assert all(p.startswith("projects/") for p in prefixes)
        elif any(a.startswith("s3:") for a in actions):
            for resource in as_list(statement["Resource"]):
                assert flat(resource).split(">", 1)[1].startswith("/projects/"), (logical_id, flat(resource))


def test_the_authorizer_reads_a_token_and_stamps_its_last_use_only(dev):
    policy = function_policy(dev, "authorizer")
    assert _actions(policy, "dynamodb:") == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    (update,) = [s for s in policy if s["Action"] == "dynamodb:UpdateItem"]
    attributes = update["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
    assert set(attributes) == {table_definition.PARTITION_KEY, table_definition.SORT_KEY, "last_used_at"}
    assert not _actions(policy, "s3:") and not _actions(policy, "secretsmanager:") and not _actions(policy, "events:")


def test_the_ui_function_keeps_sessions_and_reads_the_uis_page_only(dev):
    policy = function_policy(dev, "ui")
    assert _actions(policy, "dynamodb:") == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem",
                                             "dynamodb:UpdateItem"}
    (put,) = [s for s in policy if s["Action"] == "dynamodb:PutItem"]
    assert set(put["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]) == {
        "pk", "sk", "role", "token_id", "created_at", table_definition.TTL_ATTRIBUTE}
    ui_bucket = next(k for k in resources(dev, "AWS::S3::Bucket") if k.startswith("UiBucket"))
    assert _actions(policy, "s3:") == {"s3:GetObject"}
    assert _resources(policy, {"s3:GetObject"}) == {f"<{ui_bucket}.Arn>/index.html"}


def test_api_gateway_reads_the_uis_files_and_nothing_else(dev):
    ui_bucket = next(k for k in resources(dev, "AWS::S3::Bucket") if k.startswith("UiBucket"))
    (reader,) = [k for k, r in resources(dev, "AWS::IAM::Role").items() if k.startswith("UiApiGatewayReads")]
    assert role_policy(dev, reader) == [{"Action": "s3:GetObject", "Effect": "Allow",
                                         "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": [ui_bucket, "Arn"]}, "/*"]]}}]


def test_tracking_lists_run_artifacts_and_touches_no_object(dev):
    policy = function_policy(dev, "tracking")
    assert _actions(policy, "s3:") == {"s3:ListBucket"}
    (listing,) = [s for s in policy if s["Action"] == "s3:ListBucket"]
    assert listing["Condition"]["StringLike"]["s3:prefix"] == ["projects/*/artifacts/*"]


def test_roles_that_read_objects_may_list_the_bucket_for_404s(dev):
    bucket_id = [k for k in resources(dev, "AWS::S3::Bucket") if k.startswith("DataBucket")][0]
    for name in ("artifacts", "registry"):
        policy = function_policy(dev, name)
        assert _resources(policy, {"s3:ListBucket"}) == {f"<{bucket_id}.Arn>"}
        assert all("Condition" not in s for s in policy if s["Action"] == "s3:ListBucket")


def test_artifacts_writes_run_artifacts_only_and_never_the_table(dev):
    policy = function_policy(dev, "artifacts")
    writes = _resources(policy, S3_WRITES)
    assert writes and all(r.endswith("/projects/*/artifacts/*") for r in writes)
    assert _actions(policy, "dynamodb:") <= {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query",
                                             "dynamodb:ConditionCheckItem"}


def test_registry_writes_packages_only(dev):
    writes = _resources(function_policy(dev, "registry"), S3_WRITES)
    assert writes and all(r.endswith("/projects/*/packages/*") for r in writes)


def test_the_publisher_puts_events_on_its_bus_and_writes_nothing(dev):
    policy = function_policy(dev, "publisher")
    bus_id, _ = one(dev, "AWS::Events::EventBus")
    assert _resources(policy, {"events:PutEvents"}) == {f"<{bus_id}.Arn>"}
    assert not _actions(policy) & (S3_WRITES | {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                                                "dynamodb:BatchWriteItem"})


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_functions_get_the_variables_of_what_they_may_use(synthesis, env):
    template = synthesis.templates[env]
    secret_id, _ = one(template, "AWS::SecretsManager::Secret")
    for logical_id, function in resources(template, "AWS::Lambda::Function").items():
        props = function["Properties"]
        if not props.get("Handler", "").startswith(("functions.", "infra.")):
            continue  # CDK's own providers
        assert props["Runtime"] == "python3.12" and props["Architectures"] == ["arm64"]
        assert props["TracingConfig"] == {"Mode": "Active"}
        variables = props["Environment"]["Variables"]
        assert set(variables) <= ALLOWED_VARIABLES, logical_id
        policy = role_policy(template, function_role(function))
        assert ("MLREG_SECRET_ARN" in variables) == bool(_resources(policy, {"secretsmanager:GetSecretValue"}))
        if "MLREG_SECRET_ARN" in variables:
            assert _resources(policy, {"secretsmanager:GetSecretValue"}) == {f"<{secret_id}>"}
        assert bool({"MLREG_BUCKET", "MLREG_UI_BUCKET"} & set(variables)) == bool(_actions(policy, "s3:"))


# ---- per-project policies (SigV4 callers) -----------------------------------------------------------

def _project_policies(template: dict) -> dict[tuple[str, str], dict]:
    """(project, role) -> ManagedPolicy properties, from the policy names mlreg-<env>-<project>-<role>."""
    found = {}
    for policy in resources(template, "AWS::IAM::ManagedPolicy").values():
        *_, project, role = policy["Properties"]["ManagedPolicyName"].rsplit("-", 2)
        found[(project, role)] = policy["Properties"]
    return found


def _patterns(props: dict, effect: str = "Allow") -> list[str]:
    """`METHOD/path` of each resource ARN of the statements with `effect`, after `<api>/<stage>/`."""
    patterns = []
    for statement in props["PolicyDocument"]["Statement"]:
        assert statement["Action"] == "execute-api:Invoke"
        if statement["Effect"] != effect:
            continue
        for resource in as_list(statement["Resource"]):
            arn = flat(resource)
            assert f"/{STAGE}/" in arn, arn
            patterns.append(arn.split(f"/{STAGE}/", 1)[1])
    return patterns


def test_each_declared_project_gets_a_read_and_a_write_policy(synthesis):
    for env, template in synthesis.templates.items():
        declared = {p.id for p in synthesis.configs[env].projects}
        assert set(_project_policies(template)) == {(p, r) for p in declared for r in ("read", "write")}, env


def test_project_policies_name_only_that_project_and_exactly_its_routes(dev, synthesis):
    projects = {p.id for p in synthesis.configs["dev"].projects}
    for (project, role), props in _project_policies(dev).items():
        patterns = _patterns(props)
        for pattern in patterns:
            method, path = pattern.split("/", 1)
            assert ("/" + path).startswith(f"{IAM_PREFIX}/projects/{project}/"), pattern
            assert not any(f"/projects/{other}/" in "/" + path for other in projects - {project}), pattern
        # Exactly the IAM-tree routes of this role or below: nothing above it, nothing missing.
        grants.check(project, Role[role.upper()], patterns, denied=_patterns(props, "Deny"))


def test_read_policies_grant_no_write_route():
    from shared.routes import api_routes

    patterns = grants.granted_paths("p", Role.READ)
    writes = [r for r in api_routes() if r.role > Role.READ]
    assert writes
    with pytest.raises(AssertionError):
        grants.check("p", Role.READ, patterns + [f"{writes[0].method}/iam/projects/p/*"], denied=[])


def test_declared_principals_get_their_policies(dev, synthesis):
    policies = _project_policies(dev)
    for project in synthesis.configs["dev"].projects:
        for role, principals in (("read", project.read), ("write", project.write)):
            props = policies[(project.id, role)]
            roles = {p.arn.rsplit("/", 1)[1] for p in principals if p.kind == "role"}
            users = {p.arn.rsplit("/", 1)[1] for p in principals if p.kind == "user"}
            assert set(props.get("Roles", [])) == roles, (project.id, role)
            assert set(props.get("Users", [])) == users, (project.id, role)
