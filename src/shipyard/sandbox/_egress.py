"""The egress proxy: a run's only way out, to exactly the ``host:port`` entries it lists.

A run that may reach the network (a coding agent calling its model's API, a test suite
fetching from a local index) gets an HTTP proxy that Shipyard runs for the length of that run.
It answers ``CONNECT host:port`` (a tunnel: what HTTPS clients use) and absolute-URI plain
HTTP requests (``GET http://host:port/path``), and lets through only targets that match an
allowed entry exactly (host without regard to case, and port). Anything else gets ``403`` with
a one-line reason. Names are resolved here, on the host, and only for allowed entries. Every
decision is kept (``allowed host:port`` / ``denied host:port``) for the run's result.

The proxy listens on a Unix socket for bubblewrap runs (which have no network namespace in
common with the host; :mod:`shipyard.sandbox._relay` makes the socket reachable as
``http://127.0.0.1:PORT`` inside), or on a loopback TCP port for the process backend. One
thread per connection; every socket is closed when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from shipyard.errors import ConfigError

__all__ = ["EgressProxy", "parse_egress", "proxy_environment"]

_HEAD_LIMIT = 65536
"""The largest request head (request line and headers) the proxy reads."""
_HEAD_SECONDS = 30.0
"""How long a client may take to send its request head."""
_CONNECT_SECONDS = 10.0
"""How long reaching an allowed target may take."""
_MAX_CONNECTIONS = 64
"""Connections open at once; more are answered 503."""
_CHUNK = 65536
_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "proxy-authorization"}
_REASONS = {400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large"}
_REASONS |= {502: "Bad Gateway", 503: "Service Unavailable"}


def parse_egress(entries: Iterable[str]) -> tuple[str, ...]:
    """``entries`` checked and normalised (``host:port``, host in lower case).

    Raises ConfigError naming the first entry that is not ``host:port`` with a port in
    1-65535 (``[::1]:8080`` for an IPv6 address).
    """
    kept: list[str] = []
    for entry in entries:
        target = _split_target(str(entry).strip())
        if target is None:
            raise ConfigError(
                f"egress entry {entry!r} is not host:port",
                hint="list each host the run may reach with its port, e.g. "
                "'api.anthropic.com:443' or '127.0.0.1:8080'",
            )
        key = _key(*target)
        if key not in kept:
            kept.append(key)
    return tuple(kept)


def proxy_environment(url: str) -> dict[str, str]:
    """The variables that send HTTP(S) clients through the proxy at ``url``."""
    env: dict[str, str] = {}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = url
    env["NO_PROXY"] = env["no_proxy"] = ""
    return env


def _split_target(text: str) -> tuple[str, int] | None:
    """(host, port) of ``host:port`` / ``[v6]:port``; None when it is not one."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            return None
        host = host[1:-1]
    if ":" in host and not text.startswith("["):
        return None  # a bare IPv6 address without brackets: ambiguous
    if any(c.isspace() or c in "/@?#" for c in host):
        return None
    return host.lower(), int(port)


def _key(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class EgressProxy:
    """An HTTP proxy for one run that reaches only ``allow`` (``host:port`` entries).

    Listens on ``unix_path`` when given, else on a free loopback TCP port (:attr:`url`).
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, allow: Iterable[str], *, unix_path: Path | None = None) -> None:
        self.allowed = frozenset(parse_egress(allow))
        self.unix_path = unix_path
        if unix_path is not None:
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(str(unix_path))
        else:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._log: list[str] = []
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        self._acceptor = threading.Thread(target=self._accept, name="egress-proxy", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of a TCP proxy (a Unix one is reached through a relay)."""
        if self.unix_path is not None:
            raise ValueError("a proxy on a Unix socket has no URL of its own")
        host, port = self._listener.getsockname()
        return f"http://{host}:{port}"

    @property
    def log(self) -> tuple[str, ...]:
        """Every decision so far, in order: ``allowed host:port`` or ``denied host:port``."""
        with self._lock:
            return tuple(self._log)

    def __enter__(self) -> EgressProxy:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening and end every connection (tunnels included)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.write(self._wake_w, b"x")
        self._acceptor.join(timeout=5)
        with self._lock:
            sockets = list(self._open)
            threads = list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=5)
        self._listener.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self.unix_path is not None:
            with contextlib.suppress(OSError):
                self.unix_path.unlink()

    # -- connections ---------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            ready, _, _ = select.select([self._listener.fileno(), self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            with self._lock:
                busy = self._closed or len(self._threads) >= _MAX_CONNECTIONS
                if not busy:
                    thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
                    self._threads.add(thread)
                    self._open.add(client)
            if busy:
                _reply(client, 503, "too many connections through the egress proxy at once")
                continue
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            upstream = self._open_upstream(client)
            if upstream is not None:
                self._tunnel(client, upstream)
        finally:
            with self._lock:
                self._open.discard(client)
                if upstream is not None:
                    self._open.discard(upstream)
                self._threads.discard(threading.current_thread())
            for sock in (client, upstream):
                if sock is not None:
                    sock.close()

    def _open_upstream(self, client: socket.socket) -> socket.socket | None:
        """Read the request, decide, and connect: the upstream socket, or None when the
        client has been answered (refused, malformed, unreachable) or went away."""
        try:
            head, rest = _read_head(client)
            if not head:
                return None
            host, port, forward = _parse(head)
        except _Refused as refused:
            _reply(client, refused.status, str(refused))
            return None
        except OSError:
            return None
        key = _key(host, port)
        if key not in self.allowed:
            self._record(f"denied {key}")
            _reply(client, 403, f"{key} is not in the tier's egress list")
            return None
        self._record(f"allowed {key}")
        try:
            upstream = socket.create_connection((host, port), timeout=_CONNECT_SECONDS)
        except OSError as exc:
            _reply(client, 502, f"could not reach {key}: {exc.strerror or exc}")
            return None
        upstream.settimeout(None)
        with self._lock:
            self._open.add(upstream)
            closed = self._closed
        try:
            if closed:
                raise OSError("the egress proxy is closing")
            if forward is None:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream.sendall(forward)
            if rest:
                upstream.sendall(rest)
        except OSError:
            upstream.close()
            return None
        return upstream

    def _tunnel(self, client: socket.socket, upstream: socket.socket) -> None:
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()

    def _record(self, line: str) -> None:
        with self._lock:
            self._log.append(line)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until ``source`` ends; then end ``sink``'s writing."""
    try:
        while chunk := source.recv(_CHUNK):
            sink.sendall(chunk)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _read_head(client: socket.socket) -> tuple[bytes, bytes]:
    """(request head up to its blank line, bytes after it); (b'', b'') if the client left."""
    client.settimeout(_HEAD_SECONDS)
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > _HEAD_LIMIT:
            raise _Refused(431, "the request head is larger than the egress proxy reads")
        chunk = client.recv(_CHUNK)
        if not chunk:
            return b"", b""
        data += chunk
    client.settimeout(None)
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _parse(head: bytes) -> tuple[str, int, bytes | None]:
    """(host, port, the head to send upstream: None for CONNECT) of one request head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _Refused(400, "not an HTTP request")
    method, target, version = parts
    if method.upper() == "CONNECT":
        found = _split_target(target)
        if found is None:
            raise _Refused(400, f"CONNECT needs host:port, not {target!r}")
        return found[0], found[1], None
    url = urlsplit(target)
    if url.scheme.lower() != "http" or not url.hostname:
        raise _Refused(
            400, "send http:// requests with an absolute URI, and use CONNECT for anything else"
        )
    try:
        port = url.port or 80
    except ValueError as exc:
        raise _Refused(400, f"bad port in {target!r}") from exc
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    headers = [h for h in lines[1:] if h.split(":", 1)[0].strip().lower() not in _HOP_HEADERS]
    if not any(h.split(":", 1)[0].strip().lower() == "host" for h in headers):
        headers.append(f"Host: {url.netloc.rpartition('@')[2]}")
    # One request per connection: a client's next request may be for another host.
    forward = "\r\n".join([f"{method} {path} {version}", *headers, "Connection: close", "", ""])
    return url.hostname.lower(), port, forward.encode("latin-1")


def _reply(client: socket.socket, status: int, message: str) -> None:
    """Answer ``status`` with ``message`` as a one-line body, and close the connection."""
    body = f"shipyard egress proxy: {message}\n".encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        client.sendall(head.encode() + body)
    with contextlib.suppress(OSError):
        client.close()
