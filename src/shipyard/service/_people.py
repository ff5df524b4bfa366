"""Who is acting: the authenticated person, and the name they act under.

A project with a ``[people]`` table authenticates the person at the command line, in this
order: ``SHIPYARD_TOKEN`` (a personal token, the same store and check as the REST API's
bearer tokens; its role bounds what it may try), else the login of the process's user,
which must be in exactly one person's ``os_users``. Naming someone else (``--as NAME``, or
``$SHIPYARD_USER``) is refused unless a policy permits ``act_for`` from the authenticated
person on ``Person::"NAME"``; when it does, the act is audited and both names are kept
(the decision's ``principal`` and ``actor``, the task's ``submitted_principal`` and
``submitted_by``). Approvals count principals, so one person never counts as two.

A project without ``[people]`` keeps names as given (``--as``, ``$SHIPYARD_USER``, the
login): anyone can write any name, so it has no two-person guarantee, and the faces say so
wherever approvals are given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from shipyard.errors import ConfigError, InputError, PolicyDenied
from shipyard.orchestrator import Runtime, govern
from shipyard.service._tokens import ROLE_MAY, authenticate, role_may
from shipyard.store import transaction

__all__ = ["NO_TWO_PERSON_GUARANTEE", "TOKEN_VARIABLE", "Identity", "has_people", "identify"]

TOKEN_VARIABLE: Final = "SHIPYARD_TOKEN"
"""The environment variable holding a personal token at the command line."""

NO_TWO_PERSON_GUARANTEE: Final = (
    "this project has no [people] table, so names are taken as given (--as, $SHIPYARD_USER, "
    "the login) and one person can approve under several names: there is no two-person "
    "guarantee. Add [people.NAME] tables with roles and os_users to authenticate people."
)
"""What the faces say wherever approvals are given in a project without ``[people]``."""


@dataclass(frozen=True, kw_only=True)
class Identity:
    """The person behind a command, and the name it acts under."""

    name: str
    """Whom the command acts for: what is recorded as its actor (and policies judge)."""
    principal: str
    """The authenticated person: ``name`` unless a policy let them act for someone else.
    In a project without ``[people]``, the name as given."""
    via: str
    """How the principal was established: ``SHIPYARD_TOKEN (token ID)``, ``login NAME``,
    or ``unauthenticated`` (a project without ``[people]``)."""
    token_role: str = ""
    """The token's role when the person came from ``SHIPYARD_TOKEN``, else ''."""

    @property
    def authenticated(self) -> bool:
        return self.via != "unauthenticated"

    @property
    def acting_for_another(self) -> bool:
        return self.name != self.principal

    def describe(self) -> str:
        """``alice``, or ``bob (by alice)`` when alice acts for bob."""
        return f"{self.name} (by {self.principal})" if self.acting_for_another else self.name


def has_people(rt: Runtime) -> bool:
    """Whether the project authenticates people (it has a ``[people]`` table)."""
    return bool(rt.project.settings.people)


def identify(
    rt: Runtime,
    *,
    login: str,
    token: str = "",
    asked: str = "",
    asked_via: str = "--as",
    need: str = "",
) -> Identity:
    """The person acting at the command line (see the module's docstring).

    ``login`` is the process's user (from the system's user database, never ``$USER``),
    ``token`` the value of ``SHIPYARD_TOKEN``, ``asked`` the name given by ``asked_via``
    (``--as`` or ``$SHIPYARD_USER``), and ``need`` what the command does, as the token
    roles name it (``operate``, ``decide``, ``administer``; '' for nothing a role bounds).
    """
    asked = asked.strip()
    people = rt.project.settings.people
    role = ""
    if token.strip():
        principal, via, role = _from_token(rt, token.strip(), need)
    elif people:
        principal, via = _from_login(rt, login), f"login {login}"
    else:
        name = asked or login
        if not name:
            raise InputError(
                "who is acting? there is no --as, $SHIPYARD_USER or login name",
                hint="pass --as NAME, or better: add [people.NAME] tables with os_users",
            )
        return Identity(name=name, principal=name, via="unauthenticated")
    if not asked or asked == principal:
        return Identity(name=principal, principal=principal, via=via, token_role=role)
    return _acting_for(rt, principal, asked, asked_via, via, role)


def _from_token(rt: Runtime, token: str, need: str) -> tuple[str, str, str]:
    caller = authenticate(rt, token)
    if caller is None:
        raise InputError(
            f"{TOKEN_VARIABLE} holds no live token: it is unknown, malformed or revoked",
            hint=f"set {TOKEN_VARIABLE} to a token from `shipyard tokens create NAME --role "
            f"ROLE` (`shipyard tokens list` shows which are live), or unset it to act as "
            "your login's person",
        )
    if need and not role_may(caller.role, need):
        raise PolicyDenied(
            f"{TOKEN_VARIABLE} is {caller.person}'s {caller.role} token (token "
            f"{caller.token_id}), which may not {need}",
            hint=f"use a token whose role may: {', '.join(sorted(ROLE_MAY[need]))}",
        )
    return caller.person, f"{TOKEN_VARIABLE} (token {caller.token_id})", caller.role


def _from_login(rt: Runtime, login: str) -> str:
    people = rt.project.settings.people
    owners = [name for name, person in people.items() if login and login in person.os_users]
    if not owners:  # a login in two people's os_users is refused when the file loads
        raise ConfigError(
            f"login {login!r} is not one of this project's people, who are authenticated "
            f"(its [people] table lists: {', '.join(people)})",
            hint=f"add it to your person's table in {rt.project.config_path} (os_users = [\""
            f'{login}"] under [people.NAME]), or set {TOKEN_VARIABLE} to a personal token '
            "(`shipyard tokens create NAME --role ROLE`, made by someone who is in it)",
        )
    return owners[0]


def _acting_for(
    rt: Runtime, principal: str, name: str, asked_via: str, via: str, role: str
) -> Identity:
    """``principal`` acting under ``name``: only where a policy permits ``act_for``."""
    people = rt.project.settings.people
    if name not in people:
        raise InputError(
            f"{asked_via} names {name!r}, who is not one of this project's people "
            f"({', '.join(people) or 'it has no [people] table'})",
            hint=f"{_drop(asked_via)} to act as yourself, {principal}",
        )
    subject = govern.person_subject(rt, name)
    request = govern.person_request(rt, principal, "act_for", subject, {})
    verdict = rt.policies.authorize(request)
    with transaction(rt.sessions) as session:
        govern.record(
            session,
            actor=principal,
            action="act_for",
            subject=subject,
            decision="allow" if verdict.allowed else "deny",
            reason=verdict.reason(),
            detail={"via": via, "asked_by": asked_via},
        )
    if not verdict.allowed:
        raise PolicyDenied(
            f"{principal} ({via}) may not act for {name} ({asked_via} {name}): {verdict.reason()}",
            hint=f"{_drop(asked_via)} to act as {principal}; acting for another person needs "
            'a policy permitting action "act_for" on them (see docs/policies.md)',
        )
    return Identity(name=name, principal=principal, via=via, token_role=role)


def _drop(asked_via: str) -> str:
    """How to stop asking for another name (``--as`` or ``$SHIPYARD_USER``)."""
    return f"unset {asked_via[1:]}" if asked_via.startswith("$") else f"leave out {asked_via}"
