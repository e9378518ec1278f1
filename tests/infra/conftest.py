"""Synthesises every environment of cdk.json once per test session (the first synthesis in a process
takes 8-17 s), with cdk-nag's AwsSolutions checks on, and hands the templates to the tests.

The asset is the source-only one (no pip), built into a temporary directory; the publisher is always
included so its wiring is checked before functions/publisher.py exists. Test projects are added to the
declared ones so that per-project policies and principals are exercised."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

try:
    import aws_cdk  # noqa: F401
except ImportError:  # without the infra extra, only the tests that need no CDK run
    collect_ignore_glob = ["test_api.py", "test_compliance.py", "test_data.py", "test_iam.py", "test_operations.py",
                           "test_package.py", "test_bundling.py"]

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"

TEST_PROJECTS = {
    "vision": {
        "description": "Image models",
        "read": [f"arn:aws:iam::{ACCOUNT}:role/analysts"],
        "write": [f"arn:aws:iam::{ACCOUNT}:role/training/vision-trainer", f"arn:aws:iam::{ACCOUNT}:user/alice"],
    },
    "speech": {"description": "Speech models", "write": [f"arn:aws:iam::{ACCOUNT}:role/speech-trainer"]},
}


def cdk_context() -> dict[str, Any]:
    return json.loads((ROOT / "cdk.json").read_text())["context"]


def environments_under_test() -> dict[str, Any]:
    """cdk.json's environments, plus test projects in dev and the optional settings in staging."""
    environments = copy.deepcopy(cdk_context()["mlreg:environments"])
    environments["dev"].setdefault("projects", {}).update(TEST_PROJECTS)
    environments["staging"].update(
        waf_web_acl_arn=f"arn:aws:wafv2:eu-west-1:{ACCOUNT}:regional/webacl/mlreg/0123abcd",
        api_cloudwatch_role=False,
        alarms={"emails": [], "topic_arn": f"arn:aws:sns:eu-west-1:{ACCOUNT}:ops-alarms"},
    )
    return environments


@dataclass
class Synthesis:
    templates: dict[str, dict]  # environment name -> CloudFormation template
    configs: dict  # environment name -> EnvironmentConfig
    report: dict  # cdk's validation report (cdk-nag's findings)
    error: str | None  # the synthesis error, if cdk-nag failed it
    function_names: list[str]
    outdir: Path


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the group into each test's id
def pytest_collection_modifyitems(items):
    """Every test of the synthesis on one xdist worker (`./dev test` runs `--dist loadgroup`): it is
    made once per worker, and takes 15-30 s."""
    for item in items:
        if "synthesis" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("synthesis"))


@pytest.fixture(scope="session")
def synthesis(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    from aws_cdk import App

    from infra import app as mlreg_app
    from infra import config, package

    asset = package.build(tmp_path_factory.mktemp("asset") / "lambda", with_dependencies=False)
    outdir = tmp_path_factory.mktemp("cdk.out")
    environments = environments_under_test()
    context = {k: v for k, v in cdk_context().items() if k != config.ENVIRONMENTS_KEY}
    app = App(context=context, outdir=str(outdir))
    names = sorted(set(mlreg_app.default_function_names()) | {"publisher"})
    stacks = mlreg_app.build(app, environments=environments, asset=asset, function_names=names)
    error = None
    try:
        app.synth()
    except Exception as exc:  # cdk-nag findings fail synthesis; the compliance test reports them
        error = str(exc)
    report_file = outdir / "validation-report.json"
    return Synthesis(
        templates={s.stack_name.removeprefix("mlreg-"):
                   json.loads((outdir / f"{s.stack_name}.template.json").read_text()) for s in stacks},
        configs={name: config.load(name, environments) for name in environments},
        report=json.loads(report_file.read_text()) if report_file.exists() else {},
        error=error,
        function_names=names,
        outdir=outdir,
    )


@pytest.fixture(scope="session")
def dev(synthesis: Synthesis) -> dict:
    return synthesis.templates["dev"]


@pytest.fixture(scope="session")
def prod(synthesis: Synthesis) -> dict:
    return synthesis.templates["prod"]
