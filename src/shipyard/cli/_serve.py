"""``shipyard serve``: the gateway serving released targets, and on a port of its own (an
origin of its own) the REST API and the console."""

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
from shipyard.server import AdminLimits, Gateway, Served, create_app, write_gateway_file
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
    port: int = typer.Option(-1, "--port", help="Gateway port (0 picks a free one)."),
    target: str = typer.Option("", "--target", help="Static-site target to serve at /."),
    admin_port: int = typer.Option(
        -1, "--admin-port", help="Port of the API and console (0 picks a free one)."
    ),
) -> None:
    """Serve released targets: a static site at /, http handlers under their mounts, canary
    traffic split by weight, Prometheus metrics at /metrics; and on the admin port (an origin
    of its own) the REST API at /api/v1 (OpenAPI at /api/v1/openapi.json; tokens from
    `shipyard tokens create`) and the console at /console/."""
    with open_runtime(ctx) as rt:  # open while serving: the API works through it
        _serve(rt, host, port, target, admin_port)


def _bind(host: str, port: int, explicit: bool, what: str) -> socket.socket:
    """A listening socket on ``host:port``; a busy configured port moves to a free one, a
    port asked for on the command line does not."""
    try:
        return _listen(host, port)
    except OSError as exc:
        if explicit:  # the port was asked for explicitly: say so rather than move
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror}",
                hint=f"pass another {what} (0 picks a free one)",
            ) from exc
        console.print(f"port {port} is busy ({exc.strerror}); using a free port instead")
        return _listen(host, 0)


def _url(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _serve(rt: Runtime, host: str, port: int, target: str, admin_port: int = -1) -> None:
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
        watched=[name for name, t in settings.targets.items() if t.watching() is not None],
    )
    serve = settings.serve
    bind_host = host or serve.host
    admin_host = serve.admin_host or bind_host
    bind_port = serve.port if port < 0 else port
    wanted_admin = serve.admin_port if admin_port < 0 else admin_port
    if wanted_admin == bind_port and bind_port != 0:  # connections are told apart by port
        raise ConfigError(
            f"the API and console cannot share port {bind_port} with the site",
            hint="pass another --admin-port (they need an origin of their own)",
        )
    sock = _bind(bind_host, bind_port, port >= 0, "--port")
    admin_sock = _bind(admin_host, wanted_admin, admin_port >= 0, "--admin-port")
    base, admin_base = _url(sock, bind_host), _url(admin_sock, admin_host)
    served = [f"{site.name} ({site.live_version() or 'nothing live yet'}) at /"] if site else []
    served += [f"{h.name} at {h.mount}/" for h in app.handlers]
    console.print(
        f"serving {', '.join(served) or 'nothing'} on [bold]{base}/[/]  (Ctrl-C to stop)",
        highlight=False,
    )
    console.print(
        f"the API at {admin_base}/api/v1 and the console at {admin_base}/console/",
        highlight=False,
    )
    if app.handlers and not app.isolated:
        err_console.print(
            "serve: http handlers run WITHOUT isolation (no bubblewrap, or sandbox.backend = "
            "'process'): generated code serves with this user's rights",
            highlight=False,
        )
    served_targets = [t.name for t in ([site] if site else []) + list(app.handlers)]
    write_gateway_file(
        gateway_file, url=base, token=token, targets=served_targets, admin_url=admin_base
    )
    try:
        admin = create_app(rt, limits=AdminLimits.of(serve))
        both = Served(admin, app, admin_ports=frozenset({admin_sock.getsockname()[1]}))
        config = uvicorn.Config(both, log_level="warning", lifespan="on")
        uvicorn.Server(config).run(sockets=[sock, admin_sock])
    finally:  # Ctrl-C; on SIGTERM the gateway's shutdown removes it
        with contextlib.suppress(FileNotFoundError):
            gateway_file.unlink()
