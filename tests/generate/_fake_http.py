"""What the fake model APIs share: a scripted JSON server over real HTTP on loopback.

A test scripts the answers in order and reads back what the client sent. A request with
nothing scripted gets a 500 that says so, so a test that forgets to script an answer fails
loudly instead of hanging. Delays wait on an event that :meth:`FakeAPI.stop` sets, so
stopping never waits for one to run out.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self

__all__ = ["MAX_DELAY", "FakeAPI", "Recorded", "Scripted"]

MAX_DELAY = 5.0
"""The longest a scripted answer may be held back (tests stay bounded)."""


@dataclass(frozen=True, kw_only=True)
class Scripted:
    """One scripted answer."""

    status: int = 200
    """The HTTP status."""
    body: bytes = b""
    """The raw response body."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra response headers (Content-Type defaults to application/json)."""
    delay: float = 0.0
    """Seconds to hold the answer back (cut short when the server stops)."""


@dataclass(frozen=True, kw_only=True)
class Recorded:
    """One request the server received."""

    method: str
    """The HTTP method."""
    path: str
    """The request path, e.g. ``/v1/messages``."""
    headers: dict[str, str]
    """The request headers, names lowercased."""
    body: Any
    """The request body parsed as JSON (``None`` when it is not JSON)."""

    def message(self, role: str) -> str:
        """The content of the first message with ``role`` (``system``, ``user``)."""
        for message in self.body["messages"]:
            if message["role"] == role:
                return str(message["content"])
        raise AssertionError(f"no {role!r} message in {self.body['messages']!r}")


class FakeAPI:
    """A scripted server on 127.0.0.1 and a free port; subclasses speak one API."""

    ROUTE: ClassVar[str] = ""
    """The one path the API answers; others get a 404."""

    def __init__(self) -> None:
        self._script: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.requests: list[Recorded] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def root(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def error_body(self, message: str, error_type: str) -> Any:
        """An error in the API's own format."""
        raise NotImplementedError

    # -- scripting ------------------------------------------------------------------------

    def enqueue(self, answer: Scripted) -> None:
        if not 0 <= answer.delay <= MAX_DELAY:
            raise ValueError(f"a scripted delay must be within 0..{MAX_DELAY} s")
        with self._lock:
            self._script.append(answer)

    def scripted_id(self) -> int:
        return len(self._script) + len(self.requests)

    def error(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "server_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.json(status, self.error_body(message, error_type), headers=headers)

    def json(
        self,
        status: int,
        body: Any,
        *,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.enqueue(
            Scripted(
                status=status,
                body=json.dumps(body).encode(),
                headers=dict(headers or {}),
                delay=delay,
            )
        )

    def raw(self, status: int, body: bytes, *, content_type: str = "application/json") -> None:
        """A body sent byte for byte (e.g. one that is not valid JSON)."""
        self.enqueue(Scripted(status=status, body=body, headers={"Content-Type": content_type}))

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- serving --------------------------------------------------------------------------

    def _next(self, recorded: Recorded) -> Scripted:
        with self._lock:
            self.requests.append(recorded)
            if recorded.path != self.ROUTE:
                body = self.error_body(f"no route {recorded.path}", "not_found")
                return Scripted(status=404, body=json.dumps(body).encode())
            if self._script:
                return self._script.popleft()
        body = self.error_body("nothing scripted", "server_error")
        return Scripted(status=500, body=json.dumps(body).encode())


def _handler_for(fake: FakeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                parsed: Any = json.loads(raw)
            except ValueError:
                parsed = None
            recorded = Recorded(
                method="POST",
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=parsed,
            )
            answer = fake._next(recorded)
            if answer.delay:
                # An Event, not a sleep: stop() ends the wait at once.
                fake._stopping.wait(answer.delay)
            try:
                self.send_response(answer.status)
                headers = {"Content-Type": "application/json", **answer.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
            except OSError:
                pass  # the client gave up (a scripted timeout): nobody is listening

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

    return Handler
