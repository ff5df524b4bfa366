"""Applying edits to a working copy: whitespace-tolerant, never a guess, never outside.

Each edit is matched exactly first (at the start of a line); then line by line ignoring
trailing whitespace; then ignoring a difference of indentation that is the same on every
line, the replacement re-indented to where it goes. A SEARCH text found in more than one
place is ambiguous unless the edit says its line (a diff hunk) and exactly one place starts
there. What cannot be applied is an :class:`~shipyard.repos.EditProblem`, with the nearest
match of a text that was not found (the window of the file most like it, by
:class:`difflib.SequenceMatcher`). Paths are checked before anything is read: not absolute,
no ``..``, nothing inside ``.git``, no symlink on the way out of the repository, and never a
write through a symlink. A file keeps its CRLF line ends.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from shipyard.model import Finding
from shipyard.repos._edits import Edit, EditProblem

__all__ = ["AppliedEdits", "apply_edits"]


@dataclass(frozen=True, kw_only=True)
class AppliedEdits:
    """What :func:`apply_edits` did."""

    changed: tuple[str, ...] = ()
    """Files written, created or deleted, in order."""
    applied: int = 0
    """Edits applied."""
    problems: tuple[EditProblem, ...] = field(default_factory=tuple)
    """Edits that were not."""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(p.finding() for p in self.problems)


def _outside(root: Path, path: str) -> str:
    """Why ``path`` may not be edited ('' when it may)."""
    if not path or "\0" in path or "\\" in path:
        return "is not a usable path"
    pure = PurePosixPath(path)
    if pure.is_absolute():
        return "is absolute; paths are relative to the repository's top folder"
    if ".." in pure.parts:
        return "goes up out of the repository (..)"
    if ".git" in pure.parts:
        return "is inside .git, which edits may not touch"
    real_root = root.resolve()
    current = root
    for part in pure.parts:
        current = current / part
        if current.is_symlink():
            target = current.resolve()
            if current == root / pure:
                return "is a symlink; edit the file it points to instead"
            if target != real_root and real_root not in target.parents:
                return "goes through a symlink out of the repository"
            if ".git" in target.relative_to(real_root).parts:
                return "goes through a symlink into .git"
    return ""


def _read(target: Path) -> tuple[str | None, bool, str]:
    """(text or None when missing, CRLF line ends, problem)."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return None, False, ""
    except OSError as exc:
        return None, False, f"cannot be read ({exc.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return None, False, "is not a regular file"
    try:
        raw = target.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None, False, "is not UTF-8 text"
    crlf = "\r\n" in raw
    return raw.replace("\r\n", "\n"), crlf, ""


def apply_edits(root: Path, edits: Sequence[Edit]) -> AppliedEdits:
    """Apply ``edits`` to the files under ``root``, file by file, in order. Edits that do
    not apply are problems; the others are written."""
    problems: list[EditProblem] = []
    changed: list[str] = []
    applied = 0
    by_file: dict[str, list[Edit]] = {}
    for edit in edits:
        by_file.setdefault(str(PurePosixPath(edit.path)) if edit.path else "", []).append(edit)
    for path, group in by_file.items():
        reason = _outside(root, path)
        if reason:
            problems += [
                EditProblem(rule="edit.path-outside", message=f"edit {e.number}: {e.path} {reason}",
                            file=e.path, search=e.search)
                for e in group
            ]  # fmt: skip
            continue
        target = root / path
        text, crlf, unreadable = _read(target)
        if unreadable:
            problems += [
                EditProblem(rule="edit.not-text", message=f"edit {e.number}: {path} {unreadable}",
                            file=path)
                for e in group
            ]  # fmt: skip
            continue
        original = text
        for edit in group:
            text, problem = _apply_one(text, edit, path)
            if problem is not None:
                problems.append(problem)
            else:
                applied += 1
        if text == original:
            continue
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((text.replace("\n", "\r\n") if crlf else text).encode("utf-8"))
        changed.append(path)
    return AppliedEdits(changed=tuple(changed), applied=applied, problems=tuple(problems))


def _apply_one(text: str | None, edit: Edit, path: str) -> tuple[str | None, EditProblem | None]:
    label = f"edit {edit.number}"
    if edit.kind == "create":
        if text is not None and text.strip():
            return text, EditProblem(
                rule="edit.file-exists",
                message=f"{label}: {path} already exists; to change it, SEARCH for the lines "
                "to replace (an empty SEARCH only creates new files)",
                file=path,
            )
        return edit.replace, None
    if text is None:
        verb = "delete" if edit.kind == "delete" else "edit"
        return None, EditProblem(
            rule="edit.missing-file",
            message=f"{label}: {path} does not exist, so there is nothing to {verb}; to create "
            "it, use an empty SEARCH (or --- /dev/null in a diff)",
            file=path,
            search=edit.search,
        )
    if edit.kind == "delete":
        return None, None
    return _replace(text, edit, path)


def _find_all(text: str, search: str) -> list[int]:
    found, start = [], text.find(search)
    while start >= 0:
        found.append(start)
        start = text.find(search, start + 1)
    return found


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _common_indent(lines: list[str]) -> str:
    indents = [_indent(line) for line in lines if line.strip()]
    if not indents:
        return ""
    common = indents[0]
    for indent in indents[1:]:
        while not indent.startswith(common):
            common = common[:-1]
    return common


def _replace(text: str, edit: Edit, path: str) -> tuple[str, EditProblem | None]:
    label = f"edit {edit.number}"
    search = edit.search
    places = [p for p in _find_all(text, search) if p == 0 or text[p - 1] == "\n"]
    starts = [text.count("\n", 0, p) + 1 for p in places]
    if len(places) == 1 or _single_at(starts, edit.line):
        at = places[0] if len(places) == 1 else places[starts.index(edit.line)]
        return text[:at] + edit.replace + text[at + len(search) :], None
    file_lines = _lines(text)
    wanted = _lines(search)
    if not places:
        for tolerant in (_trailing, _indented):
            matches = tolerant(file_lines, wanted)
            if not matches:
                continue
            lines_at = [m[0] + 1 for m in matches]
            if len(matches) > 1 and not _single_at(lines_at, edit.line):
                places, starts = [0] * len(matches), lines_at
                break
            row, prefix, strip = (
                matches[0] if len(matches) == 1 else matches[lines_at.index(edit.line)]
            )
            replacement = [_reindent(line, strip, prefix) for line in _lines(edit.replace)]
            new_lines = file_lines[:row] + replacement + file_lines[row + len(wanted) :]
            ending = "\n" if text.endswith("\n") and new_lines else ""
            return "\n".join(new_lines) + ending, None
    if places:
        where = ", ".join(str(s) for s in starts[:10])
        return text, EditProblem(
            rule="edit.ambiguous",
            message=f"{label}: the SEARCH text appears {len(places)} times in {path} (lines "
            f"{where}); include more of the surrounding lines so it matches once",
            file=path,
            search=search,
            nearest_line=starts[0],
            similarity=1.0,
        )
    line, similarity, nearest = _nearest(file_lines, wanted)
    return text, EditProblem(
        rule="edit.no-match",
        message=f"{label}: the SEARCH text was not found in {path}; copy the lines to replace "
        "exactly as the file has them",
        file=path,
        search=search,
        nearest=nearest,
        nearest_line=line,
        similarity=similarity,
    )


def _single_at(starts: list[int], line: int) -> bool:
    return line > 0 and len(starts) > 1 and starts.count(line) == 1


def _trailing(file_lines: list[str], wanted: list[str]) -> list[tuple[int, str, str]]:
    """Where ``wanted`` matches when trailing whitespace is ignored."""
    n = len(wanted)
    target = [w.rstrip() for w in wanted]
    return [
        (i, "", "")
        for i in range(len(file_lines) - n + 1)
        if n and all(file_lines[i + k].rstrip() == target[k] for k in range(n))
    ]


def _indented(file_lines: list[str], wanted: list[str]) -> list[tuple[int, str, str]]:
    """Where ``wanted`` matches with its indentation shifted by the same amount on every
    line: (row, the file's indentation there, the indentation ``wanted`` had)."""
    strip = _common_indent(wanted)
    bare = [w[len(strip) :].rstrip() if w.strip() else "" for w in wanted]
    first = next((k for k, w in enumerate(bare) if w), -1)
    if first < 0:
        return []
    matches = []
    for i in range(len(file_lines) - len(bare) + 1):
        line = file_lines[i + first].rstrip()
        if not line.endswith(bare[first]):
            continue
        prefix = line[: len(line) - len(bare[first])]
        if prefix.strip():
            continue
        if all(
            (file_lines[i + k].strip() == "") if not b else file_lines[i + k].rstrip() == prefix + b
            for k, b in enumerate(bare)
        ):
            matches.append((i, prefix, strip))
    return matches


def _reindent(line: str, strip: str, prefix: str) -> str:
    if not line.strip():
        return ""
    if strip and line.startswith(strip):
        return prefix + line[len(strip) :]
    return prefix + line.lstrip() if strip else prefix + line


def _nearest(file_lines: list[str], wanted: list[str]) -> tuple[int, float, str]:
    """The 1-based line, similarity and text of the file's window most like ``wanted``."""
    if not file_lines or not wanted:
        return 0, 0.0, ""
    size = min(len(wanted), len(file_lines))
    target = "\n".join(w.strip() for w in wanted)
    best = (0, 0.0, "")
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(target)
    for i in range(len(file_lines) - size + 1):
        window = file_lines[i : i + size]
        matcher.set_seq1("\n".join(w.strip() for w in window))
        if matcher.real_quick_ratio() <= best[1] or matcher.quick_ratio() <= best[1]:
            continue
        ratio = matcher.ratio()
        if ratio > best[1]:
            best = (i + 1, ratio, "\n".join(window))
    return best
