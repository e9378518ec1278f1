"""Traces and evaluation datasets: mlreg stores neither (docs/compatibility.md). Their list routes,
which the MLflow client and mlflow-export-import call while exporting a whole server, answer as an
MLflow server that holds none: an empty page (`{}`, protobuf JSON of an empty list), after MLflow's
own checks of the request, so tools see "none" rather than "broken"."""

from shared.http import Request
from shared.validation import max_results, require

SEARCH_TRACES_V3_MAX = 500


def _required_list(req: Request, field: str) -> None:
    require({field: req.list_param(field) or None}, field)  # an empty list is a missing value, as in protobuf


def search_traces(req: Request) -> dict:
    """GET /api/2.0/mlflow/traces (the 2.x client, and the 3.x client's fallback)."""
    _required_list(req, "experiment_ids")
    return {}


def search_traces_v3(req: Request) -> dict:
    """POST /api/3.0/mlflow/traces/search (the 3.x client)."""
    _required_list(req, "locations")
    max_results(req.json.get("max_results"), SEARCH_TRACES_V3_MAX, SEARCH_TRACES_V3_MAX)
    return {}


def search_datasets(req: Request) -> dict:
    """POST /api/3.0/mlflow/datasets/search (`mlflow.genai.search_datasets`)."""
    return {}
