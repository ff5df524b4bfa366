"""A pids cgroup per sandbox slot: the one process limit that holds for root too.

RLIMIT_NPROC does not bind root (or anything running as uid 0 outside its namespaces), so
when Shipyard runs as root the fork limit comes from the cgroup ``pids`` controller: v1 at
``/sys/fs/cgroup/pids``, or v2 where ``pids`` is enabled. Without a writable one, the
backend falls back to RLIMIT_NPROC (effective for non-root users) and says so.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

__all__ = ["PidsCgroup"]

_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))


class PidsCgroup:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, name: str) -> PidsCgroup | None:
        """A new child cgroup named ``name``, or None where none can be made."""
        for root in _ROOTS:
            if not (root / "cgroup.procs").exists():
                continue
            if root == Path("/sys/fs/cgroup"):
                controllers = root / "cgroup.subtree_control"
                if not controllers.exists() or "pids" not in controllers.read_text().split():
                    continue
            _sweep_stale(root)
            try:
                (root / name).mkdir()
            except OSError:
                continue
            group = cls(root / name)
            if group.max_file.exists():
                return group
            group.remove()
        return None

    @property
    def max_file(self) -> Path:
        return self.path / "pids.max"

    @property
    def events_file(self) -> Path:
        return self.path / "pids.events"

    def join(self) -> None:
        """Move the calling process into the group (used between fork and exec)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def set_max(self, count: int) -> None:
        self.max_file.write_text(str(count))

    def remove(self) -> None:
        with suppress(OSError):
            self.path.rmdir()


def _sweep_stale(root: Path) -> None:
    """Remove groups left by Shipyard processes that died without cleaning up (empty ones)."""
    for group in root.glob("shipyard-*-*"):
        owner = group.name.split("-")[1]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            with suppress(OSError):
                group.rmdir()
