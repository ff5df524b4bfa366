"""The egress half of the one-off sandbox's relay: ``127.0.0.1:PORT`` inside, the proxy's Unix
socket outside.

Loaded by :mod:`shipyard.sandbox._relay` (by path, standard library only) when a run has
egress. One thread: a selector over the listener, the relayed connections (bounded buffers)
and the command's pidfd. When the command ends, every connection ends with it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing alone costs more than the relay's whole start
    from typing import Any

_CHUNK = 65536
_BUFFERED = 262144
"""Bytes one direction of a connection may hold before the relay stops reading it."""


def listen(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    listener.setblocking(False)
    return listener


def relay_until_exit(pid: int, listener: socket.socket | None, target: str) -> tuple[int, float]:
    """Relay connections until process ``pid`` ends; (its exit code, its CPU seconds)."""
    ended = os.pidfd_open(pid)
    selector = selectors.DefaultSelector()
    selector.register(ended, selectors.EVENT_READ, None)
    if listener is not None:
        selector.register(listener, selectors.EVENT_READ, listener)
    links: set[_Link] = set()
    while True:
        for key, events in selector.select():
            if key.data is None:
                for link in list(links):
                    link.close()
                _, status, usage = os.wait4(pid, 0)
                return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime
            if key.data is listener and listener is not None:
                _accept(listener, target, selector, links)
            else:
                key.data.step(key.fileobj, events)


def _accept(
    listener: socket.socket, target: str, selector: selectors.BaseSelector, links: set[_Link]
) -> None:
    try:
        inside, _ = listener.accept()
    except OSError:
        return
    outside = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        outside.connect(target)
    except OSError as exc:
        os.write(2, f"sandbox: the egress proxy is unreachable: {exc.strerror}\n".encode())
        inside.close()
        outside.close()
        return
    links.add(_Link(selector, inside, outside, links))


class _Link:
    """One relayed connection: two non-blocking sockets, a bounded buffer each way."""

    def __init__(
        self,
        selector: selectors.BaseSelector,
        inside: socket.socket,
        outside: socket.socket,
        links: set[_Link],
    ) -> None:
        self.selector, self.links = selector, links
        self.ends = (inside, outside)
        self.pending: dict[socket.socket, bytearray] = {inside: bytearray(), outside: bytearray()}
        """Bytes waiting to be written to each socket."""
        self.ended: dict[socket.socket, bool] = {inside: False, outside: False}
        """Each socket has sent all it will send."""
        self.shut: dict[socket.socket, bool] = {inside: False, outside: False}
        """Writing to each socket has been ended."""
        self.watched: dict[socket.socket, int] = {}
        for sock in self.ends:
            sock.setblocking(False)
        self._rearm()

    def peer(self, sock: socket.socket) -> socket.socket:
        return self.ends[1] if sock is self.ends[0] else self.ends[0]

    def step(self, sock: Any, events: int) -> None:
        try:
            if events & selectors.EVENT_READ:
                data = sock.recv(_CHUNK)
                if data:
                    self.pending[self.peer(sock)] += data
                else:
                    self.ended[sock] = True
            if events & selectors.EVENT_WRITE and self.pending[sock]:
                sent = sock.send(self.pending[sock])
                del self.pending[sock][:sent]
        except BlockingIOError:
            pass
        except OSError:
            self.close()
            return
        self._rearm()

    def _rearm(self) -> None:
        for sock in self.ends:
            peer = self.peer(sock)
            if self.ended[sock] and not self.pending[peer] and not self.shut[peer]:
                with contextlib.suppress(OSError):
                    peer.shutdown(socket.SHUT_WR)
                self.shut[peer] = True
        if all(self.shut.values()):
            self.close()
            return
        for sock in self.ends:
            wanted = 0
            if not self.ended[sock] and len(self.pending[self.peer(sock)]) < _BUFFERED:
                wanted |= selectors.EVENT_READ
            if self.pending[sock]:
                wanted |= selectors.EVENT_WRITE
            self._watch(sock, wanted)

    def _watch(self, sock: socket.socket, events: int) -> None:
        current = self.watched.get(sock, 0)
        if events == current:
            return
        if not events:
            self.selector.unregister(sock)
        elif not current:
            self.selector.register(sock, events, self)
        else:
            self.selector.modify(sock, events, self)
        self.watched[sock] = events

    def close(self) -> None:
        for sock in self.ends:
            if self.watched.pop(sock, 0):
                self.selector.unregister(sock)
            sock.close()
        self.links.discard(self)
