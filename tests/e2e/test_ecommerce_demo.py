"""The README's main job, as a user runs it: scripts/demo.sh, then the served site."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from support import REPO, run_cli

pytestmark = pytest.mark.slow


def _serve(root: Path) -> tuple[subprocess.Popen[str], str]:
    serve = [str(REPO / ".venv" / "bin" / "shipyard"), "-C", str(root), "serve", "--port", "0"]
    server = subprocess.Popen(
        [*serve, "--admin-port", "0"],  # the API and console: a port (an origin) of their own
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert server.stdout is not None
    line = server.stdout.readline()  # "serving storefront-site (...) at / on http://...:PORT/"
    url = line.split(" on ")[-1].split()[0]
    assert url.startswith("http://127.0.0.1:"), line
    return server, url


def _get(url: str) -> tuple[int, str]:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_demo_runs_end_to_end_and_serves_the_site(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh"), "--no-serve"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SHIPYARD_DEMO_DIR": str(work), "COLUMNS": "200"},
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # The bad rows were refused with their row and field, for both job kinds.
    assert done.stderr.count("row 7 (line 8)") == 2, done.stderr
    assert done.stderr.count("row 14 (line 15)") == 2, done.stderr
    assert "approved by demo-operator" in done.stdout
    assert "39 of 39 version(s) verified" in done.stdout  # every artifact's signed provenance
    assert "audit log intact" in done.stdout
    assert "first-attempt pass rate" in done.stdout and "audit completeness" in done.stdout
    assert "execute_tool publish" in done.stdout  # the trace
    assert "1 attempt(s)" in done.stdout and "release: live on storefront-site" in done.stdout
    # Every page went out by canary, stage by stage, while the shoppers browsed.
    assert "canary 20% → 50% → 100%" in done.stdout
    assert "20%: " in done.stdout and "50%: " in done.stdout  # one release's stage verdicts
    assert "0 errors" in done.stdout  # what the simulated shoppers saw

    tasks = json.loads(run_cli(work, "list", "--json").stdout)
    states: dict[str, int] = {}
    for task in tasks:
        states[task["state"]] = states.get(task["state"], 0) + 1
    assert states == {"published": 18 + 18 + 2, "invalid": 4, "waiting_approval": 1}, states
    # The price change recalled the copy approved for the same product before.
    [changed] = [t for t in tasks if t["state"] == "waiting_approval"]
    shown = json.loads(run_cli(work, "show", changed["id"], "--json").stdout)
    recalled = shown["attempts"][0]["recalled"]
    assert (
        recalled
        and "recalled" in done.stdout
        and "published: product-copy for SKU-001" in done.stdout
    )

    published = [t for t in tasks if t["state"] == "published" and t["job_kind"] == "landing-page"]
    story = json.loads(run_cli(work, "show", published[0]["id"], "--json").stdout)
    assert story["decisions"][-1]["actor"] == "demo-operator"
    assert story["release"]["state"] == "live"
    assert [v["outcome"] for v in story["release"]["verdicts"]] == ["pass", "pass"]

    listing = run_cli(work, "artifacts", "--json")
    artifacts = json.loads(listing.stdout)
    assert len({a["id"] for a in artifacts}) == len(artifacts) == 18 + 18 + 2 + 1
    assert all(a["id"].startswith("sha256:") for a in artifacts)
    assert sum(1 for a in artifacts if a["live_on"]) == 18 + 18 + 2

    server, url = _serve(work)
    try:
        sku = published[0]["inputs"]["sku"].lower()
        status, page = _get(f"{url}products/{sku}/")
        assert status == 200 and published[0]["inputs"]["name"].split()[0] in page
        assert _get(f"{url}products/sku-007/")[0] == 404  # the bad row was never published
        status, index = _get(url)
        assert status == 200 and f"/products/{sku}/" in index
        status, metrics = _get(f"{url}metrics")
        assert (
            status == 200
            and 'shipyard_tasks{job_kind="landing-page",state="published"} 18.0' in metrics
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
