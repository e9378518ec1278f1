"""cdk.json settings: defaults, checks, and the environments the repository declares."""

from __future__ import annotations

import pytest

from infra import config
from tests.infra.conftest import cdk_context


def test_repository_declares_dev_staging_and_prod():
    environments = cdk_context()[config.ENVIRONMENTS_KEY]
    assert {"dev", "staging", "prod"} <= set(environments)
    loaded = {name: config.load(name, environments) for name in environments}
    assert loaded["prod"].retain and loaded["prod"].deletion_protection
    assert not loaded["dev"].retain and not loaded["dev"].deletion_protection


def test_a_new_environment_needs_only_what_differs():
    env = config.load("qa", {"qa": {"region": "eu-west-1"}})
    assert env.stack_name == "mlreg-qa" and env.region == "eu-west-1"
    assert env.log_retention_days == config.DEFAULTS["log_retention_days"]
    assert env.projects == ()


@pytest.mark.parametrize("settings, message", [
    ({"removal_policy": "keep"}, "removal_policy"),
    ({"log_retention_days": 10}, "log_retention_days"),
    ({"account": "12345"}, "12-digit"),
    ({"authorizer_cache_seconds": 7200}, "0-3600"),
    ({"webhook_allow_private_ips": "yes"}, "true or false"),
    ({"webhook_allow_private_ips": True, "removal_policy": "retain"}, "is production"),
    ({"throttle": {}}, "unknown settings"),
    ({"projects": {"Bad_Id": {}}}, "invalid project id"),
    ({"projects": {"p": {"readers": []}}}, "unknown settings"),
    ({"projects": {"p": {"read": ["arn:aws:iam::123456789012:group/devs"]}}}, "not an IAM role or user"),
    ({"account": "123456789012", "projects": {"p": {"write": ["arn:aws:iam::210987654321:role/x"]}}},
     "not the environment's account"),
])
def test_invalid_settings_fail_with_a_clear_message(settings, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load("dev", {"dev": settings})


def test_webhooks_to_private_addresses_are_off_unless_a_development_environment_asks():
    assert not config.load("dev", {"dev": {}}).webhook_allow_private_ips
    assert config.load("dev", {"dev": {"webhook_allow_private_ips": True}}).webhook_allow_private_ips


def test_unknown_environment_lists_the_declared_ones():
    with pytest.raises(config.ConfigError, match="declares dev, prod"):
        config.load("qa", {"dev": {}, "prod": {}})


def test_principals_keep_paths_and_kinds():
    env = config.load("dev", {"dev": {"projects": {"p": {
        "read": ["arn:aws:iam::123456789012:role/team/analysts"],
        "write": ["arn:aws:iam::123456789012:user/alice"]}}}})
    (project,) = env.projects
    assert [(p.kind, p.arn) for p in project.read] == [("role", "arn:aws:iam::123456789012:role/team/analysts")]
    assert project.write[0].kind == "user"
