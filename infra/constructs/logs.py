"""Log groups with the environment's retention and removal policy."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import EnvironmentConfig


def log_group(scope: Construct, id: str, config: EnvironmentConfig) -> logs.LogGroup:
    group = logs.LogGroup(scope, id, removal_policy=RemovalPolicy.RETAIN if config.retain else RemovalPolicy.DESTROY)
    # Any retention CloudWatch accepts (checked in infra/config.py), not only RetentionDays' names.
    group.node.default_child.retention_in_days = config.log_retention_days
    return group
