"""The first process of a one-off bubblewrap run: starts the command, relays the egress proxy.

Started inside the sandbox as ``python -I -S .../_relay.py SPEC -- ARGV...``: by path and
without site, importing only a few standard modules and its siblings ``_ns.py`` and (for
egress) ``_relay_net.py``, so it starts in a few milliseconds instead of importing Shipyard.
SPEC is a dict in :mod:`marshal`'s format, hex-encoded (the same interpreter writes and reads
it; :mod:`json` alone would cost more than the rest of the start)::

    {"status_fd": 3, "limits": {...}, "nproc": None, "keep_pwd": False,
     "proxy": {"socket": "/run/shipyard/egress.sock", "port": 3128}}   # proxy: or None

It then

1. for egress, listens on ``127.0.0.1:PORT`` in the sandbox's own network namespace (where
   bubblewrap has brought up ``lo`` and nothing else) and forwards every connection to the
   host's egress proxy through its Unix socket: the run reaches the proxy at
   ``http://127.0.0.1:PORT`` and nothing else at all;
2. starts ARGV with the run's limits applied as the warm zygote applies them (rlimits, no
   capabilities, no way to gain any) and every other descriptor closed;
3. writes ``{"started": true}`` and, when the command has ended, ``{"exit_code": N, "cpu": S}``
   (a negative code for a signal, like the pool reports) to STATUS_FD, which the host reads:
   the exit code bubblewrap passes on cannot tell a signal from an exit status.
"""

from __future__ import annotations

import marshal
import os
import sys
from types import ModuleType

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing alone costs more than the rest of the start
    from typing import Any


def _sibling(name: str) -> ModuleType:
    """A module from this folder, as a top-level module: Shipyard's package is never imported
    here (and the host never imports this file: it runs it)."""
    folder = os.path.dirname(os.path.abspath(__file__))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return __import__(name)


_ns = _sibling("_ns")


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print("usage: python -I -S _relay.py SPEC -- ARGV...", file=sys.stderr)
        return 2
    spec: dict[str, Any] = marshal.loads(bytes.fromhex(args[0]))
    command = args[2:]
    status = int(spec["status_fd"])
    os.set_inheritable(status, False)
    if not spec.get("keep_pwd"):
        os.environ.pop("PWD", None)  # bubblewrap's, not the run's: the run's env is exactly its own
    _ns.set_dumpable(False)  # the command may not read or steer the relay
    proxy = spec.get("proxy")
    net = _sibling("_relay_net") if proxy else None
    listener = net.listen(int(proxy["port"])) if net is not None and proxy else None
    os.write(status, b'{"started": true}\n')
    pid = _spawn(command, spec["limits"], spec.get("nproc"))
    if net is not None and proxy:
        exit_code, cpu = net.relay_until_exit(pid, listener, proxy["socket"])
    else:
        _, wait_status, usage = os.wait4(pid, 0)
        exit_code, cpu = os.waitstatus_to_exitcode(wait_status), usage.ru_utime + usage.ru_stime
    os.write(status, f'{{"exit_code": {exit_code}, "cpu": {cpu!r}}}\n'.encode())
    return 0


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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
