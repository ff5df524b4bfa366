"""Sandboxes for generated code: one protocol, several isolation backends.

Generated code never runs in the Shipyard process; checks run it through a backend here.
"""

from __future__ import annotations

from shipyard.errors import ConfigError
from shipyard.sandbox._process import ProcessBackend, base_environment
from shipyard.sandbox._protocol import Limits, RunResult, SandboxBackend

__all__ = [
    "Limits",
    "ProcessBackend",
    "RunResult",
    "SandboxBackend",
    "base_environment",
    "get_backend",
]


def get_backend(name: str) -> SandboxBackend:
    """The backend called ``name``."""
    if name == "process":
        return ProcessBackend()
    raise ConfigError(
        f"shipyard.toml: key 'sandbox.backend': unknown backend {name!r}",
        hint="allowed: process",
    )
