"""Which execute-api resources a per-project IAM policy grants, computed from the route table.

A policy of role R for project p allows exactly the IAM-tree routes whose role is at most R. Listing
one ARN per route would pass the 6,144-character limit of a managed policy as the route table grows,
so subtrees in which every route is allowed collapse to `<subtree>/*`; a subtree that holds a route of
a higher role is listed route by route. `check()` proves the result grants no route above R."""

from __future__ import annotations

import re
from typing import Iterable

from shared.routes import IAM_PREFIX, PROJECT_PREFIX, ROUTES, Role, Route

_PARAM = re.compile(r"^\{\w+\+?\}$")
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


def granted_paths(project: str, role: Role, routes: Iterable[Route] = ROUTES) -> list[str]:
    """`METHOD/iam/projects/<project>/...` patterns (the part of an execute-api ARN after the stage)
    that allow every IAM-tree route of role <= `role` for one project."""
    routes = list(routes)
    base = (IAM_PREFIX + PROJECT_PREFIX.replace("{project}", project)).strip("/")
    patterns = []
    for method in sorted({r.method for r in routes}):
        allowed = {_segments(r) for r in routes if r.method == method and r.role <= role}
        denied = {_segments(r) for r in routes if r.method == method and r.role > role}
        for path in _cover((), allowed, denied):
            patterns.append(f"{method}/{base}/" + "/".join(_arn_segment(s) for s in path))
    check(project, role, patterns, routes)
    return patterns


def _matches(pattern: str, concrete: str) -> bool:
    # IAM resource wildcards: `*` spans any characters, slashes included.
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), concrete) is not None


def check(project: str, role: Role, patterns: list[str], routes: Iterable[Route] = ROUTES) -> None:
    """Fail synthesis if a pattern reaches a route above `role`, or misses one at or below it."""
    base = IAM_PREFIX + PROJECT_PREFIX.replace("{project}", project)
    for route in routes:
        # A path parameter stands for a value; this one cannot contain a slash or a wildcard.
        concrete = f"{route.method}{base}" + re.sub(r"\{\w+\+?\}", "x", route.path)
        hit = any(_matches(p, concrete) for p in patterns)
        if hit and route.role > role:
            raise AssertionError(f"the {role.name.lower()} policy of {project} would reach "
                                 f"{route.method} {route.path} ({route.role.name.lower()})")
        if not hit and route.role <= role:
            raise AssertionError(f"the {role.name.lower()} policy of {project} misses {route.method} {route.path}")
