"""Edit formats: a model's reply as edits to a repository, and their application.

A reply may hold edits in two formats, mixed freely; :data:`EDIT_FORMAT` is the text a
prompt quotes.

**Search/replace blocks.** A line with the file's path, then the block (a fence around it is
allowed)::

    shop/cart.py
    <<<<<<< SEARCH
    def total(items):
        return sum(i.price for i in items)
    =======
    def total(items):
        return sum(i.price * i.quantity for i in items)
    >>>>>>> REPLACE

The SEARCH text must match the file's current text exactly once. An empty SEARCH creates a
new file holding the REPLACE text. Further blocks right after one may leave out the path
line: they edit the same file.

**Unified diffs**, fenced as ``diff`` or bare: ``--- a/PATH`` and ``+++ b/PATH`` lines, then
hunks (``@@ -12,4 +12,5 @@``) of context (`` ``), removed (``-``) and added (``+``) lines.
``--- /dev/null`` creates a file, ``+++ /dev/null`` deletes one. A hunk is applied by its
text, not its line numbers: the context and removed lines are its SEARCH text. The line
number only chooses between places where the text appears more than once, when exactly one
of them starts at that line.

**Applying.** Each edit is matched exactly first; then ignoring trailing whitespace; then
ignoring a consistent difference of indentation (the replacement is re-indented to the
place it goes). Text found in more than one place is not guessed at. An edit that does not
apply — no match, an ambiguous match, a file that does not exist (other than one being
created), one that exists when it is being created, a path outside the repository (absolute,
``..``, through a symlink, inside ``.git``) — becomes an :class:`EditProblem`: the file, the
text looked for, the nearest match with its line and similarity, and a message, which
:meth:`EditProblem.finding` turns into a :class:`~shipyard.model.Finding` for the next
attempt. The edits that do apply are applied.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shipyard.model import Finding

__all__ = ["EDIT_FORMAT", "Edit", "EditProblem", "ParsedEdits", "parse_edits"]

EDIT_FORMAT = """\
Reply with edits to the repository's files, in either of two formats.

1. Search/replace blocks. Write the file's path on a line of its own, then:

path/to/file.py
<<<<<<< SEARCH
the exact lines to replace, copied from the file (enough of them to be unique)
=======
the lines to put in their place
>>>>>>> REPLACE

Use several blocks for several places; an empty SEARCH creates a new file.

2. Unified diffs in a ```diff block: `--- a/path` and `+++ b/path`, then hunks starting
with `@@ -start,count +start,count @@` of context (space), removed (-) and added (+) lines.
Use `--- /dev/null` to create a file and `+++ /dev/null` to delete one.

Edit only files inside the repository; never .git."""

_SEARCH = re.compile(r"^\s*<{5,9} ?SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9} ?REPLACE\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_PATH_LINE = re.compile(r"^[\w.@+/~-][\w./@+~-]*$")
_BARE_NAMES = frozenset(
    {"Makefile", "Dockerfile", "Containerfile", "Procfile", "LICENSE", "README", "Justfile"}
)
_SHOWN = 1500


@dataclass(frozen=True, kw_only=True)
class Edit:
    """One edit to one file."""

    path: str
    """The file, repository-relative as the reply wrote it (``a/``/``b/`` removed)."""
    kind: Literal["replace", "create", "delete"]
    """Replace ``search`` with ``replace``; create the file holding ``replace``; delete it."""
    search: str = ""
    """The text to find (replace only)."""
    replace: str = ""
    """The text to put in its place, or the new file's content."""
    line: int = 0
    """The line the reply says the text is at (a diff hunk's start), or 0."""
    number: int = 0
    """Its position in the reply (1-based), for messages."""
    source: Literal["search-replace", "diff"] = "search-replace"
    """The format it came in."""


@dataclass(frozen=True, kw_only=True)
class EditProblem:
    """An edit that could not be applied (or parsed): precise enough to fix next time."""

    rule: str
    """``edit.no-match``, ``edit.ambiguous``, ``edit.missing-file``, ``edit.file-exists``,
    ``edit.path-outside``, ``edit.not-text``, ``edit.malformed`` or ``edit.none``."""
    message: str
    """What went wrong and what to do."""
    file: str = ""
    """The file the edit was for."""
    search: str = ""
    """The text the edit looked for."""
    nearest: str = ""
    """The file's text most like it (no-match only)."""
    nearest_line: int = 0
    """The 1-based line ``nearest`` starts at (or of the first ambiguous place)."""
    similarity: float = 0.0
    """How alike ``search`` and ``nearest`` are, 0 to 1."""

    def finding(self) -> Finding:
        """As a finding for the next attempt (the texts included in its message)."""
        message = self.message
        if self.search:
            message += f"\nLooked for:\n{_cap(self.search)}"
        if self.nearest:
            message += (
                f"\nNearest match, line {self.nearest_line} ({self.similarity:.0%} alike):\n"
                f"{_cap(self.nearest)}"
            )
        return Finding(rule=self.rule, message=message, file=self.file, line=self.nearest_line)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "message": self.message,
            "file": self.file,
            "search": self.search,
            "nearest": self.nearest,
            "nearest_line": self.nearest_line,
            "similarity": round(self.similarity, 3),
        }


@dataclass(frozen=True, kw_only=True)
class ParsedEdits:
    """What :func:`parse_edits` found in a reply."""

    edits: tuple[Edit, ...] = ()
    """The edits, in reply order."""
    problems: tuple[EditProblem, ...] = ()
    """Parts of the reply that look like edits but are malformed, or ``edit.none``."""


def _cap(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "\n... (cut)"


def _clean_path(line: str) -> str:
    text = line.strip().strip("*`'\"").strip()
    text = re.sub(r"^#+\s*", "", text)
    text = re.sub(r"^(?:file|path|filename)\s*:\s*", "", text, flags=re.IGNORECASE)
    return text.strip().strip("*`'\"").rstrip(":").strip()


def _path_before(lines: Sequence[str], start: int, floor: int) -> str:
    """The path line just above ``start`` (skipping blank lines and a fence's opening)."""
    index = start - 1
    while index >= floor and (not lines[index].strip() or _FENCE.match(lines[index])):
        if _FENCE.match(lines[index]):
            rest = _FENCE.sub("", lines[index]).strip()
            candidate = rest.split()[-1] if rest else ""
            if "/" in candidate or "." in candidate[1:]:
                return _plausible(_clean_path(candidate))  # ```python path/to/file.py
        index -= 1
    if index < floor:
        return ""
    return _plausible(_clean_path(lines[index]))


def _plausible(candidate: str) -> str:
    """``candidate`` when it looks like a file path ('' otherwise)."""
    if not _PATH_LINE.match(candidate) or candidate.endswith((".", ":")):
        return ""
    name = candidate.rsplit("/", 1)[-1]
    if "/" in candidate or re.search(r"\.\w+$", name) or name in _BARE_NAMES:
        return candidate
    return ""


def _block_text(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _search_replace(
    lines: list[str], edits: list[Edit], problems: list[EditProblem], used: list[bool]
) -> None:
    previous = ""
    floor = 0
    index = 0
    while index < len(lines):
        if not _SEARCH.match(lines[index]):
            index += 1
            continue
        path = _path_before(lines, index, floor) or previous
        divider = next((j for j in range(index + 1, len(lines)) if _DIVIDER.match(lines[j])), -1)
        end = (
            next((j for j in range(divider + 1, len(lines)) if _REPLACE.match(lines[j])), -1)
            if divider >= 0
            else -1
        )
        if divider < 0 or end < 0 or any(_SEARCH.match(x) for x in lines[index + 1 : end]):
            problems.append(
                EditProblem(
                    rule="edit.malformed",
                    message=f"the SEARCH block at line {index + 1} of the reply is not closed "
                    "(it needs ======= and then >>>>>>> REPLACE)",
                    file=path,
                )
            )
            used[index] = True
            index += 1
            continue
        for j in range(index, end + 1):
            used[j] = True
        if not path:
            problems.append(
                EditProblem(
                    rule="edit.malformed",
                    message=f"the SEARCH block at line {index + 1} of the reply has no file "
                    "path on the line before it",
                )
            )
        else:
            search = _block_text(lines[index + 1 : divider])
            replace = _block_text(lines[divider + 1 : end])
            edits.append(
                Edit(
                    path=path,
                    kind="replace" if search.strip() else "create",
                    search=search,
                    replace=replace,
                    number=len(edits) + 1,
                    source="search-replace",
                )
            )
            previous = path
        floor = end + 1
        index = end + 1


def _diff_path(line: str) -> str:
    text = line[4:].split("\t", 1)[0].rstrip()
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1]
    return text


def _diffs(
    lines: list[str], edits: list[Edit], problems: list[EditProblem], used: list[bool]
) -> None:
    index = 0
    while index < len(lines) - 1:
        if used[index] or not (
            lines[index].startswith("--- ") and lines[index + 1].startswith("+++ ")
        ):
            index += 1
            continue
        old, new = _diff_path(lines[index]), _diff_path(lines[index + 1])
        if (
            (old.startswith("a/") and new.startswith("b/"))
            or (old == "/dev/null" and new.startswith("b/"))
            or (new == "/dev/null" and old.startswith("a/"))
        ):
            old = old[2:] if old.startswith("a/") else old
            new = new[2:] if new.startswith("b/") else new
        index += 2
        hunks: list[tuple[int, list[str]]] = []
        while index < len(lines):
            match = _HUNK.match(lines[index])
            if not match:
                break
            body: list[str] = []
            index += 1
            while index < len(lines):
                line = lines[index]
                header = (
                    line.startswith("--- ")
                    and index + 1 < len(lines)
                    and lines[index + 1].startswith("+++ ")
                )
                if header or line.startswith("@@") or _FENCE.match(line):
                    break
                if line[:1] in (" ", "-", "+", "\\") or line == "":
                    body.append(line)
                    index += 1
                    continue
                break
            while body and body[-1] == "":
                body.pop()  # blank lines after the hunk, not blank context lines
            hunks.append((int(match.group(1)), body))
        _diff_edits(old, new, hunks, edits, problems)


def _diff_edits(
    old: str,
    new: str,
    hunks: list[tuple[int, list[str]]],
    edits: list[Edit],
    problems: list[EditProblem],
) -> None:
    if old == "/dev/null" and new == "/dev/null":
        return
    if old == "/dev/null":
        content = [line[1:] for _, body in hunks for line in body if line.startswith("+")]
        edits.append(
            Edit(
                path=new,
                kind="create",
                replace=_block_text(content),
                number=len(edits) + 1,
                source="diff",
            )
        )
        return
    if new == "/dev/null":
        edits.append(Edit(path=old, kind="delete", number=len(edits) + 1, source="diff"))
        return
    if old != new:
        problems.append(
            EditProblem(
                rule="edit.malformed",
                message=f"the diff renames {old} to {new}; renaming is not supported: delete "
                "the old file (+++ /dev/null) and create the new one (--- /dev/null)",
                file=old,
            )
        )
        return
    if not hunks:
        problems.append(
            EditProblem(rule="edit.malformed", message=f"the diff of {new} has no hunks", file=new)
        )
        return
    for start, body in hunks:
        search, replace = [], []
        for line in body:
            if line.startswith("\\"):
                continue
            text = line[1:] if line else ""
            if line.startswith("-"):
                search.append(text)
            elif line.startswith("+"):
                replace.append(text)
            else:
                search.append(text)
                replace.append(text)
        edits.append(
            Edit(
                path=new,
                kind="replace",
                search=_block_text(search),
                replace=_block_text(replace),
                line=start,
                number=len(edits) + 1,
                source="diff",
            )
        )


def parse_edits(reply: str) -> ParsedEdits:
    """The edits in a model's reply; malformed parts are problems, never exceptions."""
    lines = reply.replace("\r\n", "\n").split("\n")
    used = [False] * len(lines)
    edits: list[Edit] = []
    problems: list[EditProblem] = []
    _search_replace(lines, edits, problems, used)
    _diffs(lines, edits, problems, used)
    if not edits and not problems:
        problems.append(
            EditProblem(
                rule="edit.none",
                message="the reply holds no edits: use search/replace blocks or a unified diff",
            )
        )
    numbered = tuple(
        Edit(path=e.path, kind=e.kind, search=e.search, replace=e.replace, line=e.line,
             number=n, source=e.source)
        for n, e in enumerate(edits, start=1)
    )  # fmt: skip
    return ParsedEdits(edits=numbered, problems=tuple(problems))
