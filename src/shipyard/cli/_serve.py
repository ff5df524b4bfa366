"""``shipyard serve``: serve the published site on localhost."""

from __future__ import annotations

import socket

import typer
import uvicorn

from shipyard.cli._common import console, handle_errors, open_runtime
from shipyard.cli._release import default_target
from shipyard.errors import ConfigError
from shipyard.observe import registry_for
from shipyard.server import create_site_app
from shipyard.store import make_engine, session_factory


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
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
    target: str = typer.Option("", "--target", help="Static-site target to serve."),
) -> None:
    """Serve the live version of a static-site target (switches and rollbacks show at once),
    with Prometheus metrics at /metrics."""
    with open_runtime(ctx) as rt:
        settings = rt.project.settings.serve
        site = rt.target(default_target(rt, target))
        url = rt.project.database_url
    metrics = registry_for(session_factory(make_engine(url)))
    bind_host = host or settings.host
    bind_port = settings.port if port < 0 else port
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
    version = site.live_version() or "nothing published yet"
    console.print(
        f"serving [bold]{site.name}[/] ({version}) at [bold]http://{bind_host}:{actual}/[/]"
        "  (Ctrl-C to stop)",
        highlight=False,
    )
    config = uvicorn.Config(create_site_app(site, metrics=metrics), log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
