"""Cedar policies: loaded from .cedar files, validated against Shipyard's schema, evaluated.

Every action with an effect is authorized here first, default deny: a request is allowed
only when a ``permit`` matches and no ``forbid`` does. The vocabulary (principals, actions,
resources, context) is ``schema.cedarschema`` beside this module; a project's policies are
validated against it when Shipyard starts, and a mistake names the file, the line and the
problem, so Shipyard never runs on a policy it cannot read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cedarpy

from shipyard.errors import ConfigError

__all__ = [
    "DEFAULT_POLICY",
    "SCHEMA",
    "Policies",
    "Request",
    "Verdict",
    "uid",
]

_HERE = Path(__file__).parent
SCHEMA = _HERE / "schema.cedarschema"
DEFAULT_POLICY = _HERE / "default.cedar"


def uid(kind: str, name: str) -> dict[str, str]:
    """A Cedar entity reference in the structured form (safe for any id)."""
    return {"type": kind, "id": name}


@dataclass(frozen=True, kw_only=True)
class Request:
    """One question for the policies: may ``principal`` do ``action`` on ``resource``?"""

    principal: dict[str, str]
    action: str
    resource: dict[str, str]
    context: dict[str, Any] = field(default_factory=dict)
    entities: Sequence[dict[str, Any]] = ()
    """The entities the request touches (with their attributes and parents)."""

    def to_cedar(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "action": uid("Action", self.action),
            "resource": self.resource,
            "context": self.context,
        }

    def describe(self) -> str:
        p, r = self.principal, self.resource
        return f'{p["type"]}::"{p["id"]}" {self.action} {r["type"]}::"{r["id"]}"'


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What the policies said, and which of them said it."""

    allowed: bool
    policies: tuple[str, ...]
    """The deciding policies as ``file:line (id)``: the permits that allowed it, or the
    forbids that denied it; empty when nothing permitted it (default deny)."""
    errors: tuple[str, ...] = ()
    """Policies that failed to evaluate (they count as not matching), or a malformed request."""

    def reason(self) -> str:
        if self.allowed:
            return "allowed by " + ", ".join(self.policies)
        if self.policies:
            return "forbidden by " + ", ".join(self.policies)
        if self.errors:
            return "denied: " + "; ".join(self.errors)
        return "denied: no policy permits it (default deny)"


_ANNOTATION_ID = re.compile(r'@id\(\s*"((?:[^"\\]|\\.)*)"\s*\)')


@dataclass(frozen=True, kw_only=True)
class _Statement:
    path: Path
    line: int
    text: str

    @property
    def label(self) -> str:
        found = _ANNOTATION_ID.search(self.text)
        where = f"{self.path.name}:{self.line}"
        return f"{where} ({found.group(1)})" if found else where


def _statements(path: Path, text: str) -> list[_Statement]:
    """Split a .cedar file into its policies (top-level ``;``), each with its first line."""
    found: list[_Statement] = []
    start, line, begin_line = 0, 1, 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
        elif ch == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif ch == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                elif text[i] == "\n":
                    line += 1
                i += 1
        elif not ch.isspace() and not begin_line:
            begin_line = line
        elif ch == ";":
            found.append(_Statement(path=path, line=begin_line or line, text=text[start : i + 1]))
            start, begin_line = i + 1, 0
        i += 1
    if text[start:].strip() and begin_line:
        found.append(_Statement(path=path, line=begin_line, text=text[start:]))
    return found


class Policies:
    """A project's policy set, validated against the schema, ready to answer requests."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = list(files)
        schema_text = SCHEMA.read_text(encoding="utf-8")
        self._schema = cedarpy.Schema.from_str(schema_text)
        statements: list[_Statement] = []
        for path in self.files:
            statements.extend(_check_file(path, schema_text))
        self.text = "\n".join(s.text for s in statements)
        self._set = cedarpy.PolicySet.from_str(self.text)
        self._labels = {f"policy{i}": s.label for i, s in enumerate(statements)}
        self.count = len(statements)

    @classmethod
    def load(cls, files: Sequence[Path]) -> Policies:
        """The policies in ``files``, or Shipyard's built-in default when none is named."""
        return cls(list(files) or [DEFAULT_POLICY])

    def authorize(self, request: Request) -> Verdict:
        return self.authorize_all([request])[0]

    def authorize_all(self, requests: Sequence[Request]) -> list[Verdict]:
        """Answer several requests (one call into Cedar)."""
        if not requests:
            return []
        entities: dict[str, dict[str, Any]] = {}
        for request in requests:
            for entity in request.entities:
                entities[f"{entity['uid']['type']}::{entity['uid']['id']}"] = entity
        results = cedarpy.is_authorized_batch(
            [r.to_cedar() for r in requests], self._set, list(entities.values()), self._schema
        )
        return [self._verdict(result) for result in results]

    def _verdict(self, result: Any) -> Verdict:
        diagnostics = result.diagnostics
        errors = tuple(self._relabel(str(e)) for e in diagnostics.errors)
        return Verdict(
            allowed=bool(result.allowed),
            policies=tuple(self._labels.get(p, p) for p in diagnostics.reasons),
            errors=errors,
        )

    def _relabel(self, message: str) -> str:
        return re.sub(r"\bpolicy\d+\b", lambda m: self._labels.get(m.group(0), m.group(0)), message)


def _check_file(path: Path, schema_text: str) -> list[_Statement]:
    """The file's policies; ConfigError naming file, line and problem if any is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path}: policy file not found",
            hint="fix policy.files in shipyard.toml (paths are relative to it)",
        ) from exc
    statements = _statements(path, text)
    if not statements:
        raise ConfigError(
            f"{path}: holds no policy",
            hint="a policy file needs at least one permit or forbid statement; with none, "
            "everything is denied",
        )
    for statement in statements:
        try:
            cedarpy.PolicySet.from_str(statement.text)
        except ValueError as exc:
            last = statement.line + statement.text.strip().count("\n")
            span = f"lines {statement.line}-{last}" if last > statement.line else "this line"
            raise ConfigError(
                f"{path}:{statement.line}: {exc} (in the policy on {span})",
                hint="each policy ends with ';' (a missing one runs into the next policy); "
                "see docs/policies.md for the syntax",
            ) from exc
    result = cedarpy.validate_policies("\n".join(s.text for s in statements), schema_text)
    if not result.validation_passed:
        error = result.errors[0]
        index = int(error.policy_id.removeprefix("policy")) if error.policy_id else 0
        where = statements[index].line if index < len(statements) else 1
        message = re.sub(r"for policy `policy\d+`, ", "", str(error.error))
        raise ConfigError(
            f"{path}:{where}: {message}",
            hint="policies must fit Shipyard's schema (shipyard policy schema prints it)",
            details={"problems": [str(e.error) for e in result.errors]},
        )
    return statements
