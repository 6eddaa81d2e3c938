"""The app's routes (its /v1 routes, its console's) and the roles each admits, as the route table says."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from gateway.domain.roles import Role


def app_routes(app: FastAPI) -> list[Any]:
    """The app's API routes, as served (FastAPI ≥ 0.165 keeps included routers nested)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes holds the included routes themselves
        return [r for r in app.routes if isinstance(r, APIRoute)]
    return [c for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute)]


def v1_routes(app: FastAPI) -> list[Any]:
    """The app's API routes under /v1, as served."""
    routes = [r for r in app_routes(app) if r.path.startswith("/v1/")]
    assert len(routes) >= 20  # cases, case actions, catalogue, materials
    return routes


def admitted_roles(dependant: Dependant) -> Iterator[frozenset[Role]]:
    """The roles of every `require()` among a route's dependencies, however deep."""
    for dependency in dependant.dependencies:
        roles = getattr(dependency.call, "admitted_roles", None)
        if roles is not None:
            yield roles
        yield from admitted_roles(dependency)
