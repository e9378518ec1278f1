"""Per-project IAM grants computed from the route table (no synthesis needed)."""

from __future__ import annotations

import pytest

from infra import grants
from shared.routes import ROUTES, Role, Route

MANAGED_POLICY_LIMIT = 6144  # characters, whitespace excluded


def _route(method: str, path: str, role: Role) -> Route:
    return Route(method, path, "f", "m:h", role)


@pytest.mark.parametrize("role", [Role.READ, Role.WRITE])
def test_grants_cover_exactly_the_routes_of_the_role(role):
    patterns = grants.granted_paths("vision", role)
    grants.check("vision", role, patterns)  # raises on any over- or under-grant
    assert all(p.split("/", 1)[1].startswith("iam/projects/vision/") for p in patterns)


def test_read_grants_no_write_and_write_grants_no_admin():
    read, write = grants.granted_paths("p", Role.READ), grants.granted_paths("p", Role.WRITE)
    assert all(p.startswith(("GET/", "POST/")) for p in read)  # GETs and POST searches
    for route in ROUTES:
        concrete = f"{route.method}/iam/projects/p" + route.path.replace("{", "").replace("}", "").replace("+", "")
        assert any(grants._matches(p, concrete) for p in read) is (route.role <= Role.READ), route
        assert any(grants._matches(p, concrete) for p in write) is (route.role <= Role.WRITE), route


def test_a_policy_fits_a_managed_policy_with_room_to_grow():
    # An ARN is about 60 characters before the pattern (partition, region, account, API id, stage).
    for role in (Role.READ, Role.WRITE):
        size = sum(60 + len(p) for p in grants.granted_paths("a-long-project-name-of-forty-characters", role))
        assert size < MANAGED_POLICY_LIMIT / 2, (role, size)


def test_subtrees_collapse_only_when_no_route_below_needs_more():
    routes = [_route("POST", "/a/list", Role.READ), _route("POST", "/a/get", Role.READ),
              _route("POST", "/b/search", Role.READ), _route("POST", "/b/delete", Role.ADMIN)]
    assert grants.granted_paths("p", Role.READ, routes) == [
        "POST/iam/projects/p/a/*", "POST/iam/projects/p/b/search"]


def test_a_path_parameter_never_widens_into_a_forbidden_sibling():
    routes = [_route("GET", "/m/{name}", Role.READ), _route("GET", "/m/secret", Role.ADMIN)]
    with pytest.raises(AssertionError, match="would reach GET /m/secret"):
        grants.granted_paths("p", Role.READ, routes)
