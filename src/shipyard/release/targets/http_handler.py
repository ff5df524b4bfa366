"""The ``http-handler`` target: generated Python handlers served under a URL prefix.

A release puts an artifact's files (a ``handler.py`` defining ``handle(request)``) into
``versions/KEY/`` and routes ``MOUNT/PATH/`` to it. Shipyard's gateway runs each routed
version in a process of its own (see :mod:`shipyard.release._host`) and sends it its share
of the route's requests: ``live`` takes what ``candidate`` does not. Promotion makes the
candidate live and remembers the version it replaced, which is what a withdrawal restores.

The handler contract: ``handle(request) -> response`` where ``request`` is a dict with
``method``, ``path`` (below the route), ``query`` (dict of strings), ``headers`` (the
client's, plus ``x-shipyard-synthetic: 1`` on a canary probe) and ``body`` (parsed JSON,
or None); the response is JSON-able (sent with status 200) or a
``(status, body)`` pair. An exception is a 500.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from shipyard.errors import InputError, StateError
from shipyard.release._routes import find_route, locked, read_routes, set_weight, write_routes
from shipyard.release._target import Deployed, Promoted

__all__ = ["ENTRY_FILE", "HttpHandler"]

ENTRY_FILE = "handler.py"


def _route_path(path: str) -> PurePosixPath:
    clean = PurePosixPath(path.strip("/"))
    if not str(clean) or str(clean) == "." or ".." in clean.parts:
        raise InputError(
            f"handler route {path!r} is not a route name",
            hint="release.path names the handler's route below the target's mount, e.g. 'pricing'",
        )
    return clean


class HttpHandler:
    kind = "http-handler"
    served = True

    def __init__(self, name: str, root: Path, *, mount: str = "/api") -> None:
        self.name, self.root, self.mount = name, root, mount.rstrip("/")

    def prefix(self, path: str) -> str:
        return f"{self.mount}/{_route_path(path)}/"

    def version_dir(self, key: str) -> Path:
        return self.root / "versions" / key

    def deploy(
        self,
        *,
        key: str,
        path: str,
        files: Mapping[str, bytes],
        title: str = "",
        artifact: str = "",
    ) -> Deployed:
        if ENTRY_FILE not in files:
            raise InputError(
                f"release {key}: an http-handler release needs {ENTRY_FILE} "
                f"(it has {', '.join(sorted(files)) or 'no files'})",
                hint=f"make the job kind's outputs include {ENTRY_FILE} defining handle(request)",
            )
        prefix = self.prefix(path)
        with locked(self.root):
            routes = read_routes(self.root)
            route = routes.get(prefix, {})
            if key in (route.get("live"), route.get("candidate")):
                return Deployed(key=key, url_path=prefix, version=key, already=True)
            if route.get("candidate"):
                raise StateError(
                    f"target {self.name!r}: {prefix} is busy with release {route['candidate']}",
                    hint="one candidate per route at a time; this one waits for it to finish",
                    details={"busy_with": route["candidate"]},
                )
            staging = self.root / "versions" / f".{key}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            for name, data in files.items():
                clean = PurePosixPath(name)
                if clean.is_absolute() or ".." in clean.parts:
                    raise InputError(f"release {key}: file name {name!r} leaves its folder")
                out = staging / clean
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
            shutil.rmtree(self.version_dir(key), ignore_errors=True)
            os.replace(staging, self.version_dir(key))
            routes[prefix] = {
                "path": str(_route_path(path)),
                "live": route.get("live"),
                "previous": list(route.get("previous", [])),
                "candidate": key,
                "weight": 0.0,
                "title": title,
            }
            write_routes(self.root, routes)
        return Deployed(key=key, url_path=prefix, version=key)

    def shift(self, key: str, weight: float) -> None:
        set_weight(self.root, self.name, key, weight)

    def promote(self, key: str) -> Promoted:
        with locked(self.root):
            routes = read_routes(self.root)
            live = find_route(routes, key, "live")
            if live is not None:
                return Promoted(key=key, url_path=live, version=key, already=True)
            prefix = find_route(routes, key)
            if prefix is None:
                raise StateError(
                    f"target {self.name!r}: release {key} is neither a candidate nor live",
                    hint="it was aborted; deploy it again to release it",
                )
            route = routes[prefix]
            if route.get("live"):
                route["previous"] = [*route.get("previous", []), route["live"]][-20:]
            route.update(live=key, candidate=None, weight=0.0)
            write_routes(self.root, routes)
            return Promoted(key=key, url_path=prefix, version=key)

    def abort(self, key: str) -> bool:
        with locked(self.root):
            routes = read_routes(self.root)
            prefix = find_route(routes, key)
            if prefix is None:
                return False
            route = routes[prefix]
            route.update(candidate=None, weight=0.0)
            if not route.get("live"):
                del routes[prefix]
            write_routes(self.root, routes)  # from here on no request reaches it
            shutil.rmtree(self.version_dir(key), ignore_errors=True)
            return True

    def withdraw(self, key: str) -> str | None:
        """Put back the version the release replaced (or unroute it if it was the first)."""
        with locked(self.root):
            routes = read_routes(self.root)
            prefix = find_route(routes, key, "live")
            if prefix is None:
                return None
            route = routes[prefix]
            previous = list(route.get("previous", []))
            route["live"] = previous.pop() if previous else None
            route["previous"] = previous
            if not route["live"] and not route.get("candidate"):
                del routes[prefix]
            write_routes(self.root, routes)
            return str(route["live"] or "")

    def health(self, key: str) -> str | None:
        entry = self.version_dir(key) / ENTRY_FILE
        if not entry.is_file():
            return f"release {key}: {entry} is missing"
        return None

    def live_keys(self) -> dict[str, str]:
        """Route prefix -> the live release key."""
        return {p: str(r["live"]) for p, r in read_routes(self.root).items() if r.get("live")}
