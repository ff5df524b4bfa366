"""The import guard: every import a change adds must resolve to something real and declared.

For each changed Python file, the imports the change adds are those of the new version
(parsed with :mod:`ast`) whose top-level name the old version did not import. Each must be:

- the standard library (``sys.stdlib_module_names``), or ``__future__``;
- the repository's own code: a relative import, a top-level package or module of the
  repository (flat layout, ``src/`` layout, namespace folders without ``__init__.py``), or
  a module beside the importing file (how pytest and scripts find their neighbours);
- a dependency the repository declared before the change: ``[project] dependencies`` and
  ``optional-dependencies``, ``[dependency-groups]``, Poetry's dependency tables,
  ``requirements*.txt`` (and ``requirements/*.txt``, following ``-r``), ``setup.cfg``'s
  ``install_requires`` / ``extras_require``, literal lists in ``setup.py``, ``Pipfile``.
  An import name is matched to distributions by the environment's installed metadata
  (``top_level.txt``, else ``RECORD``) when ``setup`` built one, by the short table
  :data:`~shipyard.repos._pynames.KNOWN_IMPORTS` (``yaml`` is PyYAML, ``PIL`` Pillow...),
  and otherwise by name.

Anything else is a new third-party dependency: a warning (``imports.new-dependency``) that
raises the change's risk, or, when the index cannot be asked, ``imports.unverified``. It is
an error when the name is likely made up: one or two letters away from a declared dependency
or a very popular distribution but not it (``imports.typosquat``; names of 4 letters or more,
2 letters only from 6 on), or unknown to the package index (``imports.unknown-package``).
Imports made by strings (``importlib.import_module``) are not seen.
"""

from __future__ import annotations

import ast
import configparser
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from shipyard.model import Finding
from shipyard.repos._changes import Change
from shipyard.repos._environment import Environment
from shipyard.repos._index import PackageIndex, normalize_name
from shipyard.repos._pynames import KNOWN_IMPORTS, POPULAR
from shipyard.repos._workcopy import (
    WorkingCopy,
    base_files,
    read_base_file,
    working_files,
)

__all__ = [
    "AddedImport",
    "ImportReport",
    "added_imports",
    "check_imports",
    "declared_dependencies",
    "distance",
    "guard_imports",
    "installed_imports",
    "own_modules",
    "source_roots",
]

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EGG = re.compile(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages"}
Reader = Callable[[str], str | None]


@dataclass(frozen=True, kw_only=True)
class AddedImport:
    """One import statement's module that a change adds."""

    module: str
    """The dotted module name as written (without the leading dots of a relative import)."""
    line: int
    """The 1-based line of the import statement."""
    level: int = 0
    """The number of leading dots (0: an absolute import)."""

    @property
    def top(self) -> str:
        return self.module.split(".")[0]


@dataclass(frozen=True, kw_only=True)
class ImportReport:
    """The guard's verdict on a change's new imports."""

    findings: tuple[Finding, ...] = ()
    """One per import that is not the standard library, the repository's or declared."""
    new_dependencies: tuple[str, ...] = ()
    """Distributions the change starts to use that the base did not declare."""
    refused: tuple[str, ...] = ()
    """Distributions refused as made up (typosquatted, or unknown to the index)."""
    checked: int = 0
    """How many added imports were checked."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Files that could not be parsed, and so were not checked."""

    @property
    def passed(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    @property
    def raises_risk(self) -> bool:
        """True when the change brings in a dependency (a reason for a closer look)."""
        return bool(self.new_dependencies)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "findings": [f.to_dict() for f in self.findings],
            "new_dependencies": list(self.new_dependencies),
            "refused": list(self.refused),
            "checked": self.checked,
            "notes": list(self.notes),
        }


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def _imports(tree: ast.Module) -> list[AddedImport]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [AddedImport(module=a.name, line=node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append(AddedImport(module=node.module or "", line=node.lineno, level=node.level))
    return sorted(found, key=lambda i: (i.line, i.module))


def added_imports(old: str | None, new: str) -> list[AddedImport] | None:
    """The imports in ``new`` whose top-level module ``old`` did not import (all of them for
    a new file); relative imports count by their dots and name. None when ``new`` does not
    parse (the compile check reports that)."""
    parsed = _parse(new)
    if parsed is None:
        return None
    before = _parse(old) if old is not None else None
    known = {(i.level, i.top) for i in _imports(before)} if before is not None else set()
    added, seen = [], set()
    for item in _imports(parsed):
        key = (item.level, item.top)
        if key not in known and key not in seen:
            seen.add(key)
            added.append(item)
    return added


def source_roots(paths: Iterable[str]) -> list[str]:
    """The folders the repository's own top-level modules live in: ``src`` when it holds
    Python code, and the top folder ('')."""
    has_src = any(p.startswith("src/") and p.endswith((".py", ".pyi")) for p in paths)
    return ["src", ""] if has_src else [""]


def own_modules(paths: Iterable[str]) -> set[str]:
    """Top-level module names the repository's files make importable (flat and ``src``
    layouts; folders with Python files count with or without ``__init__.py``)."""
    names = set()
    for path in paths:
        if not path.endswith((".py", ".pyi")):
            continue
        parts = PurePosixPath(path).parts
        if any(part.startswith(".") or part in _SKIP_DIRS for part in parts):
            continue
        if parts[0] == "src" and len(parts) > 1:
            parts = parts[1:]
        name = parts[0].rsplit(".", 1)[0] if len(parts) == 1 else parts[0]
        if _IDENTIFIER.match(name):
            names.add(name)
    return names


def _requirement_names(lines: Iterable[str]) -> set[str]:
    names = set()
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        egg = _EGG.search(line)
        if egg:
            names.add(normalize_name(egg.group(1)))
            continue
        if line.startswith("-") or "://" in line.split("@", 1)[0]:
            continue
        match = _REQUIREMENT.match(line)
        if match:
            names.add(normalize_name(match.group(1)))
    return names


def _from_pyproject(text: str) -> set[str]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return set()
    strings: list[str] = []
    project = data.get("project") or {}
    strings += [s for s in project.get("dependencies") or [] if isinstance(s, str)]
    for group in (project.get("optional-dependencies") or {}).values():
        strings += [s for s in group or [] if isinstance(s, str)]
    for group in (data.get("dependency-groups") or {}).values():
        strings += [s for s in group or [] if isinstance(s, str)]
    strings += [
        s for s in (data.get("build-system") or {}).get("requires") or [] if isinstance(s, str)
    ]
    names = _requirement_names(strings)
    poetry = (data.get("tool") or {}).get("poetry") or {}
    tables = [poetry.get("dependencies") or {}, poetry.get("dev-dependencies") or {}]
    tables += [(g or {}).get("dependencies") or {} for g in (poetry.get("group") or {}).values()]
    for table in tables:
        names |= {normalize_name(k) for k in table if k.lower() != "python"}
    return names


def _from_setup_cfg(text: str) -> set[str]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return set()
    lines: list[str] = []
    for key in ("install_requires", "tests_require", "setup_requires"):
        lines += parser.get("options", key, fallback="").splitlines()
    if parser.has_section("options.extras_require"):
        for _, value in parser.items("options.extras_require"):
            lines += value.splitlines()
    return _requirement_names(lines)


def _from_setup_py(text: str) -> set[str]:
    parsed = _parse(text)
    if parsed is None:
        return set()
    strings: list[str] = []
    for node in ast.walk(parsed):
        if not isinstance(node, ast.keyword) or node.arg not in (
            "install_requires",
            "extras_require",
            "tests_require",
            "setup_requires",
        ):
            continue
        try:
            value = ast.literal_eval(node.value)
        except (ValueError, SyntaxError, TypeError):
            continue
        groups = value.values() if isinstance(value, dict) else [value]
        for group in groups:
            items = [group] if isinstance(group, str) else group
            strings += [s for s in items if isinstance(s, str)]
    return _requirement_names(strings)


def _from_requirements(name: str, read: Reader, depth: int = 0) -> set[str]:
    text = read(name)
    if text is None or depth > 5:
        return set()
    names = _requirement_names(text.splitlines())
    folder = PurePosixPath(name).parent
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("-r", "--requirement"):
            included = str(folder / parts[1])
            if not included.startswith(("/", "..")):
                names |= _from_requirements(included, read, depth + 1)
    return names


def declared_dependencies(paths: Iterable[str], read: Reader) -> set[str]:
    """The normalized names of every distribution the repository declares; ``paths`` lists
    its files and ``read`` gives one's text (None when it has none)."""
    names: set[str] = set()
    for path in paths:
        if path == "pyproject.toml":
            names |= _from_pyproject(read(path) or "")
        elif path == "setup.cfg":
            names |= _from_setup_cfg(read(path) or "")
        elif path == "setup.py":
            names |= _from_setup_py(read(path) or "")
        elif path == "Pipfile":
            try:
                data = tomllib.loads(read(path) or "")
            except tomllib.TOMLDecodeError:
                continue
            for table in ("packages", "dev-packages"):
                names |= {normalize_name(k) for k in data.get(table) or {}}
        elif re.fullmatch(r"requirements[^/]*\.txt", path) or re.fullmatch(
            r"requirements/[^/]+\.txt", path
        ):
            names |= _from_requirements(path, read)
    return names


def installed_imports(environment: Environment | None) -> dict[str, set[str]]:
    """Import name -> normalized distributions, from an environment's installed metadata."""
    found: dict[str, set[str]] = {}
    if environment is None:
        return found
    for site in environment.site_packages():
        for info in site.glob("*.dist-info"):
            dist = _dist_name(info)
            for name in _top_levels(info):
                found.setdefault(name, set()).add(dist)
    return found


def _dist_name(info: Path) -> str:
    try:
        with (info / "METADATA").open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("Name:"):
                    return normalize_name(line[5:].strip())
                if not line.strip():
                    break
    except OSError:
        pass
    return normalize_name(info.name.removesuffix(".dist-info").split("-")[0])


def _top_levels(info: Path) -> set[str]:
    try:
        text = (info / "top_level.txt").read_text(encoding="utf-8", errors="replace")
        return {line.strip() for line in text.splitlines() if _IDENTIFIER.match(line.strip())}
    except OSError:
        pass
    names: set[str] = set()
    try:
        record = (info / "RECORD").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return names
    for line in record.splitlines():
        first = line.split(",", 1)[0].split("/", 1)
        head = first[0]
        if len(first) == 1:
            if head.endswith(".py"):
                head = head[:-3]
            elif ".cpython-" in head or head.endswith((".so", ".pyd")):
                head = head.split(".", 1)[0]
            else:
                continue
        if _IDENTIFIER.match(head) and head != "__pycache__":
            names.add(head)
    return names


def distance(a: str, b: str, limit: int = 3) -> int:
    """The Damerau-Levenshtein distance (optimal string alignment) of ``a`` and ``b``; any
    value above ``limit`` is returned as ``limit + 1``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return min(previous[-1], limit + 1)


@dataclass(frozen=True, kw_only=True)
class _Known:
    """What the guard compares an import with."""

    own: set[str]
    declared_before: set[str]
    declared_after: set[str]
    installed: dict[str, set[str]]

    def distributions(self, top: str) -> set[str]:
        names = {normalize_name(top)} | self.installed.get(top, set())
        return names | set(KNOWN_IMPORTS.get(top, ()))

    def near_miss(self, top: str) -> tuple[str, int] | None:
        """The declared or popular name ``top`` is one or two letters away from, if any."""
        name = normalize_name(top)
        real = set(POPULAR) | {normalize_name(k) for k in KNOWN_IMPORTS} | self.declared_before
        if len(name) < 4 or name in real or top in KNOWN_IMPORTS or top in self.installed:
            return None
        limit = 2 if len(name) >= 6 else 1
        best: tuple[str, int] | None = None
        for other in sorted(real):
            gap = min(
                distance(name, other, limit),
                distance(name.replace("-", ""), other.replace("-", ""), limit),
            )
            if 1 <= gap <= limit and (best is None or gap < best[1]):
                best = (other, gap)
        return best


def check_imports(
    files: Mapping[str, tuple[str | None, str]],
    *,
    before: tuple[list[str], Reader],
    after: tuple[list[str], Reader],
    index: PackageIndex,
    environment: Environment | None = None,
) -> ImportReport:
    """Guard the imports that ``files`` (path -> (old text or None, new text)) add. ``before``
    and ``after`` are the repository's file list and a reader, at the base and with the
    change; declared dependencies are read from both."""
    known = _Known(
        own=own_modules(after[0]),
        declared_before=declared_dependencies(*before),
        declared_after=declared_dependencies(*after),
        installed=installed_imports(environment),
    )
    present = set(after[0])
    findings: list[Finding] = []
    new: list[str] = []
    refused: list[str] = []
    notes: list[str] = []
    checked = 0
    for path, (old, text) in sorted(files.items()):
        if not path.endswith(".py"):
            continue
        added = added_imports(old, text)
        if added is None:
            notes.append(f"{path} does not parse; its imports were not checked")
            continue
        folder = PurePosixPath(path).parent
        for item in added:
            checked += 1
            if item.level or _resolved(item.top, folder, known, present):
                continue
            finding, dist, bad = _judge(item, path, known, index)
            findings.append(finding)
            if bad:
                refused.append(dist)
            elif dist not in new:
                new.append(dist)
    return ImportReport(
        findings=tuple(findings),
        new_dependencies=tuple(new),
        refused=tuple(dict.fromkeys(refused)),
        checked=checked,
        notes=tuple(notes),
    )


def _resolved(top: str, folder: PurePosixPath, known: _Known, present: set[str]) -> bool:
    if top == "__future__" or top in sys.stdlib_module_names or top in known.own:
        return True
    beside = folder / top
    if f"{beside}.py" in present or any(p.startswith(f"{beside}/") for p in present):
        return True
    return bool(known.distributions(top) & known.declared_before)


def _judge(
    item: AddedImport, path: str, known: _Known, index: PackageIndex
) -> tuple[Finding, str, bool]:
    """The finding for an import of a third-party name the base did not declare: the
    finding, the distribution it stands for, and whether it is refused as made up."""
    top = item.top
    declared = known.distributions(top) & known.declared_after
    candidates = declared or set(KNOWN_IMPORTS.get(top, (normalize_name(top),)))
    dist = sorted(candidates)[0]
    head = f"import {item.module}"

    def finding(rule: str, message: str, severity: str = "error") -> Finding:
        return Finding(rule=rule, message=message, file=path, line=item.line, severity=severity)

    miss = known.near_miss(top)
    if miss is not None:
        other, gap = miss
        letters = "letter" if gap == 1 else "letters"
        message = (
            f"{head}: {dist!r} is {gap} {letters} away from {other!r} but is not it: a "
            f"hallucinated or typosquatted package; use {other!r} if that is what was meant"
        )
        return finding("imports.typosquat", message), dist, True
    answer = index.lookup(dist)
    if answer == "unknown":
        message = (
            f"{head}: the package index {index.url} has no package {dist!r}: a hallucinated "
            "package (use a real one, or write the code)"
        )
        return finding("imports.unknown-package", message), dist, True
    how = (
        "the change declares it"
        if declared
        else "the repository does not declare it (pyproject.toml, requirements*.txt, setup.cfg)"
    )
    if answer == "unreachable":
        message = (
            f"{head}: a new dependency {dist!r} ({how}); the package index {index.url} could "
            "not be reached to check that it exists"
        )
        return finding("imports.unverified", message, "warning"), dist, False
    message = f"{head}: a new dependency {dist!r} ({how})"
    return finding("imports.new-dependency", message, "warning"), dist, False


def guard_imports(
    copy: WorkingCopy,
    change: Change,
    *,
    index: PackageIndex,
    environment: Environment | None = None,
) -> ImportReport:
    """:func:`check_imports` on a working copy's change: old versions from the base
    commit, new ones from the working tree."""
    files: dict[str, tuple[str | None, str]] = {}
    for item in change.files:
        if item.status == "deleted" or not item.path.endswith(".py") or item.mode == "120000":
            continue
        old = read_base_file(copy, item.path)
        try:
            new = (copy.path / item.path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        files[item.path] = (old.decode("utf-8", "replace") if old is not None else None, new)
    base_paths = base_files(copy)

    def read_base(path: str) -> str | None:
        data = read_base_file(copy, path)
        return data.decode("utf-8", "replace") if data is not None else None

    def read_now(path: str) -> str | None:
        target = copy.path / path
        if target.is_symlink() or not target.is_file():
            return None
        try:
            return target.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    return check_imports(
        files,
        before=(base_paths, read_base),
        after=(working_files(copy), read_now),
        index=index,
        environment=environment,
    )
