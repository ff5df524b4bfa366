"""The HTTP face of Shipyard: today the published sites (the REST API and console follow)."""

from __future__ import annotations

from shipyard.server._site import create_site_app

__all__ = ["create_site_app"]
