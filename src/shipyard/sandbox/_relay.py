"""The first process of a one-off bubblewrap run: relays the egress proxy, starts the command.

Started inside the sandbox as ``python -I -S .../_relay.py SPEC -- ARGV...`` (by path and
without site: it needs only the standard library and its sibling ``_ns.py``, so it starts in
a few milliseconds instead of importing Shipyard), where SPEC is a JSON object::

    {"status_fd": 3, "limits": {...}, "nproc": null, "keep_pwd": false,
     "proxy": {"socket": "/run/shipyard/egress.sock", "port": 3128}}   # proxy: or null

It then

1. listens on ``127.0.0.1:PORT`` in the sandbox's own network namespace (where bubblewrap
   has brought up ``lo`` and nothing else) and forwards every connection to the host's
   egress proxy through its Unix socket: the run reaches the proxy at ``http://127.0.0.1:PORT``
   and nothing else at all;
2. starts ARGV with the run's limits applied as the warm zygote applies them (rlimits, no
   capabilities, no way to gain any) and every other descriptor closed;
3. writes ``{"started": true}`` and, when the command has ended, ``{"exit_code": N, "cpu": S}``
   (a negative code for a signal, like the pool reports) to STATUS_FD, which the host reads:
   the exit code bubblewrap passes on cannot tell a signal from an exit status.

One thread: a selector over the listener, the relayed connections (bounded buffers) and the
command's pidfd. When the command ends, every connection ends with it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import selectors
import socket
import sys
from types import ModuleType
from typing import Any


def _sibling(name: str) -> ModuleType:
    """A module from this folder, loaded by path: Shipyard's package is never imported here."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_shipyard_relay_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ns = _sibling("_ns")

_CHUNK = 65536
_BUFFERED = 262144
"""Bytes one direction of a connection may hold before the relay stops reading it."""


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print("usage: python -I -S _relay.py SPEC -- ARGV...", file=sys.stderr)
        return 2
    spec: dict[str, Any] = json.loads(args[0])
    command = args[2:]
    status = int(spec["status_fd"])
    os.set_inheritable(status, False)
    if not spec.get("keep_pwd"):
        os.environ.pop("PWD", None)  # bubblewrap's, not the run's: the run's env is exactly its own
    _ns.set_dumpable(False)  # the command may not read or steer the relay
    proxy = spec.get("proxy")
    listener = _listen(int(proxy["port"])) if proxy else None
    os.write(status, b'{"started": true}\n')
    pid = _spawn(command, spec["limits"], spec.get("nproc"))
    exit_code, cpu = _relay_until_exit(pid, listener, proxy["socket"] if proxy else "")
    os.write(status, json.dumps({"exit_code": exit_code, "cpu": cpu}).encode() + b"\n")
    return 0


def _listen(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    listener.setblocking(False)
    return listener


def _spawn(command: list[str], limits: dict[str, Any], nproc: int | None) -> int:
    pid = os.fork()
    if pid:
        return pid
    try:  # the command: never returns into the relay
        os.closerange(3, 1 << 16)
        _ns.apply_limits(limits, nproc)
        _ns.drop_capabilities()
    except OSError as exc:
        os.write(2, f"sandbox setup failed: {exc}\n".encode())
        os._exit(125)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        os.write(2, f"cannot run {command[0]!r}: {exc.strerror}\n".encode())
    os._exit(127)


def _relay_until_exit(pid: int, listener: socket.socket | None, target: str) -> tuple[int, float]:
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
