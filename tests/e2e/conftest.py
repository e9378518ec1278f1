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
