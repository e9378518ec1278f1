"""UI calls for features mlreg does not have, answered as MLflow's own server answers them when the
feature is off, so the UI hides the feature instead of showing an error."""

from __future__ import annotations

from shared.http import Request
from shared.message import Empty


def no_user(req: Request, msg: Empty) -> dict:
    """No user accounts (tokens instead): without a `user` the UI shows no account menu."""
    return {}


def no_gateway(req: Request, msg: Empty) -> dict:
    """MLflow's answer without an AI gateway: "pretend an empty gateway service is running"."""
    return {"endpoints": []}


def no_datasets(req: Request, msg: Empty) -> dict:
    return {}  # no dataset summaries (protobuf JSON leaves an empty list out)


def no_assistant(req: Request, msg: Empty) -> dict:
    return {"providers": {}, "projects": {}, "remote_access_allowed": False}


def no_assistant_providers(req: Request, msg: Empty) -> dict:
    return {"providers": []}


def no_telemetry(req: Request, msg: Empty) -> dict:
    """GET: telemetry off (MLflow's fallback config); POST: records are not taken."""
    if req.method == "POST":
        return {"status": "disabled"}
    return {"disable_ui_telemetry": True, "disable_ui_events": [], "ui_rollout_percentage": 0}


def no_trace_metrics(req: Request, msg: Empty) -> dict:
    return {}  # no traces, so no data points


def no_traces(req: Request, msg: Empty) -> dict:
    return {}
