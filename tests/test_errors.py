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
]

# The table in errors.py's module docstring: class -> (code, exit status).
DOCUMENTED = {
    InputError: ("input", 2),
    ConfigError: ("config", 2),
    NotFound: ("not_found", 4),
    StateError: ("state", 5),
    PolicyDenied: ("denied", 6),
    SandboxError: ("sandbox", 7),
    ProviderError: ("provider", 8),
    MalformedReply: ("malformed_reply", 8),
    StoreError: ("store", 9),
}


def make(cls: type[ShipyardError]) -> ShipyardError:
    return cls(
        f"{cls.__name__} happened in products.csv row 2",
        hint="fix it and try again",
        details={"where": "products.csv row 2 (line 3)", "fields": ["price"], "n": 2},
    )


def assert_same(rebuilt: ShipyardError, original: ShipyardError) -> None:
    assert type(rebuilt) is type(original)
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
    ("cls", "code", "status"),
    [(cls, code, status) for cls, (code, status) in DOCUMENTED.items()],
    ids=[cls.__name__ for cls in DOCUMENTED],
)
def test_code_and_exit_status_match_documentation(
    cls: type[ShipyardError], code: str, status: int
) -> None:
    assert cls.code == code
    assert cls.exit_status == status
    assert issubclass(cls, ShipyardError)


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
    rows = re.findall(r"(\w+)\s+(\w+)\s+(\d+)\s{3}", errors.__doc__ or "")
    table = {name: (code, int(status)) for name, code, status in rows}

    assert table == {cls.__name__: documented for cls, documented in DOCUMENTED.items()}
