"""Per-environment settings, read from the `mlreg:environments` context in cdk.json.

Every key has a default below, so an environment a user adds needs only what differs. Values are
checked here, before any construct exists, so a typo fails `cdk synth` with a clear message instead
of a failed deployment."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from shared.projects import is_project_id

ENVIRONMENTS_KEY = "mlreg:environments"

DEFAULTS: dict[str, Any] = {
    "account": None,  # None: the account of the credentials `cdk` runs with
    "region": None,  # None: the region of the credentials `cdk` runs with
    "removal_policy": "destroy",  # "destroy" | "retain": what `cdk destroy` does to data and logs
    "deletion_protection": None,  # None: on when removal_policy is "retain"
    "log_retention_days": 14,
    "noncurrent_version_days": 30,  # how long overwritten or deleted objects stay recoverable
    "s3_access_logs": False,  # server access logs of the data bucket, into a second bucket
    "throttling": {"rate_limit": 50, "burst_limit": 100},  # requests/s for the whole stage
    "authorizer_cache_seconds": 60,  # a revoked token keeps working at most this long
    "cors_origin": None,  # the web front end's origin; None: no CORS preflight routes
    # Webhooks may call private and loopback addresses (MLflow's MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS); refused
    # where removal_policy is "retain" (production data).
    "webhook_allow_private_ips": False,
    "waf_web_acl_arn": None,  # an existing regional WAF web ACL to associate with the stage
    "api_cloudwatch_role": True,  # create API Gateway's account-level logging role (see docs)
    "alarms": {"emails": [], "topic_arn": None},
    "projects": {},
}

# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
_ACCOUNT = re.compile(r"^\d{12}$")
_IAM_PRINCIPAL = re.compile(
    r"^arn:aws[\w-]*:iam::(?P<account>\d{12}):(?P<kind>role|user)/(?:[\w+=,.@/-]+/)?(?P<name>[\w+=,.@-]+)$")


class ConfigError(ValueError):
    """A setting in cdk.json that cannot be deployed."""


@dataclass(frozen=True)
class Principal:
    arn: str
    account: str
    kind: str  # "role" | "user"


@dataclass(frozen=True)
class Project:
    id: str
    description: str
    read: tuple[Principal, ...]
    write: tuple[Principal, ...]


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str
    account: str | None
    region: str | None
    retain: bool
    deletion_protection: bool
    log_retention_days: int
    noncurrent_version_days: int
    s3_access_logs: bool
    rate_limit: float
    burst_limit: int
    authorizer_cache_seconds: int
    cors_origin: str | None
    waf_web_acl_arn: str | None
    api_cloudwatch_role: bool
    alarm_emails: tuple[str, ...]
    alarm_topic_arn: str | None
    projects: tuple[Project, ...] = field(default=())
    webhook_allow_private_ips: bool = False

    @property
    def stack_name(self) -> str:
        return f"mlreg-{self.name}"


def environment_names(context: Mapping[str, Any] | None) -> list[str]:
    return list((context or {}).keys())


def load(name: str, environments: Mapping[str, Any] | None) -> EnvironmentConfig:
    """The settings of environment `name`, defaults filled in and checked."""
    environments = environments or {}
    if name not in environments:
        known = ", ".join(environments) or "none"
        raise ConfigError(f"Unknown environment {name!r}: cdk.json context '{ENVIRONMENTS_KEY}' declares {known}")
    raw = environments[name] or {}
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"Environment {name!r}: unknown settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **raw}
    where = f"Environment {name!r}"

    if not re.fullmatch(r"[a-z][a-z0-9-]{0,20}", name):
        raise ConfigError(f"{where}: names are 1-21 lowercase letters, digits and dashes (they prefix resource names)")
    account = s["account"]
    if account is not None and not _ACCOUNT.match(str(account)):
        raise ConfigError(f"{where}: account must be a 12-digit AWS account id, got {account!r}")
    if s["removal_policy"] not in ("destroy", "retain"):
        raise ConfigError(f"{where}: removal_policy is 'destroy' or 'retain', got {s['removal_policy']!r}")
    retain = s["removal_policy"] == "retain"
    throttling = {**DEFAULTS["throttling"], **(s["throttling"] or {})}
    alarms = {**DEFAULTS["alarms"], **(s["alarms"] or {})}
    for key in ("log_retention_days", "noncurrent_version_days"):
        if not isinstance(s[key], int) or s[key] < 1:
            raise ConfigError(f"{where}: {key} must be a positive number of days")
    if s["log_retention_days"] not in LOG_RETENTION_DAYS:
        raise ConfigError(f"{where}: log_retention_days must be one of {LOG_RETENTION_DAYS}")
    if not 0 <= int(s["authorizer_cache_seconds"]) <= 3600:
        raise ConfigError(f"{where}: authorizer_cache_seconds is 0-3600 (API Gateway's limit)")
    if not isinstance(s["webhook_allow_private_ips"], bool):
        raise ConfigError(f"{where}: webhook_allow_private_ips is true or false")
    if s["webhook_allow_private_ips"] and retain:
        raise ConfigError(f"{where}: webhook_allow_private_ips is for development environments; an environment "
                          "that retains its data (removal_policy 'retain') is production")

    config = EnvironmentConfig(
        name=name,
        account=str(account) if account else None,
        region=s["region"],
        retain=retain,
        deletion_protection=retain if s["deletion_protection"] is None else bool(s["deletion_protection"]),
        log_retention_days=s["log_retention_days"],
        noncurrent_version_days=s["noncurrent_version_days"],
        s3_access_logs=bool(s["s3_access_logs"]),
        rate_limit=float(throttling["rate_limit"]),
        burst_limit=int(throttling["burst_limit"]),
        authorizer_cache_seconds=int(s["authorizer_cache_seconds"]),
        cors_origin=s["cors_origin"] or None,
        waf_web_acl_arn=s["waf_web_acl_arn"] or None,
        api_cloudwatch_role=bool(s["api_cloudwatch_role"]),
        alarm_emails=tuple(alarms["emails"] or ()),
        alarm_topic_arn=alarms["topic_arn"] or None,
        projects=tuple(_project(where, pid, spec) for pid, spec in (s["projects"] or {}).items()),
        webhook_allow_private_ips=s["webhook_allow_private_ips"],
    )
    _check_principal_accounts(config)
    return config


def _project(where: str, project_id: str, spec: Mapping[str, Any] | None) -> Project:
    spec = spec or {}
    unknown = set(spec) - {"description", "read", "write"}
    if unknown:
        raise ConfigError(f"{where}, project {project_id!r}: unknown settings {sorted(unknown)}")
    if not is_project_id(project_id):
        raise ConfigError(f"{where}: invalid project id {project_id!r} (1-63 lowercase letters, digits and dashes)")
    return Project(
        id=project_id,
        description=str(spec.get("description") or ""),
        read=tuple(_principal(where, project_id, arn) for arn in spec.get("read") or ()),
        write=tuple(_principal(where, project_id, arn) for arn in spec.get("write") or ()),
    )


def _principal(where: str, project_id: str, arn: str) -> Principal:
    m = _IAM_PRINCIPAL.match(str(arn))
    if not m:
        raise ConfigError(f"{where}, project {project_id!r}: {arn!r} is not an IAM role or user ARN "
                          "(arn:aws:iam::<account>:role/<name> or :user/<name>)")
    return Principal(arn=str(arn), account=m["account"], kind=m["kind"])


def _check_principal_accounts(config: EnvironmentConfig) -> None:
    """Managed policies can only be attached to roles and users of the stack's own account. With an
    AWS_IAM authoriser that is also all a caller needs: no API resource policy is involved."""
    for project in config.projects:
        for principal in project.read + project.write:
            if config.account and principal.account != config.account:
                raise ConfigError(
                    f"Environment {config.name!r}, project {project.id!r}: {principal.arn} is in account "
                    f"{principal.account}, not the environment's account {config.account}. Grant access to a "
                    "role of this account and let the other account's callers assume it.")
