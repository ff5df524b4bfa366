"""What every bubblewrap sandbox is made of, for the warm pool and for one-off runs alike.

The system (``/usr`` and the loader's files) and the Python runtime (the interpreter, its
standard library, the environment's packages and Shipyard itself) are mounted read-only; a
run's own :class:`~shipyard.sandbox.Mount` entries are checked here so that none of them can
hide those, the workspace, ``/proc`` or ``/dev``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

import shipyard
from shipyard.errors import SandboxError
from shipyard.sandbox._protocol import Mount

__all__ = ["mount_args", "runtime_mounts", "runtime_paths", "system_mounts", "user_process_count"]

_SANDBOX_ROOT = "/sandbox"


def system_mounts() -> list[str]:
    """bubblewrap arguments that show ``/usr``, its top-level links and the loader's files."""
    args: list[str] = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime"):
        path = Path("/etc") / name
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    return args


def runtime_paths() -> list[str]:
    """The interpreter, its standard library, the environment's packages and Shipyard itself."""
    paths = {
        sys.prefix,
        sys.base_prefix,
        str(Path(os.path.realpath(sys.executable)).parent),
        str(Path(shipyard.__file__).resolve().parent.parent),
    }
    # Installed packages only: a bare sys.path entry may be the project folder itself, whose
    # .shipyard/ (database, artifacts) a run must never see.
    paths.update(
        p for p in sys.path if os.path.isdir(p) and ("site-packages" in p or "dist-packages" in p)
    )
    kept: list[str] = []
    for path in sorted(paths, key=len):  # parents first; skip what a parent already covers
        if path.startswith(("/usr/", "/proc", "/dev")) or path == "/usr":
            continue
        if not any(path == k or path.startswith(k + "/") for k in kept):
            kept.append(path)
    return kept


def runtime_mounts() -> list[str]:
    """bubblewrap arguments that show :func:`runtime_paths` read-only at their own paths."""
    args: list[str] = []
    for path in runtime_paths():
        if _within(path, _SANDBOX_ROOT):
            raise SandboxError(
                f"the Python runtime lives under {path}, where the sandbox mounts workspaces",
                hint="install Shipyard outside /sandbox, or use sandbox.backend = 'process'",
            )
        args += ["--ro-bind", path, path]
    return args


def mount_args(mounts: Sequence[Mount], *, keep_visible: Sequence[str]) -> list[str]:
    """bubblewrap arguments for a run's own mounts, each checked first.

    A mount may not be ``/``, sit under ``/proc`` or ``/dev``, cover or sit inside the system
    or the runtime, or cover any of ``keep_visible`` (the workspace, the proxy's socket).
    """
    system = [path for _, _, path in _triples(system_mounts())]  # binds' and links' paths
    runtime = runtime_paths()
    args: list[str] = []
    for mount in mounts:
        target = _target(mount)
        for path in (*system, *runtime):
            if _within(target, path) or _within(path, target):
                _refuse(mount, target, f"it would hide {path}, which every run needs")
        for path in keep_visible:
            if _within(path, target):
                _refuse(mount, target, f"it would hide {path}")
        args += ["--bind" if mount.writable else "--ro-bind", str(mount.source), target]
    return args


def _target(mount: Mount) -> str:
    if not mount.source.exists():
        raise SandboxError(
            f"cannot mount {mount.source} into the sandbox: it does not exist",
            hint="create it first, or leave it out of the run's mounts",
        )
    target = mount.target or str(mount.source)
    if not target.startswith("/"):
        _refuse(mount, target, "a target must be an absolute path")
    target = os.path.normpath(target)
    if target.startswith("//"):
        target = "/" + target.lstrip("/")
    if target == "/":
        _refuse(mount, target, "it would hide the whole system")
    for reserved in ("/proc", "/dev"):
        if _within(target, reserved):
            _refuse(mount, target, f"{reserved} belongs to the sandbox")
    return target


def _refuse(mount: Mount, target: str, why: str) -> None:
    raise SandboxError(
        f"cannot mount {mount.source} at {target} in the sandbox: {why}",
        hint="mount it somewhere else (Mount.target), e.g. under /opt or /sandbox/work",
    )


def _within(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or inside it."""
    return folder == "/" or path == folder or path.startswith(folder.rstrip("/") + "/")


def _triples(args: list[str]) -> list[tuple[str, str, str]]:
    return [(args[i], args[i + 1], args[i + 2]) for i in range(0, len(args), 3)]


def user_process_count(uid: int) -> int:
    """How many processes ``uid`` has now (RLIMIT_NPROC counts them all, the run's on top)."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with suppress(OSError):
                count += entry.stat().st_uid == uid
    return count
