"""The CDK app (cdk.json: `python3 -m infra.app`).

    cdk synth  -c env=dev                          # one environment's stack, mlreg-dev
    cdk deploy -c env=prod                         # builds the Lambda asset and deploys it
    cdk synth                                      # every environment declared in cdk.json
    cdk synth  -c env=dev -c mlreg:asset=source    # no dependency build: for synth and tests only

`mlreg:asset` (or the MLREG_LAMBDA_ASSET variable) chooses the Lambda code asset: "build" (default:
CDK builds it with infra/package.py, see infra/bundling.py), "source" (build/lambda-source, the
sources without dependencies: synthesises in seconds but does not run in Lambda) or a directory
built elsewhere.
cdk-nag's AwsSolutions checks run on every synthesis; an unacknowledged finding fails it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

from aws_cdk import App, Validations
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks

from infra import config as configuration
from infra import package
from infra.stack import AUTHORIZER, PUBLISHER, WORKER, MlregStack
from shared.routes import functions as route_functions

ASSET_KEY = "mlreg:asset"


def default_function_names() -> list[str]:
    """The route table's functions, the authorizer, and the publisher and registry worker once they exist."""
    names = [*route_functions(), AUTHORIZER]
    names += [name for name in (PUBLISHER, WORKER) if (package.ROOT / "functions" / f"{name}.py").exists()]
    return names


def lambda_code(choice: str | Path | None) -> Callable[[], lambda_.Code]:
    """A maker of the Lambda code, one Code per stack (an asset belongs to the stack that uploads it)."""
    choice = str(choice or "build")
    if choice == "build":
        from infra.bundling import bundled_code

        return bundled_code
    path = package.build(with_dependencies=False) if choice == "source" else Path(choice)
    if not (path / "functions").is_dir():
        raise SystemExit(f"No Lambda asset in {path} (-c {ASSET_KEY}=build, the default, builds one)")
    return lambda: lambda_.Code.from_asset(str(path))


def build(app: App, *, environments: Mapping[str, Any] | None = None, only: str | None = None,
          asset: str | Path | None = None, function_names: list[str] | None = None) -> list[MlregStack]:
    """Add the stacks of the chosen environments (all if `only` is None or "all") to `app`."""
    if environments is None:
        environments = app.node.try_get_context(configuration.ENVIRONMENTS_KEY)
    names = configuration.environment_names(environments) if only in (None, "all") else [only]
    code = lambda_code(asset or app.node.try_get_context(ASSET_KEY) or os.environ.get("MLREG_LAMBDA_ASSET"))
    function_names = function_names or default_function_names()
    stacks = []
    for name in names:
        env = configuration.load(name, environments)
        stacks.append(MlregStack(app, env.stack_name, config=env, code=code(),
                                 function_names=function_names))
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return stacks


def main() -> None:
    app = App()
    try:
        build(app, only=app.node.try_get_context("env"))
    except configuration.ConfigError as err:
        raise SystemExit(f"cdk.json: {err}") from None
    app.synth()


if __name__ == "__main__":
    main()
