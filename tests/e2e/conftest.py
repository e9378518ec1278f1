"""Test-only settings of the MLflow client for the end-to-end suite."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def quick_version_wait():
    """The client waits for a new version's READY by asking again every 3 s (both client lines). A
    test's package is copied in well under a second, so most of that wait was the client's sleep:
    it asks every 0.2 s here. The same wait loop runs, against the same answers."""
    from mlflow.store.model_registry import abstract_store

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(abstract_store, "AWAIT_MODEL_VERSION_CREATE_SLEEP_INTERVAL_SECONDS", 0.2)
        yield


def pytest_collection_modifyitems(items):
    """The end-to-end suite runs once per MLflow client line; a test that uses no MLflow client would
    only repeat itself on the second line (2.x), so it runs with 3.x alone."""
    from importlib.metadata import version

    if int(version("mlflow").split(".")[0]) >= 3:
        return
    once = pytest.mark.skip(reason="no MLflow client in it: it runs in the 3.x suite (client_free)")
    for item in items:
        if item.get_closest_marker("client_free"):
            item.add_marker(once)
