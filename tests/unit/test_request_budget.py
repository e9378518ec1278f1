"""Every route holds to its request budget (bench/request_budget.py BUDGETS), measured with the bench
itself on small data: the counts asserted here do not depend on the data's size (search_runs' do,
and are checked through their ratio)."""

from __future__ import annotations

import pytest

from bench import request_budget
from bench.request_budget import BUDGETS, KNOWN_MISSES, TARGETS

pytestmark = pytest.mark.xdist_group("request_budget")  # one worker measures: the bench runs once per worker


@pytest.fixture(scope="module")
def rows():
    # 3 versions instead of 50: no registry count depends on the number of versions.
    return {r.label: r for r in request_budget.run_all(run_sizes=(), n_versions=3)}


def test_every_route_has_a_scenario(rows):
    """Routes added since the bench's scenarios were written show up as "(no scenario)" rows: the
    webhook routes are new (another engineer's), server-features shares server-info's handler, and
    the UI's answers for absent features (shared/ui/absent.py) are constants: one is measured."""
    from shared.routes import ROUTES

    constants = {f"(no scenario) {r.method} {r.path}" for r in ROUTES if r.handler.startswith("shared.ui.absent:")}
    missing = [label for label in rows if label.startswith("(no scenario)") and label not in constants
               and "/webhooks" not in label and not label.endswith("/server-features")]
    assert not missing, missing


@pytest.mark.parametrize("label", sorted(BUDGETS))
def test_route_within_budget(rows, label):
    """Request totals exactly; round trips where the calls are sequential (their count is then
    deterministic). Where calls run in parallel the timed overlap depends on machine load, so the
    bench reports those round trips and the issue-8 targets below check the ones that matter."""
    if label not in rows:
        pytest.skip(f"{label}: its route is not in the route table yet")
    row, (ddb, s3, trips) = rows[label], BUDGETS[label]
    detail = f"{label}: {row.dynamodb} DynamoDB, {row.s3} S3 requests in {row.waves} round trips ({row.operations})"
    assert row.dynamodb <= ddb and row.s3 <= s3, f"{detail}; budget {BUDGETS[label]}"
    if trips == ddb + s3:
        assert row.waves <= trips, f"{detail}; budget {BUDGETS[label]}"


@pytest.mark.parametrize("label", sorted(TARGETS))
def test_issue_8_round_trip_targets(rows, label):
    """get-run, get-experiment, get-model-version, get-by-alias: one round trip; create-run one write;
    log-batch of 1,000 metrics at most 4. Known misses are listed in bench/request_budget.py and fail
    strictly as xfail, so a fix shows up as XPASS -> remove it from the list."""
    if label not in rows:
        pytest.skip(f"{label}: its route is not in the route table yet")
    if label in KNOWN_MISSES:
        pytest.xfail(KNOWN_MISSES[label]) if rows[label].waves > TARGETS[label] else pytest.fail(
            f"{label} now meets its target: remove it from KNOWN_MISSES")
    assert rows[label].waves <= TARGETS[label], (label, rows[label].operations)


@pytest.fixture(scope="module")
def search_rows():
    return {r.label: r for r in request_budget.run_all(run_sizes=(60, 300), n_versions=0, page=5, scenarios=("search",))}


def test_search_runs_reads_bounded_by_page(search_rows):
    """Issue 8's target: a first page ordered by a metric reads about the same number of items
    whatever the experiment's size (here 60 vs 300 runs, pages of 5)."""
    small = search_rows["runs/search 60 runs: filter + order by metric, page of 5"]
    big = search_rows["runs/search 300 runs: filter + order by metric, page of 5"]
    assert big.items_read / small.items_read < 1.5, (small.items_read, big.items_read)


def test_search_runs_pages_in_two_round_trips(search_rows):
    """Issue 15's target: every indexed order (with or without filters) costs at most 2 sequential
    round trips: the index Query (beside the experiment's), then a BatchGetItem of summaries."""
    searches = {label: row for label, row in search_rows.items() if label.startswith("runs/search")}
    assert len(searches) == 12
    for label, row in searches.items():
        assert row.waves <= 2, (label, row.operations)
        assert set(row.operations) <= {"Query", "BatchGetItem"}, (label, row.operations)
