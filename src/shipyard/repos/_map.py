"""The repository map: every file, and for Python files their classes, functions and
signatures, so a generator sees the shape of code it is not sent.

Python files are read with :mod:`ast`; one that does not parse (a repository mid-change)
still gets its ``class``/``def`` lines found by a pattern, with a note saying so. Other text
files are listed by name and size. Binary files, symlinks and what git ignores are left
out (the working copy's file list already leaves out ignored files).
"""

from __future__ import annotations

import ast
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from shipyard.repos._workcopy import WorkingCopy, working_files

__all__ = ["MappedFile", "RepoMap", "Symbol", "map_files", "map_working_copy", "read_text"]

MAX_PARSE_BYTES = 512_000
"""Larger files are listed but not parsed or read for context."""
_SIGNATURE_CHARS = 160
_DEF_LINE = re.compile(r"^(\s*)(async\s+def|def|class)\s+([A-Za-z_]\w*)\s*(.*?):?\s*$")


@dataclass(frozen=True, kw_only=True)
class Symbol:
    """A class or function a Python file defines."""

    kind: Literal["class", "function", "method"]
    """What it is (a method is a function in a class body)."""
    name: str
    """Its name, qualified by its class for a method (``Cart.total``)."""
    signature: str
    """How it is declared: ``def total(self, *, tax: bool = True) -> Decimal``."""
    line: int
    """The 1-based line it starts at."""


@dataclass(frozen=True, kw_only=True)
class MappedFile:
    """One file of the map."""

    path: str
    """Repository-relative, with ``/``."""
    size: int
    """In bytes."""
    kind: Literal["python", "text"]
    """``python`` for ``.py``/``.pyi`` files, else ``text``."""
    symbols: tuple[Symbol, ...] = ()
    """Its classes and functions, in file order (Python only)."""
    note: str = ""
    """E.g. why its symbols were found by pattern rather than parsed."""

    def render(self) -> str:
        """Its lines in the map: the path and size, then one indented line per symbol."""
        head = f"{self.path} ({_size(self.size)})"
        if self.note:
            head += f" [{self.note}]"
        lines = [head]
        for symbol in self.symbols:
            indent = "    " if symbol.kind == "method" else "  "
            lines.append(indent + symbol.signature)
        return "\n".join(lines)


@dataclass(frozen=True, kw_only=True)
class RepoMap:
    """The map of a repository's files."""

    files: tuple[MappedFile, ...]
    """Every mapped file, in path order."""

    @cached_property
    def _by_path(self) -> dict[str, MappedFile]:
        return {entry.path: entry for entry in self.files}

    def get(self, path: str) -> MappedFile | None:
        return self._by_path.get(path)

    def render(self, paths: Iterable[str] | None = None) -> str:
        """The map as text; with ``paths``, only those files' entries (in path order)."""
        wanted = None if paths is None else set(paths)
        return "\n".join(f.render() for f in self.files if wanted is None or f.path in wanted)


def _size(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    if size < 1_000_000:
        return f"{size / 1000:.1f} kB"
    return f"{size / 1_000_000:.1f} MB"


def read_text(root: Path, path: str, limit: int = MAX_PARSE_BYTES) -> str | None:
    """The text of a regular file under ``root`` (not a symlink, not reached through one),
    or None when it is missing, larger than ``limit``, binary or not UTF-8."""
    try:
        fd = os.open(root / path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> str:
    if isinstance(node, ast.ClassDef):
        bases = [ast.unparse(b) for b in node.bases]
        bases += [ast.unparse(k) for k in node.keywords]
        text = f"class {node.name}({', '.join(bases)})" if bases else f"class {node.name}"
    else:
        prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
        text = f"{prefix} {node.name}({ast.unparse(node.args)})"
        if node.returns is not None:
            text += f" -> {ast.unparse(node.returns)}"
    return text if len(text) <= _SIGNATURE_CHARS else text[: _SIGNATURE_CHARS - 1] + "…"


def _symbols(tree: ast.Module) -> list[Symbol]:
    found: list[Symbol] = []

    def visit(body: Sequence[ast.stmt], owner: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                name = f"{owner}.{node.name}" if owner else node.name
                found.append(
                    Symbol(kind="class", name=name, signature=_signature(node), line=node.lineno)
                )
                visit(node.body, name)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append(
                    Symbol(
                        kind="method" if owner else "function",
                        name=f"{owner}.{node.name}" if owner else node.name,
                        signature=_signature(node),
                        line=node.lineno,
                    )
                )

    visit(tree.body, "")
    return found


def _symbols_by_pattern(text: str) -> list[Symbol]:
    found = []
    owner = ""
    for number, line in enumerate(text.splitlines(), start=1):
        match = _DEF_LINE.match(line)
        if not match:
            continue
        indent, keyword, name, rest = match.groups()
        signature = f"{' '.join(keyword.split())} {name}{rest}"[:_SIGNATURE_CHARS]
        if keyword == "class" and not indent:
            owner = name
            found.append(Symbol(kind="class", name=name, signature=signature, line=number))
        elif keyword != "class" and not indent:
            owner = ""
            found.append(Symbol(kind="function", name=name, signature=signature, line=number))
        elif keyword != "class" and owner and len(indent) <= 4:
            found.append(
                Symbol(kind="method", name=f"{owner}.{name}", signature=signature, line=number)
            )
    return found


def map_files(root: Path, paths: Iterable[str]) -> RepoMap:
    """The map of ``paths`` (repository-relative) under ``root``."""
    files = []
    for path in sorted(set(paths)):
        try:
            info = os.lstat(root / path)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue  # symlinks and anything else are not mapped
        python = path.endswith((".py", ".pyi"))
        text = read_text(root, path)
        if text is None:
            if info.st_size > MAX_PARSE_BYTES and _looks_textual(root / path):
                files.append(MappedFile(path=path, size=info.st_size, kind="text", note="large"))
            continue  # binary (or unreadable): skipped
        if not python:
            files.append(MappedFile(path=path, size=info.st_size, kind="text"))
            continue
        try:
            symbols = _symbols(ast.parse(text))
            note = ""
        except (SyntaxError, ValueError) as exc:
            symbols = _symbols_by_pattern(text)
            line = getattr(exc, "lineno", None)
            note = f"does not parse (line {line})" if line else "does not parse"
        files.append(
            MappedFile(
                path=path, size=info.st_size, kind="python", symbols=tuple(symbols), note=note
            )
        )
    return RepoMap(files=tuple(files))


def _looks_textual(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(8192)
    except OSError:
        return False
    return b"\0" not in head


def map_working_copy(copy: WorkingCopy) -> RepoMap:
    """The map of a working copy as it is now (ignored files left out)."""
    return map_files(copy.path, working_files(copy))
