"""The seed's workflow, walked in Chromium as a person would: from the link the example printed,
through the runs to registering, staging and aliasing a model. MLflow's registry documents these
UI workflows; every request the UI makes on the way must succeed."""

from __future__ import annotations

import hashlib
import re

import mlflow
from playwright.sync_api import expect

from tests.e2e.test_registry import eventually, unique

RUNS = ("lr-0.01", "lr-0.1", "lr-0.5")


def test_the_seed_workflow_in_the_browser(seeded, visit):
    v = visit()
    page, client = v.page, seeded.client()
    name = unique("walked")

    # The example's printed link: the sign-in page, then the experiment's runs (not the GenAI view).
    page.goto(seeded.experiment_link)
    expect(page.get_by_role("heading", name=re.compile("Sign in to project"))).to_be_visible()
    v.shot("sign-in")
    v.sign_in(seeded.write_token)
    # The link itself, or the UI's own rewrite of it into the runs view with its filters (which it
    # may make before the first look, as the service answers faster).
    expect(page).to_have_url(re.compile(re.escape(seeded.experiment_link) + r"(/runs\?.*)?$"))
    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
    for run_name in RUNS:
        expect(page.get_by_role("link", name=run_name, exact=True)).to_be_visible()
    v.shot("experiment-runs")

    # The experiments page lists the example's experiment.
    page.get_by_role("link", name="Experiments", exact=True).first.click()
    listed = page.get_by_role("row").get_by_role("link", name="quickstart", exact=True)
    expect(listed).to_be_visible()
    v.shot("experiments")

    # A run: params, metrics and their chart, artifacts (the logged model's files).
    listed.click()
    page.get_by_role("link", name="lr-0.5", exact=True).click()
    expect(page.get_by_role("heading", name="lr-0.5")).to_be_visible()
    params = page.get_by_role("table").filter(has_text="Parameter")
    expect(params.get_by_role("row").filter(has_text="epochs")).to_contain_text("30")
    expect(page.get_by_role("table").filter(has_text="Metric")).to_contain_text("rmse")
    v.shot("run")
    page.get_by_role("tab", name="Model metrics").click()
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_be_visible()
    expect(page.get_by_text("mse", exact=True).first).to_be_visible()
    v.shot("run-metric-chart")
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("MLmodel", exact=True).click()
    expect(page.get_by_text("python_function").first).to_be_visible()
    v.shot("run-artifacts")

    # Register Model from the run's logged model, as a new model.
    page.get_by_role("link", name="logged model").click()
    register(page, name, new=True)
    v.shot("registered")
    # the UI does not wait for READY as the client does: the registry worker copies the package meanwhile
    first = eventually(lambda: (mv := client.get_model_version(name, "1")).status != "PENDING_REGISTRATION" and mv)
    assert first.status == "READY" and first.run_id == run_id_of(client, "lr-0.5")

    # A second version, from another run, into the existing model picked in the dropdown.
    page.goto(seeded.experiment_link)
    page.get_by_role("link", name="lr-0.1", exact=True).click()
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_role("link", name="logged model").click()
    register(page, name, new=False, shots=v)
    assert client.get_model_version(name, "2").run_id == run_id_of(client, "lr-0.1")

    # Registered Models lists it with its latest version; its page lists both versions.
    page.get_by_role("link", name="Model registry").first.click()
    promotion = page.get_by_role("dialog").filter(has_text="new Model Registry UI")  # MLflow's, on a first visit
    promotion.get_by_role("button", name="Close").click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))
    expect(row).to_contain_text("Version 2")
    v.shot("registered-models")
    row.get_by_role("link", name=name, exact=True).click()
    for number in ("1", "2"):
        expect(page.get_by_role("link", name=f"Version {number}", exact=True)).to_be_visible()
    v.shot("model")

    # The version page shows the stage; an alias set in the dialog resolves through the client.
    page.get_by_role("link", name="Version 2", exact=True).click()
    expect(page.get_by_text("Stage (deprecated):")).to_be_visible()
    page.get_by_text("Add", exact=True).first.click()
    aliases = page.get_by_role("dialog").get_by_role("combobox")
    aliases.fill("champion")
    page.keyboard.press("Enter")
    v.shot("alias-dialog")
    page.get_by_role("dialog").get_by_role("button", name="Save aliases").click()
    expect(page.get_by_text("champion").first).to_be_visible()
    assert eventually(lambda: client.get_registered_model(name).aliases) == {"champion": "2"}  # the UI's save landed
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    eventually(lambda: client.get_model_version(name, "2").status == "READY")  # its package is copied
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert model.metadata.run_id == run_id_of(client, "lr-0.1")
    v.shot("version")

    # The stage menu (MLflow's classic registry view) moves it to Staging, then Production.
    page.get_by_role("switch", name="New model registry UI").click()
    page.get_by_role("button", name="Disable").click()
    for current, target in (("None", "Staging"), ("Staging", "Production")):
        page.get_by_text(current, exact=True).first.click()
        page.get_by_role("menuitem").filter(has_text=target).click()
        v.shot(f"transition-to-{target.lower()}")
        page.get_by_role("dialog").get_by_role("button", name="OK").click()
        expect(page.get_by_text(target, exact=True).first).to_be_visible()
        assert client.get_model_version(name, "2").current_stage == target
    v.shot("production")

    # The version's package page: its semantic version, files with sizes and SHA-256, downloads.
    url = client.get_model_version(name, "2").tags["mlreg.package_url"]
    page.goto(url)
    expect(page.get_by_role("heading")).to_contain_text(f"{name} 1.1.0")
    local = mlflow.artifacts.download_artifacts(f"models:/{name}/2")
    digest = hashlib.sha256(open(f"{local}/MLmodel", "rb").read()).hexdigest()
    expect(page.get_by_role("row").filter(has_text="MLmodel")).to_contain_text(digest)
    with page.expect_download() as download:
        page.get_by_role("link", name="MLmodel", exact=True).click()
    assert hashlib.sha256(open(download.value.path(), "rb").read()).hexdigest() == digest
    v.shot("package")

    assert v.failures() == []


def register(page, name: str, new: bool, shots=None) -> None:
    page.get_by_role("button", name="Register model").click()
    page.locator("#selectedModel").click()
    if new:
        page.locator(".du-bois-light-select-item-option", has_text="Create New Model").click()
        page.get_by_role("dialog").locator("input#modelName").fill(name)
    else:
        page.locator(".du-bois-light-select-item-option", has_text=name).click()
    if shots:
        shots.shot("register-dialog")
    page.get_by_role("dialog").get_by_role("button", name="Register").click()
    expect(page.get_by_text("Model registered successfully")).to_be_visible()


def run_id_of(client, run_name: str) -> str:
    experiment = client.get_experiment_by_name("quickstart")
    (run,) = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{run_name}'")
    return run.info.run_id
