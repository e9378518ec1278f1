"""Browser tests of the web UI: Playwright (pip) drives Debian's Chromium (`apt-get install chromium`;
Playwright's own browser download does not work here) against a `mlreg serve` seeded by
examples/train.py, as `./dev run` seeds it. Every test of this folder runs on one xdist worker
(`xdist_group`), so the seed and the browser are made once. Screenshots of each step are kept in
build/ui-screenshots/<test>/ (git-ignored)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import Service, start_service, stop_service

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MLREG_CHROMIUM", "/usr/lib/chromium/chromium")
# Headless, and none of Chromium's own traffic: this machine's network refuses it (docs/ui.md).
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "build" / "ui-screenshots"
TIMEOUT_MS = 30_000  # generous: two cores shared with the rest of the suite


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the group into each test's id
def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.xdist_group("ui"))


@dataclass
class Seeded:
    service: Service
    write_token: str
    read_token: str
    experiment_link: str  # what the example printed
    example_output: str

    @property
    def base(self) -> str:
        return self.service.uri() + "/"

    def client(self, token: str | None = None):
        import mlflow

        os.environ["MLFLOW_TRACKING_TOKEN"] = token or self.write_token
        mlflow.set_tracking_uri(self.service.uri())
        return mlflow.MlflowClient(self.service.uri())


def mlreg(service: Service, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "mlreg.cli", *args, "--data-dir", str(service.data_dir)],
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


@pytest.fixture(scope="session")
def seeded(tmp_path_factory) -> Seeded:
    """A service holding what `./dev run` leaves: the example's experiment, runs and model."""
    service = start_service(tmp_path_factory.mktemp("ui") / "data")
    env = {**os.environ, "MLFLOW_TRACKING_URI": service.uri(), "MLFLOW_TRACKING_TOKEN": service.token}
    example = subprocess.run([sys.executable, str(ROOT / "examples" / "train.py")], env=env, capture_output=True,
                             text=True, timeout=600)
    assert example.returncode == 0, example.stderr[-3000:]
    link = re.search(r"Web UI of the experiment: (\S+)", example.stdout)
    assert link, example.stdout
    read = mlreg(service, "token", "create", "--project", "default", "--role", "read", "--name", "browser")
    yield Seeded(service, service.token, read, link[1], example.stdout)
    stop_service(service)


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: pip install -e '.[ui]' (./dev test installs it)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: apt-get install -y chromium (./dev test installs it)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Visit:
    """A browser context (its own cookies) and one page, with every answer the UI got recorded."""

    page: object
    base: str
    answers: list[tuple[int, str, str]] = field(default_factory=list)  # (status, method, url)
    shots: Path | None = None
    step: int = 0

    def failures(self, expected: set[tuple[int, str]] = frozenset()) -> list[tuple[int, str, str]]:
        """Answers of 400 and above, but those expected as (status, path below the project)."""
        return [(s, m, u) for s, m, u in self.answers
                if s >= 400 and (s, u[len(self.base):].split("?")[0]) not in expected]

    def shot(self, name: str) -> None:
        self.step += 1
        self.page.wait_for_timeout(400)  # let it finish drawing what the test saw (the UI polls: never idle)
        self.page.screenshot(path=str(self.shots / f"{self.step:02d}-{name}.png"))

    def sign_in(self, token: str) -> None:
        self.page.fill("#token", token)
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state()


@pytest.fixture
def visit(browser, seeded, request):
    """`visit()` opens a new browser context on the project's UI."""
    contexts = []

    def open_visit(base: str | None = None) -> Visit:
        context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        folder = SCREENSHOTS / request.node.name / str(len(contexts))
        folder.mkdir(parents=True, exist_ok=True)
        found = Visit(page, base or seeded.base, shots=folder)
        page.on("response", lambda r: found.answers.append((r.status, r.request.method, r.url)))
        # A request the browser gave up on (not one it dropped itself, as navigating away does).
        page.on("requestfailed", lambda r: "ERR_ABORTED" not in (r.failure or "")
                and found.answers.append((599, r.method, r.url)))
        return found

    yield open_visit
    for context in contexts:
        context.close()
