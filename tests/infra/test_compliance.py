"""cdk-nag's AwsSolutions checks and cfn-lint, on every environment's template."""

from __future__ import annotations

import json

import pytest


def _nag(synthesis) -> dict:
    (report,) = [r for r in synthesis.report.get("pluginReports", []) if r["pluginName"] == "AwsSolutions"]
    return report


def test_cdk_nag_ran_and_has_no_unacknowledged_findings(synthesis):
    report = _nag(synthesis)
    findings = [f"{v['ruleName']} at {c['constructPath']}: {v['description']}"
                for v in report.get("violations", []) for c in v["violatingConstructs"]]
    assert not findings, "unacknowledged cdk-nag findings:\n" + "\n".join(findings)
    assert report["conclusion"] == "success"
    assert synthesis.error is None


def test_every_acknowledgment_has_a_reason(synthesis):
    acknowledged = _nag(synthesis).get("suppressedViolations", [])
    assert acknowledged, "the report lists acknowledged findings (is cdk-nag wired in?)"
    for finding in acknowledged:
        assert len(finding.get("reason", "").strip()) >= 20, finding["acknowledgedId"]


def test_no_acknowledgment_hides_a_whole_rule_for_iam_wildcards(synthesis):
    """IAM5 is acknowledged per resource, so a new wildcard always needs its own reason; wildcard
    actions only for CDK's own BucketDeployment handler (infra/constructs/ui.py), one by one."""
    for finding in _nag(synthesis).get("suppressedViolations", []):
        if finding["ruleName"].startswith("AwsSolutions-IAM5"):
            acknowledged = finding["acknowledgedId"]
            assert "[Resource::" in acknowledged or (
                "[Action::" in acknowledged and "/Custom::CDKBucketDeployment" in finding["acknowledgedAt"]), finding


def test_no_acknowledgment_is_stale(synthesis):
    """Every acknowledgment in the code matched a finding: none outlives what it excused."""
    used = {(f["acknowledgedAt"], f["acknowledgedId"]) for f in _nag(synthesis).get("suppressedViolations", [])}
    declared = set()
    for stack in synthesis.templates:
        metadata = json.loads((synthesis.outdir / f"mlreg-{stack}.metadata.json").read_text())
        for path, entries in metadata.items():
            for entry in entries:
                if entry["type"] == "aws:cdk:acknowledged-rules":
                    declared |= {(path.lstrip("/"), rule) for rule in entry["data"]}
    assert declared, "acknowledgments are recorded in the cloud assembly's metadata"
    assert not declared - used, sorted(declared - used)


@pytest.fixture(scope="module")
def lint_matches(synthesis):
    from cfnlint.api import ManualArgs, lint

    return {env: lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"]))
            for env, template in synthesis.templates.items()}


def test_cfn_lint_reports_no_errors(lint_matches):
    errors = [f"{env}: {m.rule.id} {m.message} ({'/'.join(map(str, m.path or []))})"
              for env, matches in lint_matches.items() for m in matches if m.rule.id.startswith("E")]
    assert not errors, "\n".join(errors)
