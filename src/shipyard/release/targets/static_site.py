"""The ``static-site`` target: a folder of pages with blue/green switching.

Each publish builds a complete new version of the site beside the live one (unchanged files
are hard links, so a version costs only what changed), then switches the ``current`` link
atomically. Earlier versions stay for rollback. A publish is keyed: a key already live is
never published again, which is what makes a retried release step harmless.

A canary deploys the release's files as a *candidate* beside the site, under
``candidates/KEY/``, and a route in ``routes.json`` (see :mod:`shipyard.release._routes`)
sends a share of the path's visitors to it; promotion publishes the files as above, so
several pages can bake at once and each promotes onto whatever the site is by then.

Layout::

    versions/000007/...          a complete site; .shipyard-version.json says what is in it
    current -> versions/000007   what is served
    candidates/KEY/...           a release's files while it bakes
    routes.json                  which candidate takes which share of which path
"""

from __future__ import annotations

import html
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from shipyard._crash import crashpoint
from shipyard.errors import InputError, StateError
from shipyard.release._routes import find_route, locked, read_routes, set_weight, write_routes
from shipyard.release._target import Deployed, Promoted

__all__ = ["PublishResult", "RollbackResult", "StaticSite"]

MANIFEST = ".shipyard-version.json"


@dataclass(frozen=True, kw_only=True)
class PublishResult:
    version: str
    """The site version now live."""
    url_path: str
    """Where the published files are served, e.g. ``/products/sku-1/``."""
    already_live: bool
    """True when this key was live before the call (nothing was written)."""


@dataclass(frozen=True, kw_only=True)
class RollbackResult:
    from_version: str
    to_version: str
    removed_keys: tuple[str, ...]
    """Release keys live before and not after: the releases that were rolled back."""


def _clean_path(path: str) -> PurePosixPath:
    clean = PurePosixPath(path.strip("/"))
    if path.startswith("/") and not path.strip("/"):
        return PurePosixPath(".")
    if clean.is_absolute() or ".." in clean.parts:
        raise InputError(f"release path {path!r} leaves the site", hint="use a relative path")
    return clean


def route_prefix(folder: PurePosixPath) -> str:
    return "/" + (f"{folder}/" if str(folder) != "." else "")


class StaticSite:
    kind = "static-site"
    served = True

    def __init__(self, name: str, root: Path, *, keep_versions: int = 20) -> None:
        self.name, self.root, self.keep_versions = name, root, keep_versions

    @property
    def _current(self) -> Path:
        return self.root / "current"

    def live_dir(self) -> Path | None:
        """The folder being served now, or None before the first publish."""
        return self._current.resolve() if self._current.exists() else None

    def live_version(self) -> str | None:
        live = self.live_dir()
        return live.name if live else None

    def manifest(self, version: str | None = None) -> dict[str, Any]:
        folder = self.root / "versions" / version if version else self.live_dir()
        if folder is None:
            return {"version": None, "parent": None, "releases": {}}
        return dict(json.loads((folder / MANIFEST).read_text()))

    def _locked(self) -> Any:
        return locked(self.root)

    def publish(
        self, *, key: str, path: str, files: Mapping[str, bytes], title: str = ""
    ) -> PublishResult:
        """Make ``files`` live under ``path``; a no-op when ``key`` is already live."""
        folder = _clean_path(path)
        with self._locked():
            live = self.manifest()
            url_path = "/" + (f"{folder}/" if str(folder) != "." else "")
            if key in live["releases"]:
                return PublishResult(version=live["version"], url_path=url_path, already_live=True)
            self._drop_incomplete()
            version = self._next_version()
            target = self.root / "versions" / version
            previous = self.live_dir()
            releases = {k: v for k, v in live["releases"].items() if v["path"] != str(folder)}
            releases[key] = {"path": str(folder), "files": sorted(files), "title": title}
            self._build(target, previous, folder, files)
            self._write_index(target, releases)
            manifest = {"version": version, "parent": live["version"], "releases": releases}
            (target / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            self._switch(version)
            crashpoint("release.after_switch")
            self._prune()
            return PublishResult(version=version, url_path=url_path, already_live=False)

    def rollback(self) -> RollbackResult:
        """Switch back to the version that was live before the current one."""
        with self._locked():
            live = self.manifest()
            parent = live.get("parent")
            if not live["version"] or not parent:
                raise StateError(
                    f"target {self.name!r} has no earlier version to roll back to",
                    hint="a rollback needs at least two published versions",
                )
            if not (self.root / "versions" / parent / MANIFEST).is_file():
                raise StateError(
                    f"target {self.name!r}: version {parent} was pruned",
                    hint="raise keep_versions for the target to roll back further",
                )
            self._switch(parent)
            before = self.manifest(parent)["releases"]
            removed = tuple(k for k in live["releases"] if k not in before)
            return RollbackResult(
                from_version=live["version"], to_version=parent, removed_keys=removed
            )

    def withdraw(self, key: str) -> str | None:
        """Take ``key``'s release off the site; the version live after, None if it was not."""
        result = self.withdraw_release(key)
        return result.version if result else None

    def withdraw_release(self, key: str) -> PublishResult | None:
        """Take ``key``'s release off the site (a compensation), restoring what it replaced.

        A new version is built from the live one without the release's folder; if the
        release had replaced another at the same path, that one's files come back from the
        version before it. None when ``key`` is not live (already withdrawn, or rolled back).
        """
        with self._locked():
            live = self.manifest()
            release = live["releases"].get(key)
            if release is None:
                return None
            folder = _clean_path(release["path"])
            # The version just before the one that introduced the key: what the path held.
            before, version = None, live["version"]
            while version:
                manifest = self.manifest(version) if self._has(version) else None
                if manifest is None or key not in manifest["releases"]:
                    before = manifest
                    break
                version = manifest.get("parent")
            releases = {k: v for k, v in live["releases"].items() if k != key}
            restored: dict[str, bytes] = {}
            if before is not None:
                for old_key, old in before["releases"].items():
                    if old["path"] == release["path"] and old_key not in releases:
                        source = self.root / "versions" / before["version"] / folder
                        restored = {
                            str(p.relative_to(source)): p.read_bytes()
                            for p in source.rglob("*")
                            if p.is_file()
                        }
                        releases[old_key] = old
            self._drop_incomplete()
            new_version = self._next_version()
            target = self.root / "versions" / new_version
            self._build(target, self.live_dir(), folder, restored)
            if not restored and str(folder) != ".":
                shutil.rmtree(target / folder, ignore_errors=True)
            self._write_index(target, releases)
            manifest = {"version": new_version, "parent": live["version"], "releases": releases}
            (target / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            self._switch(new_version)
            self._prune()
            url_path = "/" + (f"{folder}/" if str(folder) != "." else "")
            return PublishResult(version=new_version, url_path=url_path, already_live=False)

    # -- canary ---------------------------------------------------------------------------

    def deploy(
        self,
        *,
        key: str,
        path: str,
        files: Mapping[str, bytes],
        title: str = "",
        artifact: str = "",
    ) -> Deployed:
        """Stage ``files`` as a candidate for ``path``, taking no traffic yet (a release is
        named by its key; ``artifact`` is not recorded)."""
        folder = _clean_path(path)
        prefix = route_prefix(folder)
        with self._locked():
            if key in self.manifest()["releases"]:
                return Deployed(key=key, url_path=prefix, version=key, already=True)
            routes = read_routes(self.root)
            route = routes.get(prefix)
            if route is not None and route["candidate"] != key:
                raise StateError(
                    f"target {self.name!r}: {prefix} is busy with release {route['candidate']}",
                    hint="one candidate per path at a time; this one waits for it to finish",
                    details={"busy_with": route["candidate"]},
                )
            if route is not None:
                return Deployed(key=key, url_path=prefix, version=key, already=True)
            staging = self.root / "candidates" / f".{key}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            for name, data in files.items():
                out = staging / _clean_path(name)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
            staging.mkdir(parents=True, exist_ok=True)
            final = self.root / "candidates" / key
            shutil.rmtree(final, ignore_errors=True)
            os.replace(staging, final)
            routes[prefix] = {
                "path": str(folder),
                "candidate": key,
                "weight": 0.0,
                "title": title,
                "dir": f"candidates/{key}",
            }
            write_routes(self.root, routes)
            return Deployed(key=key, url_path=prefix, version=key)

    def shift(self, key: str, weight: float) -> None:
        set_weight(self.root, self.name, key, weight)

    def promote(self, key: str) -> Promoted:
        """Publish the candidate's files as the live version of its path; drop its route."""
        with self._locked():
            routes = read_routes(self.root)
            prefix = find_route(routes, key)
            live = self.manifest()
        if prefix is None:
            if key in live["releases"]:
                url = route_prefix(_clean_path(live["releases"][key]["path"]))
                return Promoted(key=key, url_path=url, version=live["version"], already=True)
            raise StateError(
                f"target {self.name!r}: release {key} is neither a candidate nor live",
                hint="it was aborted; deploy it again to release it",
            )
        route = routes[prefix]
        source = self.root / route["dir"]
        files = {
            str(p.relative_to(source)): p.read_bytes() for p in source.rglob("*") if p.is_file()
        }
        result = self.publish(key=key, path=route["path"], files=files, title=route["title"])
        self.abort(key)  # the route and the staged files are no longer needed
        return Promoted(
            key=key, url_path=result.url_path, version=result.version, already=result.already_live
        )

    def abort(self, key: str) -> bool:
        """Send the path's traffic back to the live version and drop the candidate."""
        with self._locked():
            routes = read_routes(self.root)
            prefix = find_route(routes, key)
            if prefix is not None:
                del routes[prefix]
                write_routes(self.root, routes)  # from here on no visitor reaches it
            shutil.rmtree(self.root / "candidates" / key, ignore_errors=True)
            return prefix is not None

    def health(self, key: str) -> str | None:
        with self._locked():
            if key in self.manifest()["releases"]:
                return None
            prefix = find_route(read_routes(self.root), key)
        if prefix is None:
            return f"release {key} is not deployed on {self.name}"
        if not (self.root / "candidates" / key).is_dir():
            return f"release {key}: its staged files are missing from {self.root / 'candidates'}"
        return None

    # -- internals ------------------------------------------------------------------------

    def _has(self, version: str) -> bool:
        return (self.root / "versions" / version / MANIFEST).is_file()

    def _next_version(self) -> str:
        versions = self.root / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        numbers = [int(p.name) for p in versions.iterdir() if p.name.isdigit()]
        return f"{max(numbers, default=0) + 1:06d}"

    def _drop_incomplete(self) -> None:
        """A crash mid-build leaves a version without a manifest: it was never live."""
        versions = self.root / "versions"
        if versions.is_dir():
            for folder in versions.iterdir():
                if folder.is_dir() and not (folder / MANIFEST).exists():
                    shutil.rmtree(folder)

    def _build(
        self, target: Path, previous: Path | None, folder: PurePosixPath, files: Mapping[str, bytes]
    ) -> None:
        if previous is not None:
            shutil.copytree(previous, target, copy_function=os.link, symlinks=True)
            (target / MANIFEST).unlink()
            owned = target / folder
            if str(folder) != "." and owned.exists():
                shutil.rmtree(owned)
        target.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            out = target / folder / _clean_path(name)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.unlink(missing_ok=True)
            out.write_bytes(data)

    def _write_index(self, target: Path, releases: Mapping[str, Any]) -> None:
        """A site map at ``/`` unless a release owns the root."""
        if any(r["path"] == "." for r in releases.values()):
            return
        links = [
            (html.escape(r["path"]), html.escape(r["title"] or r["path"]))
            for r in sorted(releases.values(), key=lambda r: r["path"])
        ]
        items = "\n".join(f'    <li><a href="/{path}/">{title}</a></li>' for path, title in links)
        page = (
            '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
            f"<title>{html.escape(self.name)}</title></head>\n<body>\n"
            f"  <h1>{html.escape(self.name)}</h1>\n  <ul>\n{items}\n  </ul>\n</body>\n</html>\n"
        )
        index = target / "index.html"
        index.unlink(missing_ok=True)
        index.write_text(page, encoding="utf-8")

    def _switch(self, version: str) -> None:
        temp = self.root / ".current.tmp"
        temp.unlink(missing_ok=True)
        temp.symlink_to(Path("versions") / version)
        os.replace(temp, self._current)  # atomic: readers see the old or the new site
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _prune(self) -> None:
        """Keep the live version and its ancestors (what rollback walks), up to keep_versions."""
        keep: list[str] = []
        version = self.live_version()
        while version and len(keep) < self.keep_versions:
            keep.append(version)
            manifest = self.root / "versions" / version / MANIFEST
            version = json.loads(manifest.read_text()).get("parent") if manifest.is_file() else None
        for folder in (self.root / "versions").iterdir():
            if folder.name.isdigit() and folder.name not in keep:
                shutil.rmtree(folder)
