"""Sandboxes for generated code: one protocol, several isolation backends.

Generated code never runs in the Shipyard process; checks run it through a backend here.
A run may also get more mounts, work in a folder in place, and reach listed ``host:port``
entries through the egress proxy (:func:`parse_egress` checks such a list).
"""

from __future__ import annotations

import logging

from shipyard.errors import ConfigError
from shipyard.sandbox._bwrap import BwrapBackend, bwrap_available, confine
from shipyard.sandbox._egress import EgressProxy, parse_egress
from shipyard.sandbox._process import ProcessBackend
from shipyard.sandbox._protocol import Limits, Mount, RunResult, SandboxBackend, run_environment
from shipyard.sandbox._zygote import WORK

__all__ = [
    "WORK",
    "BwrapBackend",
    "EgressProxy",
    "Limits",
    "Mount",
    "ProcessBackend",
    "RunResult",
    "SandboxBackend",
    "bwrap_available",
    "confine",
    "get_backend",
    "parse_egress",
    "run_environment",
]

_log = logging.getLogger("shipyard.sandbox")

WEAK_WARNING = (
    "sandbox: using the 'process' backend: generated code runs with limits but is NOT "
    "isolated (install bubblewrap for isolation)"
)


def get_backend(
    name: str, *, one_shot: bool = False, pool_size: int | None = None
) -> SandboxBackend:
    """The backend called ``name``; ``auto`` is bubblewrap wherever it works.

    ``one_shot``: for a process that runs a command or two and exits, bubblewrap keeps no
    warm pool and starts a sandbox for each run (see :class:`BwrapBackend`). ``pool_size``:
    bubblewrap's warm slots (default: one per core), for a caller that runs one at a time.
    """
    if name == "auto":
        name = "bwrap" if bwrap_available() else "process"
    if name == "bwrap":
        return BwrapBackend(one_shot=one_shot, pool_size=pool_size)
    if name == "process":
        _log.warning(WEAK_WARNING)
        return ProcessBackend()
    raise ConfigError(
        f"shipyard.toml: key 'sandbox.backend': unknown backend {name!r}",
        hint="allowed: auto, bwrap, process",
    )
