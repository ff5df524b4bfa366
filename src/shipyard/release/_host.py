"""One http-handler version in a process of its own.

Run as ``python -m shipyard.release._host DIR SOCKET``.

The gateway starts one per routed version (inside bubblewrap when the sandbox backend is
``bwrap``: no network, read-only system, only the version's folder and the socket's) and
sends it requests over the Unix socket. It imports ``DIR/handler.py`` and answers each
request with what ``handle(request)`` returns; see :mod:`shipyard.release.targets.http_handler`
for the contract. A handler that cannot be imported stops the process with the reason on
stderr, which the gateway reports.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import uvicorn

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def load(folder: Path) -> Callable[[dict[str, Any]], Any]:
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("handler", folder / "handler.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"{folder / 'handler.py'}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handle = getattr(module, "handle", None)
    if not callable(handle):
        raise SystemExit(f"{folder / 'handler.py'} defines no handle(request) function")
    return handle  # type: ignore[no-any-return]


def application(handle: Callable[[dict[str, Any]], Any]) -> Any:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        status, body = 200, None
        try:
            payload = json.loads(raw) if raw else None
        except json.JSONDecodeError as exc:
            await _reply(send, 400, {"error": f"the body is not JSON: {exc.msg}"})
            return
        request = {
            "method": scope["method"],
            "path": scope["path"],
            "query": dict(parse_qsl(scope["query_string"].decode())),
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            "body": payload,
        }
        try:
            result = await asyncio.to_thread(handle, request)
            if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], int):
                status, body = result
            else:
                body = result
            data = json.dumps(body).encode()
        except Exception:  # the handler's own failure: a 500, and the process lives on
            traceback.print_exc(file=sys.stderr)  # the details stay in the gateway's log
            status, data = 500, b'{"error": "internal error"}'
        await _send(send, status, data)

    return app


async def _reply(send: Send, status: int, body: Any) -> None:
    await _send(send, status, json.dumps(body).encode())


async def _send(send: Send, status: int, data: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})


def main() -> None:
    folder, socket_path = Path(sys.argv[1]), sys.argv[2]
    handle = load(folder)
    config = uvicorn.Config(
        application(handle), uds=socket_path, log_level="warning", lifespan="off"
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
