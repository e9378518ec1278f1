"""Traces and evaluation datasets: mlreg stores neither (docs/compatibility.md). Their list routes,
which the MLflow client and mlflow-export-import call while exporting a whole server, answer as an
MLflow server that holds none: an empty page (`{}`, protobuf JSON of an empty list), after MLflow's
own checks of the request (the route's message), so tools see "none" rather than "broken"."""

from __future__ import annotations

from shared.http import Request
from shared.message import Empty
from shared.tracking import messages


def search_traces(req: Request, msg: messages.SearchTraces) -> dict:
    """GET /api/2.0/mlflow/traces (the 2.x client, and the 3.x client's fallback)."""
    return {}


def search_traces_v3(req: Request, msg: messages.SearchTracesV3) -> dict:
    """POST /api/3.0/mlflow/traces/search (the 3.x client)."""
    return {}


def search_datasets(req: Request, msg: Empty) -> dict:
    """POST /api/3.0/mlflow/datasets/search (`mlflow.genai.search_datasets`)."""
    return {}
