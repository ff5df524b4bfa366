"""The console's sign-in: server-side sessions behind an HttpOnly, SameSite=Strict cookie,
and the dependencies its pages ask for (who is signed in; may they do this, with the
session's CSRF token).

People sign in with an API token; the console keeps the token's caller server-side and gives
the browser only a session id. The sessions live on ``app.state.sessions`` (``create_app``
puts them there), in this process.

A session is bound to its token: every request checks the token is still live (one primary
key read, as the API does for every request), so revoking the token ends its sessions at the
next request. A token has one session at a time: signing in again with it ends the earlier
one, and so does signing out (whatever the form's CSRF token says: ending a session only ever
takes rights away).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, Form, Request

from shipyard.errors import PolicyDenied
from shipyard.service import Caller, Runtime, token_live
from shipyard.service import role_may as may

__all__ = [
    "COOKIE",
    "LOGIN_COOKIE",
    "SESSION_HOURS",
    "Deciding",
    "Operating",
    "Session",
    "Sessions",
    "SignIn",
    "SignedIn",
    "same",
    "session_of",
]

COOKIE: Final = "shipyard_session"
LOGIN_COOKIE: Final = "shipyard_login"
SESSION_HOURS: Final = 12


@dataclass(frozen=True, kw_only=True)
class Session:
    """A signed-in browser."""

    caller: Caller
    """Who its token speaks for (revoking the token ends the session)."""
    csrf: str
    """The token every form of this session carries."""
    expires: float
    """Seconds since the epoch."""


class Sessions:
    """Signed-in browsers of this process: session id -> who, CSRF token, expiry."""

    def __init__(self) -> None:
        self._found: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, caller: Caller) -> str:
        """A new session for ``caller``; the token's earlier sessions end."""
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._found = {
                k: v
                for k, v in self._found.items()
                if v.expires > now and v.caller.token_id != caller.token_id
            }
            self._found[sid] = Session(
                caller=caller, csrf=secrets.token_urlsafe(24), expires=now + SESSION_HOURS * 3600
            )
        return sid

    def get(self, sid: str) -> Session | None:
        with self._lock:
            found = self._found.get(sid)
        return found if found is not None and found.expires > time.time() else None

    def live(self, sid: str) -> bool:
        """Whether ``sid`` names a session that has not expired (its token is not looked at)."""
        return self.get(sid) is not None

    def close(self, sid: str) -> None:
        with self._lock:
            self._found.pop(sid, None)

    def close_token(self, token_id: str) -> int:
        """End every session of a token; how many there were."""
        with self._lock:
            ended = [k for k, v in self._found.items() if v.caller.token_id == token_id]
            for sid in ended:
                del self._found[sid]
        return len(ended)


class SignIn(Exception):
    """Not signed in: go to the login page (``revoked``: the session's token was revoked)."""

    def __init__(self, *, revoked: bool = False) -> None:
        super().__init__("revoked" if revoked else "signed out")
        self.revoked = revoked


def same(given: str, expected: str) -> bool:
    """Whether a form's token is the expected one (in constant time, whatever it holds)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def session_of(request: Request) -> Session | None:
    """The request's session, if its cookie names a live one."""
    sessions: Sessions = request.app.state.sessions
    return sessions.get(request.cookies.get(COOKIE, ""))


def signed_in(request: Request) -> Session:
    found = session_of(request)
    if found is None:
        raise SignIn
    rt: Runtime = request.app.state.runtime
    if not token_live(rt, found.caller.token_id):
        sessions: Sessions = request.app.state.sessions
        sessions.close_token(found.caller.token_id)
        raise SignIn(revoked=True)
    return found


SignedIn = Annotated[Session, Depends(signed_in)]
"""The session of a signed-in browser (else: to the login page)."""


def _acting(what: str) -> Callable[[Session, str], Session]:
    def check(session: SignedIn, csrf: Annotated[str, Form()] = "") -> Session:
        if not same(csrf, session.csrf):
            raise PolicyDenied(
                "the form's CSRF token does not match this session",
                hint="reload the page and send the form again",
            )
        if not may(session.caller.role, what):
            raise PolicyDenied(
                f"a {session.caller.role} token may not do that",
                hint="sign in with a token of a role that may",
            )
        return session

    return check


Operating = Annotated[Session, Depends(_acting("operate"))]
"""A form sent by a session whose role may operate (steer releases)."""
Deciding = Annotated[Session, Depends(_acting("decide"))]
"""A form sent by a session whose role may decide (approve, reject)."""
