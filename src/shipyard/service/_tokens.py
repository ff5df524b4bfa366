"""Personal tokens: made at the command line, shown once, kept as a digest.

A token is ``shy_<id>_<secret>``: the id finds the row, the digest of the whole token is
compared in constant time. Each token names a person (whose Cedar roles every call is
checked against) and a role that bounds what it may try. The REST API and the console take
it as a bearer token; the command line takes it from ``SHIPYARD_TOKEN`` (see ``_people``):
one store, one check, for every face.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import select, update

from shipyard.errors import InputError, NotFound
from shipyard.observe import audit
from shipyard.orchestrator import Runtime, govern
from shipyard.store import ApiTokenRow, transaction

__all__ = [
    "ROLES",
    "ROLE_MAY",
    "Caller",
    "authenticate",
    "create_token",
    "list_tokens",
    "revoke_token",
    "role_may",
    "token_live",
]

ROLES: Final = ("viewer", "operator", "approver", "admin")
"""viewer reads; operator also submits, supplies code and steers releases; approver also
approves and rejects; admin may do all of that, export the audit log and administer
(tokens, policy activation)."""

ROLE_MAY: Final[dict[str, frozenset[str]]] = {
    "read": frozenset({"viewer", "operator", "approver", "admin"}),
    "operate": frozenset({"operator", "admin"}),
    "decide": frozenset({"approver", "admin"}),
    "audit": frozenset({"admin"}),
    "administer": frozenset({"admin"}),
}
"""What each token role may try (the API, the console and the command line check it)."""


def role_may(role: str, what: str) -> bool:
    return role in ROLE_MAY[what]


_TOKEN = re.compile(r"^shy_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, kw_only=True)
class Caller:
    """Who a valid token speaks for."""

    token_id: str
    person: str
    role: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    rt: Runtime, person: str, role: str, *, actor: str, principal: str = ""
) -> tuple[str, str]:
    """Make a token for ``person`` with ``role``; (token id, the token: shown once).

    ``principal`` is the authenticated person making it ('' means ``actor``). Whoever holds a
    token is its person, so a token for someone else needs a policy permitting
    ``issue_token`` from the principal on that person (a refusal is audited).
    """
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}", hint=f"roles: {', '.join(ROLES)}")
    if person not in rt.project.settings.people:
        raise InputError(
            f"{person!r} is not one of the project's people",
            hint=f"add [people.{person}] with its roles to {rt.project.config_path}",
        )
    principal = principal.strip() or actor
    if principal != person:
        subject = govern.person_subject(rt, person)
        request = govern.person_request(rt, principal, "issue_token", subject, {"role": role})
        govern.require(rt, request, actor=principal, subject=subject)
    token_id = secrets.token_hex(6)
    token = f"shy_{token_id}_{secrets.token_urlsafe(32)}"
    with transaction(rt.sessions) as session:
        session.add(
            ApiTokenRow(
                id=token_id,
                person=person,
                role=role,
                digest=_digest(token),
                created_by=principal,
                created_at=datetime.now(UTC),
            )
        )
        audit.append(
            session,
            actor=actor,
            action="token",
            resource=f"token {token_id}",
            decision="created",
            reason=f"for {person} as {role}",
        )
    return token_id, token


def authenticate(rt: Runtime, token: str) -> Caller | None:
    """The caller a token speaks for; None when it is malformed, unknown or revoked."""
    found = _TOKEN.match(token)
    if not found:
        return None
    with transaction(rt.sessions) as session:
        row = session.get(ApiTokenRow, found.group(1))  # by id: the secret is never looked up
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.digest, _digest(token)):
            return None
        now = datetime.now(UTC)
        if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
            row.last_used_at = now  # to the minute: no write on every request
        return Caller(token_id=row.id, person=row.person, role=row.role)


def token_live(rt: Runtime, token_id: str) -> bool:
    """Whether the token ``token_id`` exists and is not revoked (a console session's check
    on every request)."""
    with rt.sessions() as session:
        row = session.get(ApiTokenRow, token_id)
        return row is not None and row.revoked_at is None


def list_tokens(rt: Runtime) -> list[ApiTokenRow]:
    with rt.sessions() as session:
        return list(session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.created_at)).all())


def revoke_token(rt: Runtime, token_id: str, *, actor: str) -> None:
    with transaction(rt.sessions) as session:
        done = session.execute(
            update(ApiTokenRow)
            .where(ApiTokenRow.id == token_id, ApiTokenRow.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            raise NotFound(
                f"no live token {token_id!r}", hint="see `shipyard tokens list` for token ids"
            )
        audit.append(
            session, actor=actor, action="token", resource=f"token {token_id}", decision="revoked"
        )
