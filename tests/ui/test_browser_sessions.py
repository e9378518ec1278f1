"""Signing in from a browser, in Chromium: what a read session may do, signing out, one project's
session never opening another, links from other sites, the client's printed run links, and
uploaded scripts never running on the UI's origin."""

from __future__ import annotations

import re

import requests
from playwright.sync_api import expect

from tests.ui.conftest import mlreg
from tests.ui.test_walk import run_id_of


def test_a_read_session_browses_and_a_write_is_refused_with_a_clear_message(seeded, visit):
    v = visit()
    v.page.goto(seeded.base + "#/models/quickstart-linear/versions/1")
    v.sign_in(seeded.read_token)
    expect(v.page.get_by_role("heading", name="Version 1")).to_be_visible()
    v.page.get_by_placeholder("Name").fill("reviewed")
    v.page.get_by_placeholder("Value").fill("yes")
    v.page.get_by_role("button", name="Add", exact=True).click()
    expect(v.page.get_by_text("Signed in with a read token: this needs a write token").first).to_be_visible()
    v.shot("read-session-refused")
    assert "reviewed" not in seeded.client().get_model_version("quickstart-linear", "1").tags
    assert v.failures({(403, "ajax-api/2.0/mlflow/model-versions/set-tag")}) == []
    assert (403, "POST", seeded.base + "ajax-api/2.0/mlflow/model-versions/set-tag") in v.answers


def test_sign_out_ends_the_session(seeded, visit):
    v = visit()
    v.page.goto(seeded.base)
    v.sign_in(seeded.read_token)
    expect(v.page.get_by_role("link", name="Experiments", exact=True).first).to_be_visible()
    cookie = {c["name"]: c["value"] for c in v.page.context.cookies()}["mlreg_session"]
    v.page.goto(seeded.base + "signout")
    expect(v.page.get_by_role("heading", name=re.compile("Signed out"))).to_be_visible()
    v.shot("signed-out")
    assert "mlreg_session" not in {c["name"] for c in v.page.context.cookies()}
    v.page.get_by_role("link", name="Sign in again").click()
    expect(v.page.get_by_role("heading", name=re.compile("Sign in to project"))).to_be_visible()
    replayed = requests.get(seeded.base + "ajax-api/2.0/mlflow/experiments/search", cookies={"mlreg_session": cookie})
    assert (replayed.status_code, replayed.json()["error_code"]) == (401, "UNAUTHENTICATED")


def test_a_session_of_one_project_never_opens_another(seeded, visit):
    mlreg(seeded.service, "project", "create", "elsewhere")
    v = visit()
    v.page.goto(seeded.base)
    v.sign_in(seeded.write_token)
    other = seeded.service.uri("elsewhere") + "/"
    in_page = v.page.evaluate("url => fetch(url).then(r => r.status)", other + "ajax-api/2.0/mlflow/experiments/search")
    assert in_page == 401  # the browser does not even send default's cookie there
    v.page.goto(other)
    expect(v.page.get_by_role("heading", name=re.compile("Sign in to project elsewhere"))).to_be_visible()
    cookie = {c["name"]: c["value"] for c in v.page.context.cookies()}["mlreg_session"]
    forged = requests.get(other + "ajax-api/2.0/mlflow/experiments/search", cookies={"mlreg_session": cookie})
    assert forged.status_code == 401  # and sent anyway, it names no session of that project
    v.page.fill("#token", seeded.write_token)  # default's token on elsewhere's sign-in page
    v.page.click("button[type=submit]")
    expect(v.page.get_by_role("alert")).to_contain_text("belongs to project default")


def test_links_from_other_sites_and_the_clients_run_links_open_signed_in(seeded, visit):
    """The session cookie is SameSite=Strict, so a link from another site (chat, CI logs) arrives
    without it; the page reloads itself once as same-site and the session is there."""
    v = visit()
    v.page.goto(seeded.base)
    v.sign_in(seeded.read_token)
    printed = re.findall(r"View run \S+ at: (\S+)", seeded.example_output)
    assert len(printed) == 3
    elsewhere = v.page.context.new_page()
    elsewhere.set_content(f'<a href="{printed[0]}">the run</a>')  # an opaque origin: cross-site
    elsewhere.get_by_role("link", name="the run").click()
    run_id = printed[0].rsplit("/", 1)[1]
    run_name = next(r.info.run_name for r in seeded.client().search_runs(
        [seeded.client().get_experiment_by_name("quickstart").experiment_id]) if r.info.run_id == run_id)
    expect(elsewhere.get_by_role("heading", name=run_name)).to_be_visible()
    assert elsewhere.url == printed[0]


EVIL_HTML = """<html><body><h1>report</h1><script>
fetch("%(base)sajax-api/2.0/mlflow/experiments/create", {method: "POST", credentials: "include",
  headers: {"Content-Type": "application/json"}, body: JSON.stringify({name: "pwned-html"})});
try { parent.document.title = "pwned"; } catch (e) {}
</script></body></html>"""
EVIL_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="50" height="50"
  onload="fetch('%(base)sajax-api/2.0/mlflow/experiments/create', {method: 'POST', credentials: 'include',
  headers: {'Content-Type': 'application/json'}, body: JSON.stringify({name: 'pwned-svg'})})">
<circle cx="25" cy="25" r="20" fill="red"/><script>try { parent.document.title = "pwned"; } catch (e) {}</script>
</svg>"""


def test_uploaded_scripts_never_run_on_the_uis_origin(seeded, visit):
    client = seeded.client()
    run_id = run_id_of(client, "lr-0.01")
    client.log_text(run_id, EVIL_HTML % {"base": seeded.base}, "reports/evil.html")
    client.log_text(run_id, EVIL_SVG % {"base": seeded.base}, "reports/evil.svg")
    experiment = client.get_experiment_by_name("quickstart").experiment_id
    v = visit()
    v.page.goto(f"{seeded.base}#/experiments/{experiment}/runs/{run_id}/artifacts")
    v.sign_in(seeded.write_token)
    v.page.get_by_text("reports", exact=True).click()
    v.page.get_by_text("evil.html", exact=True).click()  # the UI's previews show both
    preview = v.page.frame_locator("iframe.mlflow-html-iframe")
    expect(preview.get_by_role("heading", name="report")).to_be_visible()
    v.shot("preview-html")
    v.page.get_by_text("evil.svg", exact=True).click()
    expect(v.page.locator("img[src^='blob:']").first).to_be_visible()  # fetched, shown as an image
    v.page.wait_for_timeout(1500)  # time for a script to run, were it to run
    v.shot("preview-svg")
    for path in ("get-artifact?run_uuid=%s&path=reports/evil.html", "get-artifact?run_uuid=%s&path=reports/evil.svg",
                 "ajax-api/2.0/mlflow-artifacts/artifacts/%s/%%s/artifacts/reports/evil.html" % experiment):
        url = seeded.base + path % run_id
        with v.page.expect_download():  # opened directly: saved, never rendered on this origin
            v.page.evaluate("url => { const a = document.createElement('a'); a.href = url; document.body.append(a);"
                            " a.click(); }", url)
    assert v.page.title() != "pwned"
    names = {e.name for e in client.search_experiments()}
    assert not {"pwned-html", "pwned-svg"} & names
    cookie = {c["name"]: c["value"] for c in v.page.context.cookies()}["mlreg_session"]
    served = requests.get(seeded.base + f"get-artifact?run_uuid={run_id}&path=reports/evil.html",
                          cookies={"mlreg_session": cookie})
    assert served.status_code == 200 and "pwned-html" in served.text
    assert served.headers["Content-Type"] == "text/plain"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Content-Disposition"] == 'attachment; filename="evil.html"'
    assert "sandbox" in served.headers["Content-Security-Policy"]
