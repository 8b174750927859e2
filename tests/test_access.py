"""Access: every /v1 route declares a scope, and each role gets exactly what its scopes allow."""

import re

import pytest
from fastapi.routing import APIRoute

from app.core.config import Settings
from app.core.security import ROLE_SCOPES
from app.main import ROUTERS, create_app


def route_scopes() -> list[tuple[str, str, str]]:
    """(method, path, scope) for every /v1 route, read from the route's and its router's dependencies."""
    out = []
    for router in ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            declared = [*router.dependencies, *route.dependencies]
            scopes = {getattr(d.dependency, "required_scope", None) for d in declared} - {None}
            assert len(scopes) == 1, f"{route.methods} {route.path} must declare exactly one scope, has {scopes}"
            out.extend((method, route.path, next(iter(scopes))) for method in route.methods)
    return out


ROUTES = route_scopes()


def test_every_v1_route_in_the_app_is_covered_by_the_matrix():
    spec = create_app(Settings(environment="test")).openapi()
    served = {(method.upper(), path) for path, ops in spec["paths"].items() if path.startswith("/v1")
              for method in ops}
    assert served == {(method, path) for method, path, _ in ROUTES}
    assert len(served) >= 15


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
async def test_each_role_is_allowed_exactly_its_scopes(client, keys, method, path, scope):
    url = re.sub(r"\{[^}]+\}", "x1", path)
    no_key = await client.request(method, url)
    assert no_key.status_code == 401
    assert no_key.headers["content-type"] == "application/problem+json"
    for role, scopes in ROLE_SCOPES.items():
        response = await client.request(method, url, headers={"X-API-Key": keys[role]})
        if scope in scopes:
            assert response.status_code not in (401, 403), (role, response.text)
        else:
            assert response.status_code == 403, (role, response.status_code)
