"""The HTTP face of Shipyard: the gateway serving released targets, the REST API and the
console."""

from __future__ import annotations

from shipyard.server._api import PROBLEM, AdminLimits, Served, create_api, create_app
from shipyard.server._gateway import Gateway, Recorder, write_gateway_file
from shipyard.service import (
    ROLES,
    Caller,
    authenticate,
    create_token,
    list_tokens,
    revoke_token,
    token_live,
)

__all__ = [
    "PROBLEM",
    "ROLES",
    "AdminLimits",
    "Caller",
    "Gateway",
    "Recorder",
    "Served",
    "authenticate",
    "create_api",
    "create_app",
    "create_token",
    "list_tokens",
    "revoke_token",
    "token_live",
    "write_gateway_file",
]
