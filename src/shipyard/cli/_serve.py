"""``shipyard serve``: the gateway serving released targets on localhost."""

from __future__ import annotations

import contextlib
import secrets
import socket

import typer
import uvicorn

from shipyard.cli._common import console, err_console, handle_errors, open_runtime
from shipyard.errors import ConfigError
from shipyard.observe import registry_for
from shipyard.release import HttpHandler, StaticSite
from shipyard.server import Gateway, Served, create_app, write_gateway_file
from shipyard.service import Runtime
from shipyard.store import make_engine, session_factory


def _listen(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say
    # they are TCP; with it on, every keep-alive response waits ~40 ms for a delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@handle_errors
def serve(
    ctx: typer.Context,
    host: str = typer.Option("", "--host", help="Address to bind (default from shipyard.toml)."),
    port: int = typer.Option(-1, "--port", help="Port (0 picks a free one)."),
    target: str = typer.Option("", "--target", help="Static-site target to serve at /."),
) -> None:
    """Serve released targets: a static site at /, http handlers under their mounts, canary
    traffic split by weight, Prometheus metrics at /metrics, and the REST API at /api/v1
    (OpenAPI at /api/v1/openapi.json; tokens from `shipyard tokens create`)."""
    with open_runtime(ctx) as rt:  # open while serving: the API works through it
        _serve(rt, host, port, target)


def _serve(rt: Runtime, host: str, port: int, target: str) -> None:
    settings = rt.project.settings
    statics = [n for n, t in settings.targets.items() if t.kind == "static-site"]
    name = target or settings.serve.target or (statics[0] if len(statics) == 1 else "")
    if target and settings.targets.get(target) is None:
        rt.target(target)  # names the declared targets
    if name and settings.targets[name].kind != "static-site":
        raise ConfigError(
            f"target {name!r} is a {settings.targets[name].kind} target, not a static site",
            hint=f"static-site targets: {', '.join(statics) or '(none)'}",
        )
    site = rt.target(name) if name else None
    handlers = [rt.target(n) for n, t in settings.targets.items() if t.kind == "http-handler"]
    url = rt.project.database_url
    gateway_file = rt.project.state_dir / "gateway.json"
    backend = settings.sandbox.backend
    assert site is None or isinstance(site, StaticSite)
    sessions = session_factory(make_engine(url))
    token = secrets.token_urlsafe(24)
    app = Gateway(
        site=site,
        handlers=[h for h in handlers if isinstance(h, HttpHandler)],
        sessions=sessions,
        metrics=registry_for(sessions),
        probe_token=token,
        # "auto": bubblewrap when the machine has it; "bwrap": always (a handler that cannot
        # be confined does not start); "process": never.
        isolate={"auto": None, "bwrap": True, "process": False}[backend],
        announce_file=gateway_file,
    )
    bind_host = host or settings.serve.host
    bind_port = settings.serve.port if port < 0 else port
    try:
        sock = _listen(bind_host, bind_port)
    except OSError as exc:
        if port >= 0:  # the port was asked for explicitly: say so rather than move
            raise ConfigError(
                f"cannot listen on {bind_host}:{bind_port}: {exc.strerror}",
                hint="pass another --port (0 picks a free one)",
            ) from exc
        console.print(f"port {bind_port} is busy ({exc.strerror}); using a free port instead")
        sock = _listen(bind_host, 0)
    actual = sock.getsockname()[1]
    base = f"http://[{bind_host}]:{actual}" if ":" in bind_host else f"http://{bind_host}:{actual}"
    served = [f"{site.name} ({site.live_version() or 'nothing live yet'}) at /"] if site else []
    served += [f"{h.name} at {h.mount}/" for h in app.handlers]
    console.print(
        f"serving {', '.join(served) or 'nothing'} on [bold]{base}/[/]  (Ctrl-C to stop)",
        highlight=False,
    )
    if app.handlers and not app.isolated:
        err_console.print(
            "serve: http handlers run WITHOUT isolation (no bubblewrap, or sandbox.backend = "
            "'process'): generated code serves with this user's rights",
            highlight=False,
        )
    served_targets = [t.name for t in ([site] if site else []) + list(app.handlers)]
    write_gateway_file(gateway_file, url=base, token=token, targets=served_targets)
    try:
        api = create_app(rt, requests_per_minute=settings.serve.api_requests_per_minute)
        config = uvicorn.Config(Served(api, app), log_level="warning", lifespan="on")
        uvicorn.Server(config).run(sockets=[sock])
    finally:  # Ctrl-C; on SIGTERM the gateway's shutdown removes it
        with contextlib.suppress(FileNotFoundError):
            gateway_file.unlink()
