"""The web UI's page and sign-in: the `ui` function's routes, which no authorizer guards (they are
how a browser gets a session). See docs/ui.md and docs/auth.md.

`/projects/<p>/` is MLflow's UI (the bundle's index.html; its scripts load from `static-files/`)
for a browser with a session of <p>, and a sign-in page for anyone else. Signing in posts a token
of <p> to `signin`, which sets the session cookie and sends the browser back to the page it came
for (the `#/...` part of the link, which never reaches a server, travels in the form)."""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
from functools import cache
from pathlib import Path
from urllib.parse import parse_qs

from shared import projects, sessions
from shared.http import Request, Response, cross_site
from shared.ui import messages

INDEX = "index.html"
# Defaults the page gives MLflow's UI where the browser has none yet (localStorage keys as the pinned
# bundle names them; tests/ui check that it still does). mlreg keeps runs and models, not traces, and
# has no AI assistant: MLflow 3.17 otherwise opens every experiment in its GenAI view (traces) and, on
# a local server, pops its assistant panel open on the first visit. The UI's own toggles still work.
UI_DEFAULTS = {"mlflow.workflowType_v1": '"machine_learning"', "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true"}
_DEFAULTS_SCRIPT = "<script>try{%s}catch(e){}</script>" % "".join(
    f"localStorage.getItem('{k}')||localStorage.setItem('{k}','{v}');" for k, v in UI_DEFAULTS.items())
_FRAGMENT = re.compile(r"^#/[\x21-\x7e]{0,2000}$")  # the UI's page routes: printable, no spaces

_STYLE = ("body{font:15px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1f272d}"
          "main{max-width:30rem;margin:12vh auto;background:#fff;padding:2rem 2.25rem;border-radius:8px;"
          "box-shadow:0 1px 4px #0002}h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;font-weight:600}"
          "input[type=password]{box-sizing:border-box;width:100%;padding:.5rem;margin:.4rem 0 1rem;font:inherit}"
          "button{background:#2272b4;color:#fff;border:0;border-radius:4px;padding:.5rem 1.2rem;font:inherit;"
          "cursor:pointer}.error{background:#fde8e8;color:#8a1c1c;padding:.6rem .8rem;border-radius:4px}"
          "code{background:#eef0f2;padding:0 .25rem;border-radius:3px}small{color:#5f6b76}"
          "main.wide{max-width:64rem;margin-top:4vh}table{border-collapse:collapse;width:100%;margin:1rem 0}"
          "th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e3e6e8;vertical-align:top}"
          "td.num{text-align:right;white-space:nowrap}td.sha{font:12px ui-monospace,monospace;word-break:break-all}")
# The only scripts of our pages: one carries the link's `#/...` through the sign-in form; the other
# reloads a page opened from another site's link (see app_page).
KEEP_FRAGMENT = "document.getElementById('next').value=location.hash;"
RELOAD = "location.reload();"


def _digest(source: str) -> str:
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()


# Our pages run nothing but those scripts: no other script, no frame, no form sent elsewhere.
PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": f"default-src 'none'; style-src {_digest(_STYLE)}; "
                               f"script-src {_digest(KEEP_FRAGMENT)} {_digest(RELOAD)}; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make the form's Origin header "null"
    "Cache-Control": "no-store",
}


def page(title: str, body: str, status: int = 200, headers: dict | None = None, script: str = "",
         wide: bool = False) -> Response:
    """One of our own small pages (sign-in, sign-out, a version's package)."""
    text = (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport "
            f"content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><main{' class=wide' if wide else ''}>{body}</main>"
            + (f"<script>{script}</script>" if script else "") + "</body></html>")
    return Response(status=status, body=text, headers={**PAGE_HEADERS, **(headers or {})})


# ---- the UI -------------------------------------------------------------------------------------------

def app_page(req: Request, msg: messages.Empty) -> Response:
    """GET /projects/<p>/: the UI with a session, the sign-in page without."""
    if not req.path.endswith("/"):  # relative links in index.html need the trailing slash
        return Response(status=302, body="", headers={"Location": f"{req.project}/", "Cache-Control": "no-store"})
    if sessions.authenticate(req.project, req.headers.get("cookie")):
        return Response(body=app_html(), headers={"Content-Type": "text/html; charset=utf-8",
                                                  "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})
    if req.headers.get("sec-fetch-site") == "cross-site":
        # A link from another site (chat, a CI log) arrives without the SameSite=Strict cookie; the
        # page reloaded by itself is a same-origin request, which carries it (and keeps the `#/...`).
        return page("mlreg", "", script=RELOAD)
    return sign_in_page(req.project)


@cache
def app_html() -> str:
    """The bundle's index.html with mlreg's defaults for the UI."""
    return index_html().replace("<head>", "<head>" + _DEFAULTS_SCRIPT, 1)


def index_html() -> str:
    """Locally from the bundle's folder (MLREG_UI_DIR, set by `mlreg serve`), deployed from the UI
    bucket that holds the static files (MLREG_UI_BUCKET)."""
    folder = os.environ.get("MLREG_UI_DIR")
    if folder:
        return (Path(folder) / INDEX).read_text()
    import boto3

    obj = boto3.client("s3").get_object(Bucket=os.environ["MLREG_UI_BUCKET"], Key=INDEX)
    return obj["Body"].read().decode()


# ---- signing in and out ---------------------------------------------------------------------------------

def sign_in_page(project: str, error: str = "", status: int = 200) -> Response:
    p = html.escape(project)
    body = (f"<h1>Sign in to project <code>{p}</code></h1>"
            + (f"<p class=error role=alert>{html.escape(error)}</p>" if error else "")
            + "<form method=post action=signin autocomplete=off>"
            "<label for=token>Token of this project</label>"
            "<input type=password id=token name=token required autofocus spellcheck=false>"
            "<input type=hidden id=next name=next><button type=submit>Sign in</button></form>"
            f"<p><small>A read token browses; a write token can also register models and move stages. "
            f"Create one with <code>mlreg token create --project {p} --role read</code>. The token is not "
            f"kept in the browser: it opens a session of 12 hours at most, ended at <code>signout</code>."
            f"</small></p>")
    return page(f"Sign in · {project} · mlreg", body, status, script=KEEP_FRAGMENT)


def sign_in(req: Request, msg: messages.SignIn) -> Response:
    """POST /projects/<p>/signin (a form: token, next)."""
    if cross_site(req):
        return sign_in_page(req.project, "Sign-in from another site is refused.", 403)
    form = parse_qs(req.body.decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    after = (form.get("next") or [""])[0]
    record = projects.authenticate(req.project, token) if token else None
    if record is None:
        return sign_in_page(req.project, _refusal(req.project, token), 401)
    projects.note_use(record)
    session_id, lifetime = sessions.start(req.project, record)
    secure = req.base_url.startswith("https:")
    return Response(status=303, headers={
        "Location": "./" + (after if _FRAGMENT.match(after) else ""),
        "Set-Cookie": sessions.set_cookie(session_id, lifetime, secure),
        "Cache-Control": "no-store",
    })


def _refusal(project: str, token: str) -> str:
    owner = projects.project_named_by(token)
    if owner and owner != project:
        return f"That token belongs to project {owner}, not {project}: sign in at its own page."
    return f"That is not a live token of project {project} (unknown, expired or revoked)."


def sign_out(req: Request, msg: messages.Empty) -> Response:
    """GET /projects/<p>/signout: ends the session. Safe as a link: another site's link arrives
    without the SameSite=Strict cookie, so it cannot end anyone's session."""
    sessions.end(req.project, req.headers.get("cookie"))
    secure = req.base_url.startswith("https:")
    body = (f"<h1>Signed out of project <code>{html.escape(req.project)}</code></h1>"
            "<p>This browser's session has ended.</p><p><a href='./'>Sign in again</a></p>")
    return page(f"Signed out · {req.project} · mlreg", body, headers={"Set-Cookie": sessions.set_cookie("", 0, secure)})
