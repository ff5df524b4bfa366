"""The REST API (``/api/v1``): the CLI's service functions over HTTP, behind tokens and roles.

Every request carries ``Authorization: Bearer <token>`` (``shipyard tokens create``; the
document's ``bearerAuth`` scheme). The token's role bounds what it may try (``viewer`` reads;
``operator`` also submits, supplies code and steers releases; ``approver`` also approves and
rejects; ``admin`` all of it and the audit export); then the service function checks the
token's person against the Cedar policies exactly as at the command line (so an approver
cannot approve their own submission here either). Errors are RFC 9457 problem details with a
stable ``type`` per error (:mod:`shipyard.server._problems`); every list is paginated with
``limit`` and an opaque ``cursor``.

The routes are module-level routers, one module per resource (``_api_tasks``,
``_api_artifacts``, ``_api_releases``, ``_api_observe``); they find the Runtime and the
caller through dependencies (:mod:`shipyard.server._deps`) and call :mod:`shipyard.service`.
This module assembles the app: the API alone (``create_api``), with the console
(``create_app``), and beside the gateway (``Served``). Either app sits behind the door
(:mod:`shipyard.server._door`: limits, encodings, throttles, security headers).

The API and the console have an origin of their own: ``shipyard serve`` listens on the
gateway's port for the site and handlers and on the admin port for ``/api`` and
``/console``, so a script on a published page is cross-origin to the console and can neither
read its pages nor frame them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import FastAPI

from shipyard import __version__
from shipyard.server import (
    _api_artifacts,
    _api_docs,
    _api_incidents,
    _api_observe,
    _api_releases,
    _api_tasks,
    _console,
)
from shipyard.server._console_session import COOKIE, Sessions
from shipyard.server._door import AdminLimits, Door
from shipyard.server._figures import Figures
from shipyard.server._problems import PROBLEM, install_problem_handlers, problem_schema, problems
from shipyard.server._throttle import RateLimiter
from shipyard.service import Runtime

__all__ = ["PROBLEM", "AdminLimits", "Served", "create_api", "create_app"]

_ROUTERS = (
    _api_tasks.router,
    _api_artifacts.router,
    _api_releases.router,
    _api_incidents.router,
    _api_observe.router,
    _api_docs.router,
)


def create_api(
    rt: Runtime, *, requests_per_minute: int | None = None, limits: AdminLimits | None = None
) -> FastAPI:
    """The API over ``rt`` (served by ``shipyard serve`` at ``/api/v1`` on the admin port),
    behind the door with ``limits`` (``requests_per_minute`` overrides theirs)."""
    limits = limits or AdminLimits()
    if requests_per_minute is not None:
        limits = dataclasses.replace(limits, requests_per_minute=requests_per_minute)
    api = FastAPI(
        title="Shipyard",
        version=__version__,
        description="Tasks, approvals, artifacts and their lineage, releases, traces, costs.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # /api/v1/docs is Shipyard's own page (_api_docs): no CDN, no script
        redoc_url=None,
    )
    api.state.runtime = rt
    api.state.limits = limits
    api.state.limiter = RateLimiter(limits.requests_per_minute)
    api.state.figures = Figures(
        ttl=limits.figures_cache_seconds, per_minute=limits.figures_per_minute
    )
    sessions = api.state.sessions = Sessions()
    api.add_middleware(Door, limits=limits, live_session=sessions.live, session_cookie=COOKIE)
    install_problem_handlers(api)
    for router in _ROUTERS:
        api.include_router(router)

    def document() -> dict[str, Any]:
        """FastAPI's document, with the ``Problem`` schema the error responses name."""
        if api.openapi_schema is None:
            _with_problems(FastAPI.openapi(api))  # builds and keeps api.openapi_schema
        return api.openapi_schema or {}

    api.openapi = document  # type: ignore[method-assign]
    return api


def _with_problems(document: dict[str, Any]) -> None:
    """Add the ``Problem`` schema, and say a request that does not fit its schema is answered
    with one where FastAPI's default still says otherwise (routes that declare no 422), and
    that a body over the door's limits is a 413."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = problem_schema()
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "application/json" in responses.get("422", {}).get("content", {}):
                responses["422"] = problems(422)[422]
            if "requestBody" in operation:  # the door's limits (serve.max_body_bytes, ...)
                responses.setdefault("413", problems(413)[413])
    for fastapi_default in ("HTTPValidationError", "ValidationError"):
        schemas.pop(fastapi_default, None)


def create_app(
    rt: Runtime, *, requests_per_minute: int | None = None, limits: AdminLimits | None = None
) -> FastAPI:
    """The API at ``/api/v1`` and the console at ``/console``, over ``rt``: the admin
    origin's app."""
    app = create_api(rt, requests_per_minute=requests_per_minute, limits=limits)
    app.include_router(_console.router)
    return app


class Served:
    """What ``shipyard serve`` runs on its two sockets: a connection to one of
    ``admin_ports`` goes to the admin app (the API and console), any other to the gateway
    (the site and handlers), whatever its path or Host header says.

    The gateway keeps the lifespan (its reconciler and its announce file); the API needs none.
    """

    def __init__(self, admin: Any, gateway: Any, *, admin_ports: frozenset[int]) -> None:
        self.admin, self.gateway, self.admin_ports = admin, gateway, admin_ports

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        server = scope.get("server") or ("", None)
        if scope["type"] in ("http", "websocket") and server[1] in self.admin_ports:
            await self.admin(scope, receive, send)
        else:
            await self.gateway(scope, receive, send)
