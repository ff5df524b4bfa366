"""The admin origin's door: what every request to the API and the console passes before any
route sees it, and the headers every response leaves with.

In order, for each HTTP request:

1. **Client address throttles.** An address that made more than
   ``failed_auth_per_minute`` failed attempts (a 401: a bad token, a failed sign-in) in the
   last minute is answered 429 until the minute has passed, unless the request belongs to a
   live console session. Requests carrying neither a bearer token nor a session cookie count
   against ``anonymous_requests_per_minute`` per address.
2. **Bytes.** A NUL or a percent-escape that is not UTF-8 in the path or the query string is
   a 400. A body larger than ``max_body_bytes`` is a 413, refused from its Content-Length
   before a byte of it is read, or as soon as it streams past the limit.
3. **JSON bodies** are read whole and checked before any model parses them: UTF-8 (400), JSON
   at all (400), nested at most ``max_json_depth`` deep (400), strings (keys too) at most
   ``max_json_string`` characters (413), no lone surrogates, no NUL, no NaN or infinities
   (422). A form body must be UTF-8 too. The body then goes on to the app unchanged.
4. **Headers** on every response: a strict Content-Security-Policy (scripts, styles and
   everything else from this origin only; no inline script; ``frame-ancestors 'none'``),
   ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``,
   ``Referrer-Policy: same-origin``, cross-origin opener and resource policies, and
   ``Cache-Control: no-store`` unless the route set its own.

Every refusal is a problem document (``application/problem+json``) naming the limit, or for
a console page the same as a short HTML page.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from shipyard.server._problems import PROBLEM, PROBLEM_JSON, error_page
from shipyard.server._throttle import RateLimiter, retry_seconds

__all__ = ["SECURITY_HEADERS", "AdminLimits", "Door", "JsonRefusal", "check_json"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class AdminLimits:
    """The admin origin's limits (``[serve]`` in shipyard.toml)."""

    requests_per_minute: int = 600
    """API requests per minute per token."""
    max_body_bytes: int = 4 << 20
    """The largest request body accepted (413 above)."""
    max_json_depth: int = 32
    """The deepest nesting of arrays and objects in a JSON body (400 deeper)."""
    max_json_string: int = 1 << 20
    """The longest string, key or value, in a JSON body, in characters (413 longer)."""
    failed_auth_per_minute: int = 20
    """Failed sign-ins and bad tokens an address may make in a minute before it waits."""
    anonymous_requests_per_minute: int = 300
    """Requests without a token or a session an address may make in a minute."""
    figures_cache_seconds: float = 30.0
    """How long computed figures (stats, budgets) are served again before recomputing."""
    figures_per_minute: int = 6
    """Figures computed (a cache miss) per token per minute."""

    @classmethod
    def of(cls, serve: Any) -> AdminLimits:
        """The limits ``[serve]`` (a ``ServeSettings``) sets."""
        return cls(
            requests_per_minute=serve.api_requests_per_minute,
            max_body_bytes=serve.max_body_bytes,
            max_json_depth=serve.max_json_depth,
            max_json_string=serve.max_json_string,
            failed_auth_per_minute=serve.failed_auth_per_minute,
            anonymous_requests_per_minute=serve.anonymous_requests_per_minute,
            figures_cache_seconds=serve.figures_cache_seconds,
            figures_per_minute=serve.figures_per_minute,
        )


CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

SECURITY_HEADERS: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)

_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")
"""A NUL (PostgreSQL's text cannot hold it) or a lone surrogate (not UTF-8 at all)."""


@dataclass(frozen=True, kw_only=True)
class JsonRefusal:
    """Why a JSON body is refused."""

    status: int
    kind: str
    detail: str
    hint: str


def _refuse(status: int, kind: str, detail: str, hint: str) -> JsonRefusal:
    return JsonRefusal(status=status, kind=kind, detail=detail, hint=hint)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def check_json(body: bytes, limits: AdminLimits) -> JsonRefusal | None:
    """None when ``body`` is JSON within ``limits``; else why not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _refuse(
            400, "invalid-encoding", f"the body is not UTF-8 (byte {exc.start})", "send UTF-8"
        )
    try:
        document = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        return _too_deep(limits)
    except ValueError as exc:  # JSONDecodeError, NaN, an integer of thousands of digits
        return _refuse(400, "invalid-json", f"the body is not JSON: {exc}", "send valid JSON")
    return _walk(document, limits)


def _too_deep(limits: AdminLimits) -> JsonRefusal:
    return _refuse(
        400,
        "too-deep",
        f"the JSON body is nested deeper than {limits.max_json_depth} levels",
        "flatten the request (serve.max_json_depth)",
    )


def _walk(document: Any, limits: AdminLimits) -> JsonRefusal | None:
    """Every value of ``document``, without recursion: depth, strings, numbers."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limits.max_json_depth:
                return _too_deep(limits)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and (refused := _string(key, limits)):
                    return refused
                stack.append((item, depth + 1))
        elif isinstance(value, str):
            if refused := _string(value, limits):
                return refused
        elif isinstance(value, float) and not math.isfinite(value):
            return _refuse(
                422, "invalid-number", "a number in the body is out of range", "send finite numbers"
            )
    return None


def _string(value: str, limits: AdminLimits) -> JsonRefusal | None:
    if len(value) > limits.max_json_string:
        return _refuse(
            413,
            "string-too-long",
            f"a string in the body is {len(value)} characters, more than {limits.max_json_string}",
            "send less (serve.max_json_string)",
        )
    if found := _UNSTORABLE.search(value):
        what = "a NUL character" if found.group() == "\x00" else "a lone surrogate"
        return _refuse(
            422,
            "invalid-text",
            f"a string in the body holds {what} (U+{ord(found.group()):04X})",
            "send well-formed UTF-8 text without NUL characters",
        )
    return None


def _utf8(raw: bytes) -> bool:
    """Whether percent-decoded ``raw`` is UTF-8 without NUL."""
    try:
        decoded = unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return "\x00" not in decoded


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b""


def _cookie(scope: Scope, name: str) -> str:
    for part in _header(scope, b"cookie").decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


class Door:
    """ASGI middleware in front of the admin app (see the module's docstring)."""

    def __init__(
        self,
        app: App,
        *,
        limits: AdminLimits,
        live_session: Callable[[str], bool],
        session_cookie: str,
    ) -> None:
        self.app, self.limits = app, limits
        self.live_session, self.session_cookie = live_session, session_cookie
        self.failures = RateLimiter(limits.failed_auth_per_minute)
        self.anonymous = RateLimiter(limits.anonymous_requests_per_minute)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        console = scope["path"].startswith("/console")
        address = str((scope.get("client") or ("?", 0))[0])
        refused = self._throttled(scope, address) or self._bad_target(scope)
        if refused is not None:
            await _answer(send, console, *refused)
            return
        body, refused = await self._body(scope, receive)
        if refused is not None:
            await _answer(send, console, *refused)
            return

        async def replay() -> Message:
            nonlocal body
            if body is None:
                return await receive()
            message, body = {"type": "http.request", "body": body, "more_body": False}, None
            return message

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] == 401:
                    self.failures.add(address)
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [h for h in SECURITY_HEADERS if h[0] not in names]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, replay if body is not None else receive, secured)

    def _throttled(self, scope: Scope, address: str) -> tuple[int, str, str, str, int] | None:
        sid = _cookie(scope, self.session_cookie)
        signed_in = bool(sid) and self.live_session(sid)
        if not signed_in and (wait := self.failures.wait(address)) > 0:
            return (
                429,
                "too-many-failures",
                f"more than {self.limits.failed_auth_per_minute} failed sign-ins or bad tokens "
                "from this address in a minute",
                f"retry after {retry_seconds(wait)} s",
                retry_seconds(wait),
            )
        anonymous = not signed_in and not _header(scope, b"authorization")
        if anonymous and (wait := self.anonymous.hit(address)) > 0:
            return (
                429,
                "rate-limited",
                f"more than {self.limits.anonymous_requests_per_minute} requests without a "
                "token from this address in a minute",
                f"retry after {retry_seconds(wait)} s",
                retry_seconds(wait),
            )
        return None

    def _bad_target(self, scope: Scope) -> tuple[int, str, str, str, int] | None:
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
        if "\x00" in scope["path"] or not _utf8(raw_path) or not _utf8(scope["query_string"]):
            return (
                400,
                "invalid-encoding",
                "the path or query string holds a NUL or bytes that are not UTF-8",
                "percent-encode UTF-8 text",
                0,
            )
        return None

    async def _body(
        self, scope: Scope, receive: Receive
    ) -> tuple[bytes | None, tuple[int, str, str, str, int] | None]:
        """The whole body when it must be checked (None: it streams on as it is)."""
        limit = self.limits.max_body_bytes
        too_large = (
            413,
            "body-too-large",
            f"the request body is larger than {limit} bytes",
            "send less (serve.max_body_bytes)",
            0,
        )
        declared = _header(scope, b"content-length")
        if declared and (not declared.isdigit() or int(declared) > limit):
            return None, too_large
        if not declared and not _header(scope, b"transfer-encoding"):
            return None, None  # no body at all
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None, too_large
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        kind = _header(scope, b"content-type").split(b";")[0].strip().lower()
        if body and (kind == b"application/json" or kind.endswith(b"+json")):
            if (json_refused := check_json(body, self.limits)) is not None:
                r = json_refused
                return None, (r.status, r.kind, r.detail, r.hint, 0)
        elif body and kind == b"application/x-www-form-urlencoded" and not _utf8(body):
            return None, (
                400,
                "invalid-encoding",
                "the form is not UTF-8, or holds a NUL",
                "send the form as UTF-8",
                0,
            )
        return body, None


async def _answer(
    send: Send, console: bool, status: int, kind: str, detail: str, hint: str, retry: int
) -> None:
    """A refusal at the door: a problem document, or a short HTML page for the console."""
    title = kind.replace("-", " ")
    if console:
        body = error_page(title, detail, hint).encode()
        content_type = b"text/html; charset=utf-8"
    else:
        problem = {"type": PROBLEM + kind, "title": title, "status": status, "detail": detail}
        if hint:
            problem["hint"] = hint
        body, content_type = json.dumps(problem).encode(), PROBLEM_JSON.encode()
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *SECURITY_HEADERS,
    ]
    if retry:
        headers.append((b"retry-after", str(retry).encode()))
    if status == 413:
        headers.append((b"connection", b"close"))  # the rest of the body is not read
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
