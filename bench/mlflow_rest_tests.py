"""Run MLflow's own REST end-to-end tests against `mlreg serve`: a compatibility measure written by others.

    python -m bench.mlflow_rest_tests <MLflow source checkout> [--reference] [--results out.jsonl] [-k EXPR]

The checkout needs MLflow's `tests/` folder (see docs/compatibility.md for how to get it; it is never
copied into this repository). The tracking, model-registry, artifact and webhook REST modules run with
each test's server fixture replaced by a fresh mlreg project and admin token (bench/mlflow_rest_plugin.py);
`--reference` runs the same selection with MLflow's own fixtures, i.e. against MLflow's server. Prints the
pass/fail counts and every failure with its first line, and writes one JSON line per test to --results.

What is left out, and why, is the table SKIPPED below: traces, GenAI, AI gateway, workspaces and
UI-internal routes (the issue's scope), and tests that read the server's own disk or start a server
with options of their own."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = (
    "tests/tracking/test_rest_tracking.py",
    "tests/tracking/test_model_registry.py",
    "tests/tracking/test_mlflow_artifacts.py",
    "tests/tracking/test_client_webhooks.py",
    "tests/webhooks/test_e2e.py",
)
# (regex on the test's node id, why it is not kept). Checked in order; both runs use the same table.
SKIPPED: tuple[tuple[str, str], ...] = (
    (r"\[file", "MLflow's file store (deprecated); the reference is the SQL store, as `mlflow server` on SQLite"),
    (r"trace|span|otel", "traces: not stored by mlreg (their list routes answer empty; tests/e2e/test_compat.py)"),
    (r"graphql", "UI-internal GraphQL endpoint"),
    (r"gateway", "AI gateway"),
    (r"prompt", "GenAI prompts and prompt lab"),
    (r"assessments|scorer|evaluation_dataset|dataset_experiment|(add|remove)_(multiple_)?(dataset|experiments)"
     r"|add_remove_experiments", "GenAI evaluation datasets, assessments and scorers"),
    (r"workspace", "MLflow workspaces (mlreg's projects play that role)"),
    (r"search_dataset_handler|get_metric_history_bulk_|get_metric_history_respects_max_results"
     r"|get_metric_history_with_page_token|upload_artifact_handler|logged_model_artifacts|get_logged_model_artifact"
     r"|test_rest_get_artifact_api_log_image", "UI-internal ajax-api routes (the web UI's private API)"),
    (r"test_artifacts\b|test_artifacts\[|test_create_model_version_with_(path_source|file_uri)",
     "assumes the server's artifact root is a folder on the test machine (file://)"),
    (r"test_create_model_version_with_validation_regex",
     "starts its own `mlflow server` with a server option (MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX)"),
    (r"test_logging_model_with_local_artifact_uri", "marked xfail by MLflow itself"),
    (r"test_mlflow_artifacts_rest_apis|test_log_artifact\b|test_log_artifact\[|proxied_artifact_root",
     "reads or writes the server's artifact directory on disk (mlreg keeps artifacts in S3)"),
    (r"test_mlflow_artifacts_example", "runs docker compose"),
)


def skip_reason(nodeid: str) -> str | None:
    for pattern, reason in SKIPPED:
        if re.search(pattern, nodeid):
            return reason
    return None


def _service(work: Path):
    from bench.e2e import start_mlreg

    # Receivers of MLflow's webhook tests listen on localhost; its retry test waits seconds, not minutes.
    return start_mlreg(work, ["--webhook-allow-private-ips", "--webhook-retry-delays", "1,1,1"])


def run(mlflow_root: Path, reference: bool, results: Path, keyword: str | None, timeout: int) -> list[dict]:
    """Run the selection in a pytest subprocess; returns one record per test."""
    missing = [m for m in MODULES if not (mlflow_root / m).exists()]
    if missing:
        raise SystemExit(f"{mlflow_root} lacks {', '.join(missing)}: point at a checkout of MLflow's repository")
    results.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlflow-rest-") as tmp:
        work = Path(tmp)
        # Neither MLflow's pytest options (strict markers, pytest-timeout) nor its conftest.py files, which
        # follow MLflow's internals of their own version: the plugin brings what the kept tests need.
        (work / "pytest.ini").write_text("[pytest]\n")
        env = {**os.environ, "MLREG_COMPAT_RESULTS": str(results),
               # MLflow's `tests` package must win over ours: its checkout is the working directory.
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true"}  # the reference's receivers are on localhost too
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_REGISTRY_URI"):
            env.pop(name, None)
        server = None if reference else _service(work)
        if server:
            env.update(MLREG_COMPAT_SERVICE=server.uri.rsplit("/projects/", 1)[0],
                       MLREG_COMPAT_DATA_DIR=str(work / "mlreg-data"))
        cmd = [sys.executable, "-m", "pytest", "-c", str(work / "pytest.ini"), "--rootdir", str(mlflow_root),
               "--noconftest", "-p", "bench.mlflow_rest_plugin", "-p", "no:cacheprovider", "-q",
               "-W", "ignore", *(["-k", keyword] if keyword else []), *MODULES]
        try:
            subprocess.run(cmd, cwd=mlflow_root, env=env, timeout=timeout)
        finally:
            if server:
                server.stop()
    return [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []


def summarize(records: list[dict]) -> dict[str, str]:
    """One outcome per test: failed if any phase failed, else skipped or passed."""
    outcome: dict[str, str] = {}
    for r in records:
        if r["outcome"] == "failed" or r["test"] not in outcome:
            outcome[r["test"]] = r["outcome"]
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mlflow_root", type=Path, help="a checkout of MLflow's repository (with tests/)")
    parser.add_argument("--reference", action="store_true", help="MLflow's own server fixtures, not mlreg")
    parser.add_argument("--results", type=Path, default=Path("mlflow-rest-results.jsonl"))
    parser.add_argument("-k", dest="keyword", help="pytest -k expression, to run some of the kept tests")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds for the whole run")
    args = parser.parse_args(argv)
    records = run(args.mlflow_root.resolve(), args.reference, args.results.resolve(), args.keyword, args.timeout)
    outcome = summarize(records)
    messages = {r["test"]: r["message"] for r in records if r["outcome"] == "failed"}
    for test in sorted(t for t, o in outcome.items() if o == "failed"):
        print(f"FAILED {test}: {messages.get(test, '')}")
    counts = Counter(outcome.values())
    target = "mlflow (reference)" if args.reference else "mlreg"
    print(f"{target}: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped "
          f"of {len(outcome)} kept tests; left out by design: {len(SKIPPED)} rules (bench/mlflow_rest_tests.py)")
    return 0 if not counts["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
