"""The HTTP face of Shipyard: the gateway serving released targets, the REST API and the
console."""

from __future__ import annotations

from shipyard.server._api import PROBLEM, Served, create_api, create_app
from shipyard.server._gateway import Gateway, Recorder, write_gateway_file

__all__ = [
    "PROBLEM",
    "Gateway",
    "Recorder",
    "Served",
    "create_api",
    "create_app",
    "write_gateway_file",
]
