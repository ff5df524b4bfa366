"""Cedar entities for Shipyard's principals and resources, built from plain data."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shipyard.policy._cedar import uid

__all__ = ["agent", "job_kind", "person", "policy_file", "target", "tool"]

Entity = dict[str, Any]


def _entity(
    kind: str,
    name: str,
    attrs: dict[str, Any] | None = None,
    parents: Iterable[dict[str, str]] = (),
) -> Entity:
    return {"uid": uid(kind, name), "attrs": dict(attrs or {}), "parents": list(parents)}


def person(name: str, roles: Iterable[str]) -> tuple[dict[str, str], list[Entity]]:
    """Person::"name" in each Role::"role" it holds."""
    roles = sorted(set(roles))
    entities = [_entity("Person", name, parents=[uid("Role", r) for r in roles])]
    entities += [_entity("Role", r) for r in roles]
    return uid("Person", name), entities


def agent(domain: str) -> tuple[dict[str, str], list[Entity]]:
    """The pipeline of ``domain``: Agent::"domain" in Domain::"domain"."""
    return uid("Agent", domain), [
        _entity("Agent", domain, parents=[uid("Domain", domain)]),
        _entity("Domain", domain),
    ]


def job_kind(
    name: str, domain: str, *, risk: str, publish: bool
) -> tuple[dict[str, str], list[Entity]]:
    return uid("JobKind", name), [
        _entity("JobKind", name, {"risk": risk, "publish": publish}, [uid("Domain", domain)]),
        _entity("Domain", domain),
    ]


def target(name: str, *, environment: str, risk: str) -> tuple[dict[str, str], list[Entity]]:
    return uid("Target", name), [
        _entity(
            "Target",
            name,
            {"risk": risk, "environment": environment},
            [uid("Environment", environment)],
        ),
        _entity("Environment", environment),
    ]


def tool(name: str, *, capability: str) -> tuple[dict[str, str], list[Entity]]:
    return uid("Tool", name), [_entity("Tool", name, {"capability": capability})]


def policy_file(name: str) -> tuple[dict[str, str], list[Entity]]:
    """PolicyFile::"name" (a live policy file, by its path relative to shipyard.toml)."""
    return uid("PolicyFile", name), [_entity("PolicyFile", name)]
