"""A change as people read it: the patch split by file, with the findings at their lines.

``shipyard show``, the API's task story and the console's task and approval pages all show a
repository change this way: each file with its status and line counts, its hunks, and every
finding about that file under the new-side line it names (findings on lines the change did
not touch, or on no line, are listed with the file).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shipyard.model import Finding

__all__ = ["DiffLine", "FileDiff", "file_diffs"]

_HEADER = re.compile(r"^diff --git a/(.*) b/(.*)$")
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")


@dataclass(frozen=True, kw_only=True)
class DiffLine:
    """One line of a file's diff."""

    kind: Literal["hunk", "context", "added", "removed", "note"]
    """``hunk`` is an ``@@`` header; ``note`` is git's (``\\ No newline``, binary)."""
    text: str
    """The line without its ``+``/``-``/space marker."""
    old: int = 0
    """Its line number before the change (0: none)."""
    new: int = 0
    """Its line number after the change (0: none)."""
    findings: tuple[Finding, ...] = ()
    """Findings about this (new-side) line."""


@dataclass(frozen=True, kw_only=True)
class FileDiff:
    """One changed file."""

    path: str
    status: str
    """``added``, ``modified`` or ``deleted``."""
    added: int = 0
    removed: int = 0
    binary: bool = False
    lines: tuple[DiffLine, ...] = ()
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    """Findings about the file that no shown line carries."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "added": self.added,
            "removed": self.removed,
            "binary": self.binary,
            "lines": [
                {
                    "kind": line.kind,
                    "text": line.text,
                    "old": line.old,
                    "new": line.new,
                    "findings": [f.to_dict() for f in line.findings],
                }
                for line in self.lines
            ],
            "findings": [f.to_dict() for f in self.findings],
        }


def _sections(patch: str) -> list[tuple[str, list[str]]]:
    sections: list[tuple[str, list[str]]] = []
    for line in patch.splitlines():
        header = _HEADER.match(line)
        if header:
            sections.append((header.group(2), []))
        elif sections:
            sections[-1][1].append(line)
    return sections


def _file(path: str, body: list[str], findings: Sequence[Finding]) -> FileDiff:
    status, binary = "modified", False
    lines: list[DiffLine] = []
    old = new = 0
    in_hunks = False
    for raw in body:
        if not in_hunks:
            if raw.startswith("new file mode"):
                status = "added"
            elif raw.startswith("deleted file mode"):
                status = "deleted"
            elif raw.startswith(("Binary files", "GIT binary patch")):
                binary = True
            hunk = _HUNK.match(raw)
            if hunk is None:
                continue
            in_hunks = True
        hunk = _HUNK.match(raw)
        if hunk is not None:
            old, new = int(hunk.group(1)), int(hunk.group(2))
            lines.append(DiffLine(kind="hunk", text=raw))
        elif raw.startswith("+"):
            lines.append(DiffLine(kind="added", text=raw[1:], new=new))
            new += 1
        elif raw.startswith("-"):
            lines.append(DiffLine(kind="removed", text=raw[1:], old=old))
            old += 1
        elif raw.startswith("\\"):
            lines.append(DiffLine(kind="note", text=raw))
        else:
            lines.append(DiffLine(kind="context", text=raw[1:], old=old, new=new))
            old, new = old + 1, new + 1
    mine = [f for f in findings if f.file == path]
    placed: list[DiffLine] = []
    used: set[int] = set()
    for line in lines:
        here = tuple(
            f
            for i, f in enumerate(mine)
            if f.line and line.new == f.line and line.kind != "removed"
        )
        used.update(i for i, f in enumerate(mine) if f in here)
        placed.append(line if not here else DiffLine(**{**line.__dict__, "findings": here}))
    return FileDiff(
        path=path,
        status=status,
        added=sum(1 for x in lines if x.kind == "added"),
        removed=sum(1 for x in lines if x.kind == "removed"),
        binary=binary,
        lines=tuple(placed),
        findings=tuple(f for i, f in enumerate(mine) if i not in used),
    )


def file_diffs(patch: str, findings: Sequence[Finding] = ()) -> list[FileDiff]:
    """``patch`` (git's format, as ``Change.patch``) by file, with ``findings`` placed."""
    return [_file(path, body, findings) for path, body in _sections(patch)]
