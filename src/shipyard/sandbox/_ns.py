"""Thin ctypes wrappers over the Linux calls the zygote needs: unshare, mount, capabilities,
and the rlimits a run gets.

Python 3.11 has no ``os.unshare``; these call glibc directly and raise OSError with the errno.
Standard library only: the one-off sandbox's relay loads this file by path, without Shipyard.
"""

from __future__ import annotations

import ctypes
import os
import resource

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing alone costs more than the relay's whole start
    from typing import Any

__all__ = [
    "CLONE_NEWIPC",
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWUSER",
    "CLONE_NEWUTS",
    "apply_limits",
    "clone_fork",
    "drop_capabilities",
    "map_identity",
    "mount",
    "set_dumpable",
    "unshare",
]

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000

MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_CAP_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)
# The same library through PyDLL: calls keep the GIL, as os.fork does around fork().
_libc_gil = ctypes.PyDLL(None, use_errno=True)
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(os.uname().machine)
_SIGCHLD = 17


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def clone_fork(flags: int) -> int:
    """``os.fork()`` into new namespaces in one step: 0 in the child, its pid in the parent.

    A raw clone(2) wrapped in the interpreter's own before/after-fork hooks, exactly as
    ``os.fork`` wraps fork(2). The caller must be single-threaded.
    """
    if _SYS_CLONE is None:
        raise OSError(0, f"clone is not wired for {os.uname().machine}")
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = int(_libc_gil.syscall(_SYS_CLONE, ctypes.c_ulong(flags | _SIGCHLD), 0, 0, 0, 0))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    errno = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(errno, f"clone: {os.strerror(errno)}")
    return pid


def mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def map_identity(uid: int, gid: int) -> None:
    """After unshare(CLONE_NEWUSER): be uid/gid 0 inside, the caller's ids outside."""
    with open("/proc/self/setgroups", "w") as handle:
        handle.write("deny")
    with open("/proc/self/uid_map", "w") as handle:
        handle.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as handle:
        handle.write(f"0 {gid} 1")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_capabilities() -> None:
    """No capabilities from here on, and no way to gain any (no_new_privs)."""
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def set_dumpable(value: bool) -> None:
    """A non-dumpable process cannot be ptraced or have its memory read by its own uid."""
    _check(_libc.prctl(_PR_SET_DUMPABLE, int(value), 0, 0, 0), "prctl(DUMPABLE)")


def apply_limits(limits: dict[str, Any], nproc: int | None) -> None:
    """A run's rlimits (``limits`` is :class:`~shipyard.sandbox.Limits` as a dict); ``nproc``
    caps the uid's processes where no pids cgroup does."""
    cpu = int(limits["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    memory = int(limits["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    size = int(limits["max_file_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    files = int(limits["max_open_files"])
    resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if nproc:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
