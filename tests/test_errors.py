from __future__ import annotations

import json
import pickle
import re

import pytest

from shipyard import errors
from shipyard.errors import (
    ConfigError,
    InputError,
    MalformedReply,
    NotFound,
    PolicyDenied,
    ProviderError,
    SandboxError,
    ShipyardError,
    StateError,
    StoreError,
    ToolError,
)

ALL_ERRORS: list[type[ShipyardError]] = [
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
]

# The table in errors.py's module docstring: class -> (code, exit status, HTTP status,
# problem name).
DOCUMENTED = {
    InputError: ("input", 2, 400, "invalid-input"),
    ConfigError: ("config", 2, 422, "configuration"),
    NotFound: ("not_found", 4, 404, "not-found"),
    StateError: ("state", 5, 409, "conflict"),
    PolicyDenied: ("denied", 6, 403, "policy-denied"),
    SandboxError: ("sandbox", 7, 503, "unavailable"),
    ProviderError: ("provider", 8, 503, "unavailable"),
    MalformedReply: ("malformed_reply", 8, 503, "unavailable"),
    StoreError: ("store", 9, 503, "unavailable"),
    ToolError: ("tool", 10, 503, "unavailable"),
}
BASE = ("error", 1, 503, "unavailable")


def make(cls: type[ShipyardError]) -> ShipyardError:
    return cls(
        f"{cls.__name__} happened in products.csv row 2",
        hint="fix it and try again",
        details={"where": "products.csv row 2 (line 3)", "fields": ["price"], "n": 2},
    )


def assert_same(rebuilt: ShipyardError, original: ShipyardError) -> None:
    assert type(rebuilt) is type(original)
    # What the API answers with comes back with the error.
    assert (rebuilt.http_status, rebuilt.problem) == (original.http_status, original.problem)
    assert rebuilt.message == original.message
    assert rebuilt.hint == original.hint
    assert rebuilt.details == original.details
    assert str(rebuilt) == str(original)


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_round_trips_through_dict_and_json(cls: type[ShipyardError]) -> None:
    original = make(cls)

    data = errors.to_dict(original)
    # The dict form is what a durable workflow serializes: it must survive JSON.
    rebuilt = errors.from_dict(json.loads(json.dumps(data)))

    assert data["code"] == cls.code
    assert_same(rebuilt, original)


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_round_trips_through_pickle(cls: type[ShipyardError]) -> None:
    original = make(cls)

    rebuilt = pickle.loads(pickle.dumps(original))

    assert_same(rebuilt, original)
    with pytest.raises(cls):
        raise rebuilt


def test_rebuilt_details_are_a_copy() -> None:
    details = {"fields": ["price"]}
    original = InputError("bad row", details=details)

    details["fields"] = ["changed"]

    assert errors.from_dict(errors.to_dict(original)).details == {"fields": ["price"]}


def test_str_includes_hint_only_when_there_is_one() -> None:
    assert str(NotFound("no task 7", hint="see `shipyard tasks`")) == (
        "no task 7\n  hint: see `shipyard tasks`"
    )
    assert str(NotFound("no task 7")) == "no task 7"


def test_unknown_code_rebuilds_as_base_error() -> None:
    rebuilt = errors.from_dict({"code": "no-such-code", "message": "odd", "hint": "h"})

    assert type(rebuilt) is ShipyardError
    assert rebuilt.message == "odd"
    assert rebuilt.hint == "h"


@pytest.mark.parametrize(
    ("cls", "documented"),
    list(DOCUMENTED.items()),
    ids=[cls.__name__ for cls in DOCUMENTED],
)
def test_code_statuses_and_problem_match_documentation(
    cls: type[ShipyardError], documented: tuple[str, int, int, str]
) -> None:
    assert (cls.code, cls.exit_status, cls.http_status, cls.problem) == documented
    assert issubclass(cls, ShipyardError)


def test_http_status_tells_the_caller_s_mistake_from_a_failure_underneath() -> None:
    assert (ShipyardError.code, ShipyardError.exit_status) == BASE[:2]
    assert (ShipyardError.http_status, ShipyardError.problem) == BASE[2:]
    mistakes = (InputError, ConfigError, NotFound, StateError, PolicyDenied)
    assert all(400 <= cls.http_status < 500 for cls in mistakes)
    # Each of the caller's mistakes has its own status and problem name.
    assert len({cls.http_status for cls in mistakes}) == len(mistakes)
    assert len({cls.problem for cls in mistakes}) == len(mistakes)
    # What failed underneath is worth trying again: 503, whatever the stage.
    others = [cls for cls in ALL_ERRORS if cls not in mistakes]
    assert {(cls.http_status, cls.problem) for cls in others} == {(503, "unavailable")}
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", cls.problem) for cls in ALL_ERRORS)


def test_exit_status_tells_kinds_of_failure_apart() -> None:
    statuses = {cls: cls.exit_status for cls in DOCUMENTED}

    # Only the two "your input/config is wrong" errors share a status; all others differ.
    assert statuses[InputError] == statuses[ConfigError] == 2
    # A MalformedReply is a kind of ProviderError and exits like one.
    assert statuses[MalformedReply] == statuses[ProviderError]
    others = [
        s for cls, s in statuses.items() if cls not in (InputError, ConfigError, MalformedReply)
    ]
    assert len(set(others)) == len(others)
    assert 2 not in others
    assert all(s != ShipyardError.exit_status for s in statuses.values())
    assert len({cls.code for cls in ALL_ERRORS}) == len(ALL_ERRORS)


def test_docstring_table_matches_the_classes() -> None:
    rows = re.findall(
        r"^[\s│├└─]*(\w+)\s+(\w+)\s+(\d+)\s+(\d{3})\s+([a-z-]+)\s",
        errors.__doc__ or "",
        flags=re.M,
    )
    table = {name: (code, int(ex), int(http), problem) for name, code, ex, http, problem in rows}

    assert table == {
        "ShipyardError": BASE,
        **{cls.__name__: documented for cls, documented in DOCUMENTED.items()},
    }
