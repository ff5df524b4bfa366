"""Serving a static-site target: every request reads the live version, so a switch (or a
rollback) is visible on the next request with no restart."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from shipyard.release import StaticSite

__all__ = ["create_site_app"]


def _resolve(site: StaticSite, path: str) -> Path | None:
    live = site.live_dir()
    if live is None:
        return None
    candidate = (live / path).resolve()
    if not candidate.is_relative_to(live):
        return None
    if candidate.is_dir():
        candidate = candidate / "index.html"
    return candidate if candidate.is_file() else None


def create_site_app(site: StaticSite, *, metrics: CollectorRegistry | None = None) -> FastAPI:
    """The live site at ``/``, ``/healthz``, and Prometheus ``/metrics`` when given a registry."""
    app = FastAPI(title=f"Shipyard site: {site.name}", docs_url=None, redoc_url=None)

    if metrics is not None:

        @app.get("/metrics")
        def scrape() -> Response:
            return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "target": site.name, "version": site.live_version()})

    @app.get("/{path:path}")
    def page(path: str) -> Response:
        if path.startswith(".shipyard"):
            raise HTTPException(status_code=404)
        found = _resolve(site, path)
        if found is None:
            raise HTTPException(status_code=404, detail=f"/{path} is not published")
        if found.name == "index.html" and path and not path.endswith(("/", ".html")):
            return RedirectResponse(f"/{path}/", status_code=308)
        return FileResponse(found, headers={"Cache-Control": "no-cache"})

    return app
