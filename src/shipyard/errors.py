"""Shipyard's one exception hierarchy.

Every error carries a stable ``code`` (the CLI prints it and exits with ``exit_status``), an
``http_status`` and a ``problem`` name (the REST API answers with that status and a problem
document whose ``type`` ends in the name), and a ``hint`` that says what to do next. The
user's mistakes are 4xx; what failed underneath (a store, a sandbox, a provider, a tool) is
503, worth trying again later. The tree::

                           code            exit http problem
    ShipyardError          error           1    503  unavailable    anything else that failed
    ├── InputError         input           2    400  invalid-input  the user's data is wrong
    ├── ConfigError        config          2    422  configuration  the configuration is wrong
    ├── NotFound           not_found       4    404  not-found      no such task, artifact, ...
    ├── StateError         state           5    409  conflict       the record's state forbids it
    ├── PolicyDenied       denied          6    403  policy-denied  policy forbids the action
    ├── SandboxError       sandbox         7    503  unavailable    the sandbox could not run
    ├── ProviderError      provider        8    503  unavailable    a generator failed (retried)
    │   └── MalformedReply malformed_reply 8    503  unavailable    a reply without the files
    ├── StoreError         store           9    503  unavailable    the database or files failed
    └── ToolError          tool            10   503  unavailable    a tool's outside effect failed

A failed check is *not* an exception: it is a failed attempt recorded in a CheckReport. The
same goes for a MalformedReply once the generate stage has caught it: the attempt fails with
the reason as its finding, and the repair loop asks again.
Errors are plain data (message, code, hint, details) so they survive the trip through a
durable workflow's serializer; :func:`to_dict` / :func:`from_dict` round-trip them.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ConfigError",
    "InputError",
    "MalformedReply",
    "NotFound",
    "PolicyDenied",
    "ProviderError",
    "SandboxError",
    "ShipyardError",
    "StateError",
    "StoreError",
    "ToolError",
    "from_dict",
    "to_dict",
]


class ShipyardError(Exception):
    """Base of every error Shipyard raises on purpose."""

    code: ClassVar[str] = "error"
    """Stable name of the error (what the CLI prints; what serialized errors carry)."""
    exit_status: ClassVar[int] = 1
    """The CLI's exit status."""
    http_status: ClassVar[int] = 503
    """The REST API's status (and the console's) when a request ends in this error."""
    problem: ClassVar[str] = "unavailable"
    """The end of the API's problem ``type`` (``urn:shipyard:problem:<problem>``)."""

    def __init__(self, message: str, *, hint: str = "", details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self).code, self.message, self.hint, self.details))


class InputError(ShipyardError):
    """The user's input does not fit the job kind's schema (names the row and field)."""

    code = "input"
    exit_status = 2
    http_status = 400
    problem = "invalid-input"


class ConfigError(ShipyardError):
    """shipyard.toml or a job kind definition is wrong (names the file and key)."""

    code = "config"
    exit_status = 2
    http_status = 422
    problem = "configuration"


class NotFound(ShipyardError):
    """A task, artifact, job kind or target that does not exist."""

    code = "not_found"
    exit_status = 4
    http_status = 404
    problem = "not-found"


class StateError(ShipyardError):
    """The action does not fit the record's current state (e.g. approving a finished task)."""

    code = "state"
    exit_status = 5
    http_status = 409
    problem = "conflict"


class PolicyDenied(ShipyardError):
    """Policy forbids the action (e.g. approving one's own submission)."""

    code = "denied"
    exit_status = 6
    http_status = 403
    problem = "policy-denied"


class SandboxError(ShipyardError):
    """The sandbox could not run a command at all (not: the command failed)."""

    code = "sandbox"
    exit_status = 7
    http_status = 503
    problem = "unavailable"


class ProviderError(ShipyardError):
    """A generator could not produce a reply (network, server, malformed response)."""

    code = "provider"
    exit_status = 8
    http_status = 503
    problem = "unavailable"


class MalformedReply(ProviderError):
    """The model answered, but not with the files asked for (an attempt that failed)."""

    code = "malformed_reply"


class StoreError(ShipyardError):
    """The database or the artifact store failed or holds something unexpected."""

    code = "store"
    exit_status = 9
    http_status = 503
    problem = "unavailable"


class ToolError(ShipyardError):
    """A tool could not act on the world outside Shipyard (after its own retries)."""

    code = "tool"
    exit_status = 10
    http_status = 503
    problem = "unavailable"


_BY_CODE: dict[str, type[ShipyardError]] = {
    cls.code: cls
    for cls in (
        ShipyardError,
        InputError,
        ConfigError,
        NotFound,
        StateError,
        PolicyDenied,
        SandboxError,
        ProviderError,
        MalformedReply,
        StoreError,
        ToolError,
    )
}


def _rebuild(code: str, message: str, hint: str, details: dict[str, Any]) -> ShipyardError:
    return _BY_CODE.get(code, ShipyardError)(message, hint=hint, details=details)


def to_dict(error: ShipyardError) -> dict[str, Any]:
    """The error as JSON-ready data: ``code``, ``message``, ``hint``, ``details``."""
    return {
        "code": error.code,
        "message": error.message,
        "hint": error.hint,
        "details": error.details,
    }


def from_dict(data: dict[str, Any]) -> ShipyardError:
    """Rebuild an error produced by :func:`to_dict`."""
    return _rebuild(
        str(data.get("code", "error")),
        str(data.get("message", "")),
        str(data.get("hint", "")),
        dict(data.get("details") or {}),
    )
