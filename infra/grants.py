"""Which execute-api resources a per-project IAM policy grants, computed from the route table.

A policy of role R for project p allows exactly the IAM-tree routes whose role is at most R. Listing
one ARN per route would pass the 6,144-character limit of a managed policy as the route table grows,
so subtrees in which every route is allowed collapse to `<subtree>/*`. A few routes of a higher role
(admin deletes, webhooks) sit among allowed ones: rather than list their siblings one by one, the
policy denies them explicitly (`denied_paths`). `check()` proves the result grants no route above R
and misses none at or below it."""

from __future__ import annotations

import re
from typing import Iterable

from shared.routes import IAM_PREFIX, PROJECT_PREFIX, Role, Route, api_routes

_PARAM = re.compile(r"^\{\w+\+?\}$")
IAM_TREE = api_routes()  # the routes SigV4 callers reach (the web UI's are for browsers only)
Path = tuple[str, ...]  # the segments of a route path


def _segments(route: Route) -> Path:
    return tuple(route.path.strip("/").split("/"))


def _arn_segment(segment: str) -> str:
    # A path parameter matches any value; in an IAM resource that is a wildcard.
    return "*" if _PARAM.match(segment) else segment


def _cover(prefix: Path, allowed: set[Path], denied: set[Path]) -> list[Path]:
    """The fewest path patterns below `prefix` that match every allowed path and no denied one."""
    allowed_here = {p for p in allowed if p[:len(prefix)] == prefix}
    if not allowed_here:
        return []
    exact = [prefix] if prefix in allowed_here else []
    deeper_allowed = [p for p in allowed_here if len(p) > len(prefix)]
    deeper_denied = [p for p in denied if p[:len(prefix)] == prefix and len(p) > len(prefix)]
    if prefix and not deeper_denied:
        return exact + ([prefix + ("*",)] if deeper_allowed else [])
    children = sorted({p[len(prefix)] for p in deeper_allowed})
    return exact + [c for child in children for c in _cover(prefix + (child,), allowed, denied)]


def _base(project: str) -> str:
    return (IAM_PREFIX + PROJECT_PREFIX.replace("{project}", project)).strip("/")


def _denyable(routes: list[Route], method: str, role: Role) -> set[Path]:
    """Routes above `role` an explicit Deny may cover: those whose pattern (a `{param}` becomes a
    wildcard) reaches no allowed route."""
    allowed = [r for r in routes if r.method == method and r.role <= role]
    found = set()
    for route in routes:
        if route.method == method and route.role > role:
            pattern = f"{method}/x/" + "/".join(_arn_segment(s) for s in _segments(route))
            if not any(_matches(pattern, f"{method}/x" + re.sub(r"\{\w+\+?\}", "x", a.path)) for a in allowed):
                found.add(_segments(route))
    return found


def _plan(project: str, role: Role, routes: list[Route]) -> tuple[list[str], list[str]]:
    """(allow, deny) patterns: per method, the shorter of listing allowed subtrees around the higher
    routes, or allowing broader subtrees and denying the higher routes inside them."""
    base = _base(project)
    to_text = lambda method, path: f"{method}/{base}/" + "/".join(_arn_segment(s) for s in path)  # noqa: E731
    allow, deny = [], []
    for method in sorted({r.method for r in routes}):
        allowed = {_segments(r) for r in routes if r.method == method and r.role <= role}
        higher = {_segments(r) for r in routes if r.method == method and r.role > role}
        denyable = _denyable(routes, method, role)
        narrow = [to_text(method, p) for p in _cover((), allowed, higher)]
        broad = [to_text(method, p) for p in _cover((), allowed, higher - denyable)]
        denied = [to_text(method, p) for p in sorted(denyable)
                  if any(_matches(b, to_text(method, tuple("x" if "*" == s else s for s in map(_arn_segment, p))))
                         for b in broad)]
        if sum(map(len, broad + denied)) < sum(map(len, narrow)):
            allow, deny = allow + broad, deny + denied
        else:
            allow += narrow
    return allow, deny


def denied_paths(project: str, role: Role, routes: Iterable[Route] = IAM_TREE) -> list[str]:
    """Patterns of the routes above `role` that the policy denies explicitly."""
    return _plan(project, role, list(routes))[1]


def granted_paths(project: str, role: Role, routes: Iterable[Route] = IAM_TREE) -> list[str]:
    """`METHOD/iam/projects/<project>/...` patterns (the part of an execute-api ARN after the stage)
    that, with `denied_paths`, allow every IAM-tree route of role <= `role` for one project."""
    routes = list(routes)
    allow, deny = _plan(project, role, routes)
    check(project, role, allow, routes, deny)
    return allow


def _matches(pattern: str, concrete: str) -> bool:
    # IAM resource wildcards: `*` spans any characters, slashes included.
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), concrete) is not None


def check(project: str, role: Role, patterns: list[str], routes: Iterable[Route] = IAM_TREE,
          denied: list[str] | None = None) -> None:
    """Fail synthesis if the allowed `patterns` less the `denied` ones reach a route above `role`, or
    miss one at or below it."""
    base = IAM_PREFIX + PROJECT_PREFIX.replace("{project}", project)
    if denied is None:
        denied = denied_paths(project, role, list(routes))
    for route in routes:
        # A path parameter stands for a value; this one cannot contain a slash or a wildcard.
        concrete = f"{route.method}{base}" + re.sub(r"\{\w+\+?\}", "x", route.path)
        hit = any(_matches(p, concrete) for p in patterns) and not any(_matches(d, concrete) for d in denied)
        if hit and route.role > role:
            raise AssertionError(f"the {role.name.lower()} policy of {project} would reach "
                                 f"{route.method} {route.path} ({route.role.name.lower()})")
        if not hit and route.role <= role:
            raise AssertionError(f"the {role.name.lower()} policy of {project} misses {route.method} {route.path}")
