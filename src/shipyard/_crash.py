"""Named crash points for durability tests and fault drills.

``SHIPYARD_CRASHPOINTS=release.after_switch,verify.before`` makes the process kill itself
with SIGKILL the moment it reaches one of those points, exactly as a power cut would. Unset
(always, in normal operation) it costs one dictionary look-up.
"""

from __future__ import annotations

import os
import signal

__all__ = ["crashpoint"]


def crashpoint(name: str) -> None:
    points = os.environ.get("SHIPYARD_CRASHPOINTS")
    if points and name in points.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
