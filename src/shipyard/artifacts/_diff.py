"""One diff of file sets, for every caller that compares two versions of generated output.

The gate counts the lines a candidate changes against what is live, the console and
``shipyard artifacts diff`` show them, replay shows what a candidate configuration wrote
differently: all of them compare a mapping of file names to contents the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

__all__ = ["changed_lines", "file_diff"]

Contents = Mapping[str, bytes] | Mapping[str, str]


def _text(value: bytes | str) -> list[str]:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text.splitlines()


def file_diff(
    before: Contents,
    after: Contents,
    *,
    old: str = "a",
    new: str = "b",
    context: int = 3,
) -> list[str]:
    """Unified diff lines from ``before`` to ``after``, file by file in name order.

    A file only on one side is diffed against ``/dev/null``; ``old`` and ``new`` prefix the
    file names in the headers (``live/index.html``, ``candidate/index.html``).
    """
    lines: list[str] = []
    for name in sorted(set(before) | set(after)):
        lines += difflib.unified_diff(
            _text(before.get(name, "")),
            _text(after.get(name, "")),
            fromfile=f"{old}/{name}" if name in before else "/dev/null",
            tofile=f"{new}/{name}" if name in after else "/dev/null",
            lineterm="",
            n=context,
        )
    return lines


def changed_lines(before: Contents, after: Contents) -> int:
    """How many lines ``after`` adds or removes relative to ``before``."""
    return sum(
        1
        for line in file_diff(before, after, context=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )
