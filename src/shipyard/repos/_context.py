"""The context for a goal: what a model is sent about a repository, under a token budget.

Files are ranked by the goal with BM25 over three fields of each file — its path (weighted
3), its symbols (2) and its content (1) — after splitting identifiers (``parsePrice`` and
``parse_price`` both give ``parse`` and ``price``, and the whole identifier counts too).
A file the goal names (``cart.py``, ``shop/cart.py``) comes first; files that earlier
changes to the repository touched (the caller's memory, passed in) get a boost. The map
takes at most a quarter of the budget (the ranked files' entries first); then the ranked
files are added whole while they fit, and the first one that does not fit whole is trimmed
to the lines around the goal's words. Tokens are estimated at 4 characters each, as memory's
recall does.

:class:`Context` is exactly the text to send, with its digest and what it holds, so the
attempt can record it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.repos._map import MappedFile, RepoMap, read_text

__all__ = ["CHARS_PER_TOKEN", "Context", "ContextFile", "build_context", "estimate_tokens", "terms"]

CHARS_PER_TOKEN = 4
"""The token estimate: 4 characters a token (memory's recall uses the same)."""

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_PATHLIKE = re.compile(r"[\w./-]+\.\w+|[\w-]+(?:/[\w.-]+)+")
_STOP = frozenset(
    (
        "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from",
        "has", "have", "how", "in", "into", "is", "it", "its", "make", "makes", "of", "on",
        "or", "so", "that", "the", "this", "to", "use", "when", "which", "with", "without",
        "should", "would", "add", "fix", "change", "update", "new", "not",
    )
)  # fmt: skip
_FIELDS = (("path", 3.0), ("symbols", 2.0), ("content", 1.0))
_K1, _B = 1.2, 0.75
_LANGUAGES = {".py": "python", ".pyi": "python", ".toml": "toml", ".md": "markdown",
              ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".js": "javascript",
              ".ts": "typescript", ".html": "html", ".css": "css", ".sh": "sh",
              ".cfg": "ini", ".ini": "ini", ".txt": "text"}  # fmt: skip


def estimate_tokens(text: str) -> int:
    """Tokens ``text`` is estimated to take."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def terms(text: str) -> list[str]:
    """The search terms of ``text``: identifiers split at ``_`` and case changes, lower
    case, without common words; an identifier made of parts counts whole as well."""
    out: list[str] = []
    for ident in _IDENT.findall(text):
        parts = [p.lower() for chunk in ident.split("_") for p in _CAMEL.findall(chunk)]
        whole = ident.lower().strip("_")
        if len(parts) > 1 and whole not in _STOP:
            out.append(whole)
        out += [p for p in parts if len(p) > 1 and p not in _STOP]
    return out


@dataclass(frozen=True, kw_only=True)
class ContextFile:
    """A file the context holds."""

    path: str
    """Repository-relative path."""
    score: float
    """Its rank score for the goal (higher is more relevant)."""
    trimmed: bool = False
    """True when only parts of it are included."""
    lines: tuple[tuple[int, int], ...] = ()
    """The 1-based line ranges included (the whole file for an untrimmed one)."""
    tokens: int = 0
    """Its estimated share of the context."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "score": round(self.score, 4),
            "trimmed": self.trimmed,
            "lines": [list(r) for r in self.lines],
            "tokens": self.tokens,
        }


@dataclass(frozen=True, kw_only=True)
class Context:
    """Exactly what is sent about the repository, and what it is made of."""

    text: str
    """The map excerpt and the files, as sent."""
    digest: str
    """``sha256:`` of the text."""
    tokens: int
    """Its estimated size (never above ``max_tokens``)."""
    max_tokens: int
    """The budget it was packed under."""
    files: tuple[ContextFile, ...] = ()
    """The files included, most relevant first."""
    map_entries: int = 0
    """Files the map excerpt lists."""
    map_total: int = 0
    """Files the whole map has."""

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "tokens": self.tokens,
            "max_tokens": self.max_tokens,
            "files": [f.to_dict() for f in self.files],
            "map_entries": self.map_entries,
            "map_total": self.map_total,
            "text": self.text,
        }


@dataclass(frozen=True)
class _Doc:
    entry: MappedFile
    fields: dict[str, Counter[str]]
    text: str | None


def _documents(repo_map: RepoMap, root: Path) -> list[_Doc]:
    docs = []
    for entry in repo_map.files:
        text = read_text(root, entry.path)
        symbols = " ".join(s.name + " " + s.signature for s in entry.symbols)
        docs.append(
            _Doc(
                entry=entry,
                fields={
                    "path": Counter(terms(entry.path.replace("/", " ").replace(".", " "))),
                    # Names count whole even when they are common words (``add``, ``update``).
                    "symbols": Counter(terms(symbols))
                    + Counter(s.name.lower() for s in entry.symbols if s.name.lower() in _STOP),
                    "content": Counter(terms(text or "")),
                },
                text=text,
            )
        )
    return docs


def _bm25(docs: Sequence[_Doc], query: Counter[str]) -> list[float]:
    lengths = [sum(w * sum(d.fields[f].values()) for f, w in _FIELDS) for d in docs]
    average = (sum(lengths) / len(lengths)) or 1.0
    scores = []
    frequency = Counter(t for d in docs for t in {t for f, _ in _FIELDS for t in d.fields[f]})
    n = len(docs)
    for doc, length in zip(docs, lengths, strict=True):
        score = 0.0
        for term, weight in query.items():
            tf = sum(w * doc.fields[f][term] for f, w in _FIELDS)
            if not tf:
                continue
            idf = math.log(1 + (n - frequency[term] + 0.5) / (frequency[term] + 0.5))
            score += weight * idf * tf * (_K1 + 1) / (tf + _K1 * (1 - _B + _B * length / average))
        scores.append(score)
    return scores


def _mentioned(goal: str, path: str) -> bool:
    for token in _PATHLIKE.findall(goal):
        token = token.strip("./")
        if token and (path == token or path.endswith("/" + token)):
            return True
    return False


def _rank(goal: str, docs: Sequence[_Doc], touched: Iterable[str]) -> list[tuple[float, _Doc]]:
    query = Counter(terms(goal))
    named = {t for d in docs for t in d.fields["symbols"] if t in _STOP}
    for word in _IDENT.findall(goal):  # a common word that names a symbol is a term here
        if word.lower() in named:
            query[word.lower()] += 1
    for ident in _IDENT.findall(goal):  # identifiers written as such weigh more
        if "_" in ident or (ident[:1].islower() and any(c.isupper() for c in ident)):
            query[ident.lower()] += 1
    scores = _bm25(docs, query) if docs else []
    top = max(scores, default=0.0) or 1.0
    recent = set(touched)
    ranked = []
    for doc, score in zip(docs, scores, strict=True):
        if doc.entry.path in recent:
            score += 0.5 * top
        if _mentioned(goal, doc.entry.path):
            score += 2 * top
        if score > 0:
            ranked.append((score, doc))
    ranked.sort(key=lambda pair: (-pair[0], pair[1].entry.path))
    return ranked


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=0)
    return "`" * max(3, longest + 1)


def _block(path: str, body: str, note: str = "") -> str:
    fence = _fence(body)
    language = _LANGUAGES.get(Path(path).suffix, "")
    body = body if body.endswith("\n") or not body else body + "\n"
    return f"## {path}{note}\n{fence}{language}\n{body}{fence}\n\n"


def _trim(
    text: str, query: set[str], budget_chars: int, path: str
) -> tuple[str, list[tuple[int, int]]] | None:
    """The lines around the goal's words that fit ``budget_chars`` once framed."""
    lines = text.splitlines()
    hits = [(sum(t in query for t in terms(line)), i) for i, line in enumerate(lines)]
    hits = sorted((h for h in hits if h[0] > 0), key=lambda h: (-h[0], h[1]))
    if not hits:
        hits = [(0, 0)]
    chosen: set[int] = set()
    best: tuple[str, list[tuple[int, int]]] | None = None
    for _, center in hits:
        trial = chosen | set(range(max(0, center - 4), min(len(lines), center + 6)))
        rendered, ranges = _render_trimmed(lines, trial, path)
        if len(rendered) > budget_chars:
            break
        chosen, best = trial, (rendered, ranges)
    return best


def _render_trimmed(
    lines: list[str], chosen: set[int], path: str
) -> tuple[str, list[tuple[int, int]]]:
    ranges: list[tuple[int, int]] = []
    for index in sorted(chosen):
        if ranges and index == ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], index + 1)
        else:
            ranges.append((index, index + 1))
    parts = []
    previous = 0
    for start, end in ranges:
        if start > previous:
            parts.append(f"... (lines {previous + 1}-{start} omitted)")
        parts += lines[start:end]
        previous = end
    if previous < len(lines):
        parts.append(f"... (lines {previous + 1}-{len(lines)} omitted)")
    shown = [(s + 1, e) for s, e in ranges]
    note = " (trimmed: lines " + ", ".join(f"{s}-{e}" for s, e in shown)
    note += f" of {len(lines)})"
    return _block(path, "\n".join(parts), note), shown


def build_context(
    goal: str,
    repo_map: RepoMap,
    root: Path,
    *,
    max_tokens: int,
    touched: Sequence[str] = (),
) -> Context:
    """The context for ``goal`` about the repository mapped by ``repo_map`` (its files read
    from ``root``), packed under ``max_tokens``; ``touched`` lists paths earlier changes to
    this repository touched, most recent first."""
    budget = max_tokens * CHARS_PER_TOKEN
    docs = _documents(repo_map, root)
    ranked = _rank(goal, docs, touched)
    map_text, entries = _map_excerpt(repo_map, [d.entry.path for _, d in ranked], budget // 4)
    text = map_text
    query = set(terms(goal))
    included: list[ContextFile] = []
    files_header = "# Files\n\n"
    for score, doc in ranked:
        if doc.text is None:
            continue
        header = files_header if not included else ""
        left = budget - len(text) - len(header)
        block = _block(doc.entry.path, doc.text)
        count = len(doc.text.splitlines())
        if len(block) <= left:
            text += header + block
            included.append(
                ContextFile(
                    path=doc.entry.path,
                    score=score,
                    lines=((1, count),) if count else (),
                    tokens=estimate_tokens(block),
                )
            )
            continue
        if any(f.trimmed for f in included) or left < 800:
            continue  # one trimmed file at most; smaller whole files may still fit
        trimmed = _trim(doc.text, query, left, doc.entry.path)
        if trimmed is None:
            continue
        block, ranges = trimmed
        text += header + block
        included.append(
            ContextFile(
                path=doc.entry.path,
                score=score,
                trimmed=True,
                lines=tuple(ranges),
                tokens=estimate_tokens(block),
            )
        )
    return Context(
        text=text,
        digest="sha256:" + hashlib.sha256(text.encode()).hexdigest(),
        tokens=estimate_tokens(text),
        max_tokens=max_tokens,
        files=tuple(included),
        map_entries=entries,
        map_total=len(repo_map.files),
    )


def _map_excerpt(repo_map: RepoMap, ranked: Sequence[str], budget: int) -> tuple[str, int]:
    """The map's entries that fit ``budget`` characters: the ranked files' first, then the
    others in path order; rendered in path order, with a line counting what is left out."""
    header = "# Repository map\n\n"
    order = list(dict.fromkeys([*ranked, *(f.path for f in repo_map.files)]))
    total = len(order)
    chosen: set[str] = set()
    size = len(header)
    for path in order:
        entry = repo_map.get(path)
        if entry is None:
            continue
        cost = len(entry.render()) + 1
        if size + cost + 40 > budget:
            continue
        chosen.add(path)
        size += cost
    if not chosen:
        return "", 0
    body = repo_map.render(chosen)
    missing = total - len(chosen)
    tail = f"\n({missing} more files not shown)" if missing else ""
    return f"{header}{body}{tail}\n\n", len(chosen)
