"""The package index: which one a repository uses, and whether it knows a name.

``[repos.NAME] index_url`` names it; left empty, it is the index pip is configured with
(``PIP_INDEX_URL``, else ``index-url`` in pip's configuration files), else PyPI's simple
index. :class:`PackageIndex` asks it about a project the PEP 503 way (``GET INDEX/NAME/``:
200 means it exists, 404 that it does not) and remembers the answers.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal

__all__ = ["DEFAULT_INDEX", "PackageIndex", "normalize_name", "resolve_index_url"]

DEFAULT_INDEX = "https://pypi.org/simple"
_NORMALIZE = re.compile(r"[-_.]+")
Answer = Literal["known", "unknown", "unreachable"]


def normalize_name(name: str) -> str:
    """A distribution's name as PEP 503 compares it (``Foo_Bar`` -> ``foo-bar``)."""
    return _NORMALIZE.sub("-", name).lower()


def _pip_config_files() -> list[Path]:
    explicit = os.environ.get("PIP_CONFIG_FILE")
    if explicit:
        return [Path(explicit)]
    home = Path.home()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    dirs = os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
    files = [Path(d) / "pip" / "pip.conf" for d in dirs if d]
    files += [Path("/etc/pip.conf"), home / ".pip" / "pip.conf", xdg / "pip" / "pip.conf"]
    files.append(Path(sys.prefix) / "pip.conf")
    return files


def resolve_index_url(configured: str = "") -> str:
    """``configured``, else pip's configured index, else PyPI's (without a trailing /)."""
    if configured:
        return configured.rstrip("/")
    from_env = os.environ.get("PIP_INDEX_URL", "").strip()
    if from_env:
        return from_env.rstrip("/")
    found = ""
    for path in _pip_config_files():  # later files override earlier ones, as in pip
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in ("global", "install"):
            value = parser.get(section, "index-url", fallback="").strip()
            if value:
                found = value
    return (found or DEFAULT_INDEX).rstrip("/")


class PackageIndex:
    """Asks a PEP 503 index whether it knows a project; answers are cached in memory and,
    with ``cache_file``, on disk (a known name for 30 days, an unknown one for a day; an
    unreachable index is never cached)."""

    KNOWN_TTL = 30 * 86400.0
    UNKNOWN_TTL = 86400.0

    def __init__(self, url: str, *, cache_file: Path | None = None, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.cache_file = cache_file
        self.timeout = timeout
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[Answer, float]] = {}
        if cache_file is not None:
            self._load()

    def lookup(self, name: str) -> Answer:
        """``known``, ``unknown`` (the index answered 404) or ``unreachable``."""
        key = normalize_name(name)
        now = time.time()
        with self._lock:
            cached = self._answers.get(key)
        if cached is not None:
            answer, at = cached
            ttl = self.KNOWN_TTL if answer == "known" else self.UNKNOWN_TTL
            if now - at < ttl:
                return answer
        answer = self._ask(key)
        if answer != "unreachable":
            with self._lock:
                self._answers[key] = (answer, now)
                self._save()
        return answer

    def _ask(self, name: str) -> Answer:
        request = urllib.request.Request(
            f"{self.url}/{name}/",
            headers={
                "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
                "User-Agent": "shipyard-import-guard",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(1024)
                return "known" if 200 <= response.status < 300 else "unreachable"
        except urllib.error.HTTPError as exc:
            return "unknown" if exc.code in (404, 410) else "unreachable"
        except (urllib.error.URLError, OSError, ValueError):
            return "unreachable"

    def _load(self) -> None:
        if self.cache_file is None:
            return
        try:
            data = json.loads(self.cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if not isinstance(data, dict) or data.get("url") != self.url:
            return
        for name, entry in (data.get("answers") or {}).items():
            if isinstance(entry, list) and len(entry) == 2 and entry[0] in ("known", "unknown"):
                self._answers[str(name)] = (entry[0], float(entry[1]))

    def _save(self) -> None:
        if self.cache_file is None:
            return
        data = {"url": self.url, "answers": {k: list(v) for k, v in self._answers.items()}}
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        temp = self.cache_file.with_name(f".{self.cache_file.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        os.replace(temp, self.cache_file)
