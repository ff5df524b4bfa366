"""The HTTP face of Shipyard: the gateway serving released targets (the REST API and console
follow)."""

from __future__ import annotations

from shipyard.server._gateway import Gateway, Recorder, write_gateway_file

__all__ = ["Gateway", "Recorder", "write_gateway_file"]
