"""The REST API document: every route of the route table in both trees, with the right authoriser."""

from __future__ import annotations

import json

import pytest

from infra import openapi
from infra.constructs.api import STAGE
from shared import routes
from shared.routes import CATCH_ALL, IAM_PREFIX, PROJECT_PREFIX, ROUTES, STATIC_FILES, UI_CATCH_ALL
from tests.infra.helpers import api_body, flat, one, resources, role_policy

ENVIRONMENTS = ("dev", "staging", "prod")


def _function_of(operation: dict) -> str:
    """The logical id of the Lambda function an operation's integration invokes."""
    uri = flat(operation["x-amazon-apigateway-integration"]["uri"])
    return uri.split("/functions/<")[1].split(".Arn>")[0]


def _function_ids(template: dict) -> dict[str, str]:
    """Function name (functions/<name>.py) -> logical id, read from each function's handler."""
    return {f["Properties"]["Handler"].split(".")[-2]: logical_id
            for logical_id, f in resources(template, "AWS::Lambda::Function").items()
            if f["Properties"].get("Handler", "").startswith("functions.")}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_route_is_served_in_both_trees_by_its_function(synthesis, env):
    template = synthesis.templates[env]
    paths, functions = api_body(template)["paths"], _function_ids(template)
    for route in routes.api_routes():
        for path, scheme in ((route.resource, openapi.TOKEN_AUTH), (IAM_PREFIX + route.resource, openapi.IAM_AUTH)):
            operation = paths.get(path, {}).get(route.method.lower())
            assert operation is not None, f"{route.method} {path} is missing"
            assert operation["security"] == [{scheme: []}], f"{route.method} {path}"
            integration = operation["x-amazon-apigateway-integration"]
            assert integration["type"] == "aws_proxy" and integration["httpMethod"] == "POST"
            assert _function_of(operation) == functions[route.function], f"{route.method} {path}"


def _session_paths() -> set[str]:
    return ({r.resource for r in ROUTES if r.auth == routes.SESSION and not r.path.startswith(routes.UI_API)}
            | set(routes.ui_resources()) | {UI_CATCH_ALL})


PUBLIC_PATHS = {r.resource for r in ROUTES if r.auth == routes.PUBLIC}
EITHER_PATHS = {r.resource for r in ROUTES if r.auth == routes.TOKEN_OR_SESSION}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_method_of_each_tree_uses_that_trees_authoriser(synthesis, env):
    body = api_body(synthesis.templates[env])
    schemes = body["components"]["securitySchemes"]
    ttl = synthesis.configs[env].authorizer_cache_seconds
    for scheme, header in ((openapi.TOKEN_AUTH, "Authorization"), (openapi.SESSION_AUTH, "Cookie")):
        custom = schemes[scheme]
        assert custom["x-amazon-apigateway-authtype"] == "custom"
        assert custom["x-amazon-apigateway-authorizer"]["type"] == "request"
        assert custom["x-amazon-apigateway-authorizer"]["identitySource"] == f"method.request.header.{header}"
        assert custom["x-amazon-apigateway-authorizer"]["authorizerResultTtlInSeconds"] == ttl
        # One function for both: a token in the header, or else the session in the cookie.
        assert "<FunctionsauthorizerFunction" in flat(custom["x-amazon-apigateway-authorizer"]["authorizerUri"])
    either = schemes[openapi.EITHER_AUTH]["x-amazon-apigateway-authorizer"]
    assert "identitySource" not in either and either["authorizerResultTtlInSeconds"] == 0, "no cache without a source"
    assert "<FunctionsauthorizerFunction" in flat(either["authorizerUri"])
    assert schemes[openapi.IAM_AUTH]["x-amazon-apigateway-authtype"] == "awsSigv4"

    for path, method, operation in openapi.operations(body):
        if method == "OPTIONS":  # CORS preflights: browsers send them without credentials
            assert not path.startswith(IAM_PREFIX + "/") and operation["security"] == []
            assert operation["x-amazon-apigateway-integration"]["type"] == "mock"
            continue
        assert path.startswith((PROJECT_PREFIX, IAM_PREFIX + PROJECT_PREFIX)), path
        if path.startswith(IAM_PREFIX + PROJECT_PREFIX):
            expected = [{openapi.IAM_AUTH: []}]
        elif path in PUBLIC_PATHS or path == STATIC_FILES:
            expected = []
        elif path in _session_paths():
            expected = [{openapi.SESSION_AUTH: []}]
        elif path in EITHER_PATHS:
            expected = [{openapi.EITHER_AUTH: []}]
        else:
            expected = [{openapi.TOKEN_AUTH: []}]
        assert operation["security"] == expected, f"{method} {path}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_only_static_files_and_signing_in_need_no_authorizer(synthesis, env):
    """Without an authorizer: MLflow's UI build (from S3, no function), and the `ui` function's page,
    sign-in and sign-out, which check the session or the token themselves."""
    template = synthesis.templates[env]
    open_operations = {(method, path): op for path, method, op in openapi.operations(api_body(template))
                       if op["security"] == [] and method != "OPTIONS"}
    assert set(open_operations) == {("GET", STATIC_FILES), ("GET", PROJECT_PREFIX), ("POST", PROJECT_PREFIX + "/signin"),
                                    ("GET", PROJECT_PREFIX + "/signout")}
    ui_function = _function_ids(template)["ui"]
    for (method, path), operation in open_operations.items():
        if path != STATIC_FILES:
            assert _function_of(operation) == ui_function, path


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_uis_calls_reach_their_functions_through_greedy_resources(synthesis, env):
    template = synthesis.templates[env]
    paths, functions = api_body(template)["paths"], _function_ids(template)
    for path, function in routes.ui_resources().items():
        operation = paths[path]["x-amazon-apigateway-any-method"]
        assert operation["security"] == [{openapi.SESSION_AUTH: []}]
        assert _function_of(operation) == functions[function], path
    for route in ROUTES:
        if route.auth in (routes.SESSION, routes.TOKEN_OR_SESSION) and not route.path.startswith(routes.UI_API):
            assert _function_of(paths[route.resource][route.method.lower()]) == functions[route.function]
    catch_all = paths[UI_CATCH_ALL]["x-amazon-apigateway-any-method"]
    assert catch_all["x-amazon-apigateway-integration"]["type"] == "mock"
    assert not any(p.startswith(IAM_PREFIX + PROJECT_PREFIX + "/ajax-api") for p in paths), "browsers do not SigV4"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_static_files_come_from_the_ui_bucket_with_safe_headers(synthesis, env):
    template = synthesis.templates[env]
    operation = api_body(template)["paths"][STATIC_FILES]["get"]
    integration = operation["x-amazon-apigateway-integration"]
    ui_bucket = next(k for k in resources(template, "AWS::S3::Bucket") if k.startswith("UiBucket"))
    assert integration["type"] == "aws" and integration["httpMethod"] == "GET"
    assert integration["uri"]["Fn::Join"][1][-2:] == [{"Ref": ui_bucket}, "/{path}"]
    assert integration["requestParameters"] == {"integration.request.path.path": "method.request.path.path"}
    ok = integration["responses"]["default"]["responseParameters"]
    assert ok["method.response.header.X-Content-Type-Options"] == "'nosniff'"
    assert ok["method.response.header.Content-Type"] == "integration.response.header.Content-Type"
    assert integration["responses"]["[45]\\d{2}"]["statusCode"] == "404"
    reader = flat(integration["credentials"]).split(".")[0].lstrip("<")
    assert [s["Action"] for s in role_policy(template, reader)] == ["s3:GetObject"]
    (deployment,) = resources(template, "Custom::CDKBucketDeployment").values()
    assert flat(deployment["Properties"]["DestinationBucketName"]) == f"<{ui_bucket}>"
    assert deployment["Properties"]["Prune"] is True


def _api_resources(paths) -> set[str]:
    """Every API Gateway resource a set of paths needs (a path's parents are resources too)."""
    found = set()
    for path in paths:
        segments = path.strip("/").split("/")
        found.update("/".join(segments[:i]) for i in range(1, len(segments) + 1))
    return found


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_api_fits_api_gateways_resource_quota(synthesis, env):
    """300 resources per REST API by default; the UI's calls cost a few greedy resources, not a mirror
    of every route (173 resources before the UI)."""
    count = len(_api_resources(api_body(synthesis.templates[env])["paths"])) + 1  # the root, "/"
    assert count <= 240, count


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_unknown_paths_below_a_project_get_mlflows_404_without_a_lambda(synthesis, env):
    paths = api_body(synthesis.templates[env])["paths"]
    for path in (CATCH_ALL, IAM_PREFIX + CATCH_ALL):
        operation = paths[path]["x-amazon-apigateway-any-method"]
        integration = operation["x-amazon-apigateway-integration"]
        assert integration["type"] == "mock"
        response = integration["responses"]["default"]
        assert response["statusCode"] == "404"
        body = response["responseTemplates"]["application/json"]
        assert json.loads(body.replace("$context.httpMethod", "GET"))["error_code"] == "ENDPOINT_NOT_FOUND"
        assert operation["security"], "the catch-all is authorised like every other method"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_gateway_errors_have_mlflows_json_shape(synthesis, env):
    responses = api_body(synthesis.templates[env])["x-amazon-apigateway-gateway-responses"]
    statuses = {kind: r.get("statusCode") for kind, r in responses.items()}
    assert statuses["UNAUTHORIZED"] == 401 and statuses["ACCESS_DENIED"] == 403
    assert statuses["REQUEST_TOO_LARGE"] == 413 and statuses["THROTTLED"] == 429
    assert {"DEFAULT_4XX", "DEFAULT_5XX"} <= set(responses)
    for kind, response in responses.items():
        template = response["responseTemplates"]["application/json"]
        shaped = json.loads(template.replace("$context.error.messageString", '"a message"'))
        assert set(shaped) == {"error_code", "message"}, kind
    assert json.loads(responses["UNAUTHORIZED"]["responseTemplates"]["application/json"].replace(
        "$context.error.messageString", '""'))["error_code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_stage_logs_throttles_and_traces(synthesis, env):
    template, config = synthesis.templates[env], synthesis.configs[env]
    body = api_body(template)
    assert body["x-amazon-apigateway-binary-media-types"] == ["*/*"]
    _, stage = one(template, "AWS::ApiGateway::Stage")
    props = stage["Properties"]
    assert props["StageName"] == STAGE
    assert props["TracingEnabled"] is True
    log_format = json.loads(props["AccessLogSetting"]["Format"])
    assert {"requestId", "status", "project", "tokenId", "iamCaller"} <= set(log_format)
    assert not any("authorization" in v.lower() for v in log_format.values()), "never log the token"
    (settings,) = props["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == config.rate_limit
    assert settings["ThrottlingBurstLimit"] == config.burst_limit
    assert settings["DataTraceEnabled"] is False


def test_cors_preflights_only_where_an_origin_is_declared(synthesis):
    for env, template in synthesis.templates.items():
        origin = synthesis.configs[env].cors_origin
        methods = {m for _, m, _ in openapi.operations(api_body(template))}
        assert ("OPTIONS" in methods) is bool(origin), env
        if origin:
            op = api_body(template)["paths"][ROUTES[0].resource]["options"]
            headers = op["x-amazon-apigateway-integration"]["responses"]["default"]["responseParameters"]
            assert headers["method.response.header.Access-Control-Allow-Origin"] == f"'{origin}'"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_function_may_be_invoked_by_this_api_only(synthesis, env):
    template = synthesis.templates[env]
    api_id, _ = one(template, "AWS::ApiGateway::RestApi")
    permissions = resources(template, "AWS::Lambda::Permission")
    invoked = {flat(p["Properties"]["FunctionName"]): flat(p["Properties"]["SourceArn"]) for p in permissions.values()
               if p["Properties"]["Principal"] == "apigateway.amazonaws.com"}
    functions = _function_ids(template)
    route_functions = set(routes.functions())
    # One permission per function (not per method): Lambda's resource policy stays far below 20 KB.
    assert len(invoked) == len(route_functions) + 1
    for name in route_functions:
        assert invoked[f"<{functions[name]}.Arn>"].endswith(f":<{api_id}>/{STAGE}/*/*")
    assert invoked[f"<{functions['authorizer']}.Arn>"].endswith(f":<{api_id}>/authorizers/*")


def test_a_changed_api_document_redeploys_the_stage():
    """The deployment's logical id hashes the API document (here: CORS on or off); otherwise a new
    route would update the API but never reach the stage."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_lambda as lambda_

    from infra import config
    from infra.constructs.api import Api

    def deployment_id(cors_origin):
        stack = Stack(App(), "S")

        def function(name):
            return lambda_.Function(stack, name, runtime=lambda_.Runtime.PYTHON_3_12, handler="x.handler",
                                    code=lambda_.Code.from_inline("x"))

        env = config.load("dev", {"dev": {"cors_origin": cors_origin}})
        api = Api(stack, "Api", config=env, route_functions={n: function(n) for n in {r.function for r in ROUTES}},
                  authorizer=function("authorizer"))
        return stack.resolve(api.rest_api.latest_deployment.node.default_child.logical_id)

    assert deployment_id(None) != deployment_id("https://mlreg.example.com")


def test_the_route_table_is_a_tree_api_gateway_accepts(dev):
    """API Gateway allows one path parameter per level under a parent, and nothing below a greedy one."""
    children: dict[str, set[str]] = {}
    for path in api_body(dev)["paths"]:
        segments = path.strip("/").split("/")
        for i, segment in enumerate(segments):
            parent = "/".join(segments[:i])
            children.setdefault(parent, set()).add(segment)
            if segment.endswith("+}"):
                assert i == len(segments) - 1, f"{path}: a greedy parameter must be last"
    for parent, names in children.items():
        params = {n for n in names if n.startswith("{")}
        assert len(params) <= 1, f"/{parent} has sibling parameters {sorted(params)}"
