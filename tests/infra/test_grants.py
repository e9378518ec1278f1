"""Per-project IAM grants computed from the route table (no synthesis needed)."""

from __future__ import annotations

import pytest

from infra import grants
from shared.routes import Role, Route, api_routes

MANAGED_POLICY_LIMIT = 6144  # characters, whitespace excluded


def _route(method: str, path: str, role: Role) -> Route:
    return Route(method, path, "f", "m:h", role)


@pytest.mark.parametrize("role", [Role.READ, Role.WRITE])
def test_grants_cover_exactly_the_routes_of_the_role(role):
    patterns = grants.granted_paths("vision", role)
    grants.check("vision", role, patterns)  # raises on any over- or under-grant
    assert all(p.split("/", 1)[1].startswith("iam/projects/vision/") for p in patterns)


def test_read_grants_no_write_and_write_grants_no_admin():
    def reaches(role: Role, concrete: str) -> bool:
        allow, deny = grants.granted_paths("p", role), grants.denied_paths("p", role)
        return any(grants._matches(p, concrete) for p in allow) and not any(grants._matches(d, concrete) for d in deny)

    assert all(p.startswith(("GET/", "POST/")) for p in grants.granted_paths("p", Role.READ))  # GETs, POST searches
    for route in api_routes():  # the IAM tree's routes (the web UI's are not on it)
        concrete = f"{route.method}/iam/projects/p" + route.path.replace("{", "").replace("}", "").replace("+", "")
        assert reaches(Role.READ, concrete) is (route.role <= Role.READ), route
        assert reaches(Role.WRITE, concrete) is (route.role <= Role.WRITE), route


def test_a_policy_fits_a_managed_policy_with_room_to_grow():
    # An ARN is about 60 characters before the pattern (partition, region, account, API id, stage).
    for role in (Role.READ, Role.WRITE):
        project = "a-long-project-name-of-forty-characters"
        size = sum(60 + len(p) for p in grants.granted_paths(project, role) + grants.denied_paths(project, role))
        assert size < MANAGED_POLICY_LIMIT / 2, (role, size)


def test_subtrees_collapse_and_higher_routes_are_denied_explicitly():
    reads = [_route("POST", f"/b/{verb}", Role.READ) for verb in ("search", "get", "list", "describe")]
    routes = [_route("POST", "/a/list", Role.READ), *reads, _route("POST", "/b/delete", Role.ADMIN)]
    # Denying the one admin route is shorter than listing its four siblings.
    assert grants.granted_paths("p", Role.READ, routes) == ["POST/iam/projects/p/a/*", "POST/iam/projects/p/b/*"]
    assert grants.denied_paths("p", Role.READ, routes) == ["POST/iam/projects/p/b/delete"]


def test_listing_wins_when_it_is_shorter():
    routes = [_route("POST", "/b/search", Role.READ), _route("POST", "/b/delete", Role.ADMIN),
              _route("POST", "/b/create", Role.WRITE)]
    assert grants.granted_paths("p", Role.READ, routes) == ["POST/iam/projects/p/b/search"]
    assert grants.denied_paths("p", Role.READ, routes) == []


def test_a_deny_never_reaches_an_allowed_route():
    # A higher route whose pattern (its parameter is a wildcard) would also match an allowed route
    # cannot be denied; the allowed side is listed route by route instead.
    routes = [_route("GET", "/m/fixed", Role.READ), _route("GET", "/m/{name}", Role.ADMIN)]
    assert grants.denied_paths("p", Role.READ, routes) == []
    assert grants.granted_paths("p", Role.READ, routes) == ["GET/iam/projects/p/m/fixed"]


def test_check_refuses_an_over_grant():
    routes = [_route("GET", "/m/{name}", Role.READ), _route("GET", "/m/secret", Role.ADMIN)]
    with pytest.raises(AssertionError, match="would reach GET /m/secret"):
        grants.check("p", Role.READ, ["GET/iam/projects/p/m/*"], routes, denied=[])
