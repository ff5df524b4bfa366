"""``shipyard serve`` as a user runs it: the site on the gateway's port, the API and the console
on an admin port of their own, both announced in ``.shipyard/gateway.json``; the two ports
never share a path; a configuration that would put them on one port is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from shipyard.config import Project
from shipyard.server import create_token
from shipyard.service import Runtime


@contextmanager
def shipyard_serve(project: Project, *args: str) -> Iterator[dict[str, Any]]:
    """``shipyard serve --port 0 --admin-port 0`` in a process of its own; what it announced."""
    announced = project.state_dir / "gateway.json"
    log = project.root / "serve.log"
    env = {**os.environ, "SHIPYARD_DATABASE_URL": project.database_url, "COLUMNS": "200"}
    command = [sys.executable, "-m", "shipyard", "-C", str(project.root), "serve", *args]
    with open(log, "wb") as output:
        proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                info: dict[str, Any] = json.loads(announced.read_text())
                if info.get("pid") == proc.pid:
                    break
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            assert proc.poll() is None, f"shipyard serve exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"shipyard serve did not start: {log.read_text()}"
            time.sleep(0.05)
        info["log"] = log
        yield info
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_puts_the_api_and_console_on_an_origin_of_their_own(
    project: Project, start_worker: Any
) -> None:
    rt: Runtime = start_worker(project)
    token = create_token(rt, "carol", "viewer", actor="ops")[1]
    bearer = {"Authorization": f"Bearer {token}"}
    with shipyard_serve(project, "--port", "0", "--admin-port", "0") as info:
        site, admin = info["url"], info["admin_url"]
        assert site != admin and site.rsplit(":", 1)[0] == admin.rsplit(":", 1)[0]
        printed = info["log"].read_text()
        assert f"the API at {admin}/api/v1 and the console at {admin}/console/" in printed
        assert httpx.get(f"{admin}/api/v1/tasks", headers=bearer).status_code == 200
        assert httpx.get(f"{admin}/console/login").status_code == 200
        assert httpx.get(f"{site}/healthz").json()["status"] == "ok"
        for path in ("/api/v1/tasks", "/console/login", "/api/v1/openapi.json"):
            assert httpx.get(site + path, headers=bearer).status_code == 404, path
        assert httpx.get(f"{admin}/healthz").status_code == 404


def test_one_port_for_both_is_refused(project: Project) -> None:
    serve = [sys.executable, "-m", "shipyard", "-C", str(project.root), "serve"]
    done = subprocess.run(
        [*serve, "--port", "8765", "--admin-port", "8765"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SHIPYARD_DATABASE_URL": project.database_url, "COLUMNS": "200"},
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot share port 8765" in done.stdout + done.stderr
