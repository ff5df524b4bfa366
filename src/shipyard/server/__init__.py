"""The HTTP face of Shipyard: the gateway serving released targets, and the REST API."""

from __future__ import annotations

from shipyard.server._api import PROBLEM, Served, create_api
from shipyard.server._gateway import Gateway, Recorder, write_gateway_file

__all__ = ["PROBLEM", "Gateway", "Recorder", "Served", "create_api", "write_gateway_file"]
