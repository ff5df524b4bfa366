"""Built-in tools: publish to a static-site target, and call an HTTP API."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from shipyard.errors import ToolError
from shipyard.release import StaticSite, Target

__all__ = ["HttpTool", "PublishTool"]


class PublishTool:
    """Put an artifact's files live on a target; undone by withdrawing them.

    A release that baked as a canary is promoted; one that did not is deployed and promoted
    in one go (on a static site, a single atomic switch).
    """

    name = "publish"
    capability = "publish"
    reversible = True

    def __init__(
        self,
        target: Callable[[str], Target],
        artifact_files: Callable[[str], Mapping[str, bytes]],
    ) -> None:
        self._target, self._files = target, artifact_files

    def call(self, args: dict[str, Any], *, key: str) -> dict[str, Any]:
        """args: target, path, title, artifact (its files are read from the store), release_key."""
        target = self._target(str(args["target"]))
        key = str(args["release_key"])
        if target.health(key) is not None:  # not deployed as a candidate: deploy it now
            files = self._files(str(args["artifact"]))
            if isinstance(target, StaticSite):
                result = target.publish(
                    key=key, path=str(args["path"]), files=files, title=str(args["title"])
                )
                return {
                    "target": target.name,
                    "version": result.version,
                    "url_path": result.url_path,
                    "already_live": result.already_live,
                }
            target.deploy(
                key=key,
                path=str(args["path"]),
                files=files,
                title=str(args["title"]),
                artifact=str(args["artifact"]),
            )
        promoted = target.promote(key)
        return {
            "target": target.name,
            "version": promoted.version,
            "url_path": promoted.url_path,
            "already_live": promoted.already,
        }

    def compensate(
        self, args: dict[str, Any], result: dict[str, Any], *, key: str
    ) -> dict[str, Any]:
        version = self._target(str(args["target"])).withdraw(str(args["release_key"]))
        if version is None:
            return {"withdrawn": False, "note": "not live any more"}
        return {"withdrawn": True, "version": version}


_TRANSIENT = {408, 409, 425, 429, 500, 502, 503, 504}


class HttpTool:
    """Send a JSON request; the key goes along as ``Idempotency-Key``.

    Options: ``url``, ``method`` (POST), ``body`` (JSON), ``headers``; ``undo_url`` (and
    ``undo_method``, POST) makes it reversible: the compensation sends ``{"key", "result"}``
    there with ``Idempotency-Key: KEY:undo``. Transient failures (timeouts, 408/409/425/429,
    5xx) are retried three times with backoff; any other status is a failure at once.
    """

    name = "http"
    capability = "http"
    reversible = True

    def __init__(self, *, timeout: float = 15.0, tries: int = 3) -> None:
        self.timeout, self.tries = timeout, tries

    def call(self, args: dict[str, Any], *, key: str) -> dict[str, Any]:
        return self._send(
            str(args["url"]),
            str(args.get("method", "POST")),
            args.get("body", {}),
            dict(args.get("headers", {})),
            key,
        )

    def compensate(
        self, args: dict[str, Any], result: dict[str, Any], *, key: str
    ) -> dict[str, Any]:
        undo = args.get("undo_url")
        if not undo:
            raise ToolError(
                f"the http call to {args['url']} has no undo_url: it cannot be compensated",
                hint="give the effect an undo_url to make it reversible",
            )
        return self._send(
            str(undo),
            str(args.get("undo_method", "POST")),
            {"key": key, "result": result},
            dict(args.get("headers", {})),
            f"{key}:undo",
        )

    def _send(
        self, url: str, method: str, body: Any, headers: dict[str, str], key: str
    ) -> dict[str, Any]:
        if not url.startswith(("http://", "https://")):
            raise ToolError(
                f"http tool: {url!r} is not an http(s) URL", hint="fix the effect's url"
            )
        data = json.dumps(body).encode()
        last = ""
        for attempt in range(1, self.tries + 1):
            request = urllib.request.Request(
                url,
                data=data,
                method=method.upper(),
                headers={"Content-Type": "application/json", "Idempotency-Key": key, **headers},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    text = response.read(65536).decode("utf-8", "replace")
                    return {"status": response.status, "body": text[:2000]}
            except urllib.error.HTTPError as exc:
                last = f"{method.upper()} {url}: HTTP {exc.code}"
                if exc.code not in _TRANSIENT:
                    raise ToolError(last, hint="the server refused the request") from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = f"{method.upper()} {url}: {getattr(exc, 'reason', exc)}"
            if attempt < self.tries:
                time.sleep(0.5 * 2 ** (attempt - 1))
        raise ToolError(f"{last} (after {self.tries} tries)", hint="check that the service is up")
