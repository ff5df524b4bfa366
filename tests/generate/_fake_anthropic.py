"""A local stand-in for Anthropic's Messages API, spoken over real HTTP on loopback.

Each test scripts the server's answers in order (a message, an error status, a raw body, a
delayed answer) and then reads back what the client sent: paths, headers and JSON bodies.
An unscripted request gets a 500 that says so, so a test that sends more than it scripted
fails loudly instead of hanging.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["FakeAnthropic", "Recorded", "Scripted"]


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


class FakeAnthropic:
    """A scripted Messages API server on 127.0.0.1 and a free port."""

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
    def url(self) -> str:
        """The root URL to use as the client's base URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- scripting ------------------------------------------------------------------------

    def enqueue(self, answer: Scripted) -> None:
        with self._lock:
            self._script.append(answer)

    def reply(
        self,
        text: str | list[dict[str, Any]],
        *,
        model: str = "claude-test-1",
        stop_reason: str | None = "end_turn",
        input_tokens: int = 11,
        output_tokens: int = 22,
        delay: float = 0.0,
    ) -> None:
        """A successful message; ``text`` is one text block, or a list of raw content blocks."""
        content = [{"type": "text", "text": text}] if isinstance(text, str) else text
        self.json(
            200,
            {
                "id": f"msg_{len(self._script) + len(self.requests):04d}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            },
            delay=delay,
        )

    def error(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "api_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        """An error in the API's format: ``{"type": "error", "error": {type, message}}``."""
        body = {"type": "error", "error": {"type": error_type, "message": message}}
        self.json(status, body, headers=headers)

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

    def start(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeAnthropic:
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
            if self._script:
                return self._script.popleft()
        body = {"type": "error", "error": {"type": "api_error", "message": "nothing scripted"}}
        return Scripted(status=500, body=json.dumps(body).encode())


def _handler_for(fake: FakeAnthropic) -> type[BaseHTTPRequestHandler]:
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
