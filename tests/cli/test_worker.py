"""``shipyard worker --until-idle`` when releases wait for a gateway, and stopping a worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import as_person, copy_example, run_cli

GATEWAY_WANTED = 75
_SHIPYARD = (sys.executable, "-m", "shipyard")


def _shop_with_two_pages(tmp_path: Path) -> Path:
    """The example (its pages released by canary), two pages submitted and approved."""
    root = copy_example(tmp_path / "shop", canary=True)
    rows = (root / "products.csv").read_text().splitlines()
    (root / "two.csv").write_text("\n".join(rows[:3]) + "\n")
    assert run_cli(root, "init").returncode == 0
    owner, operator = as_person(root, "shop-owner"), as_person(root, "demo-operator")
    submitted = run_cli(
        root, "submit", "landing-page", "--batch", str(root / "two.csv"), "--as", "shop-owner",
        env=owner,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    first = run_cli(root, "worker", "--until-idle")
    assert first.returncode == 0, first.stderr
    approved = run_cli(
        root, "approve", "--all", "--as", "demo-operator", "--reason", "fine", env=operator
    )
    assert approved.returncode == 0, approved.stderr
    return root


def test_until_idle_says_which_gateway_is_missing_and_exits_with_its_own_status(
    tmp_path: Path,
) -> None:
    root = _shop_with_two_pages(tmp_path)
    done = run_cli(root, "worker", "--until-idle")
    assert done.returncode == GATEWAY_WANTED, done.stderr
    assert "no gateway serves storefront-site (2 releases): start `shipyard serve`" in done.stderr
    assert done.stderr.count("no gateway serves") == 1
    assert "2 releasing" in done.stdout
    assert "Traceback" not in done.stderr
    # Time passes with no gateway and no worker; then the gateway starts and a worker runs:
    # every page is published (the time no one watched was no bake time to judge it on).
    time.sleep(5)
    serve = subprocess.Popen(
        [*_SHIPYARD, "-C", str(root), "serve", "--port", "0", "--admin-port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (root / ".shipyard" / "gateway.json").exists():
            assert serve.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        released = run_cli(root, "worker", "--until-idle")
        assert released.returncode == 0, released.stderr
        assert "2 published" in released.stdout
    finally:
        serve.terminate()
        serve.wait(timeout=30)


def test_wait_for_gateway_waits_says_so_once_and_stops_on_sigterm_without_tracebacks(
    tmp_path: Path,
) -> None:
    root = _shop_with_two_pages(tmp_path)
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*_SHIPYARD, "-C", str(root), "worker", "--until-idle", "--wait-for-gateway"],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        try:
            deadline = time.monotonic() + 120
            while "waiting for it" not in log.read_text():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            # Still there a few looks later (it does not exit), and said it only once.
            time.sleep(3)
            assert proc.poll() is None, log.read_text()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert text.count("no gateway serves storefront-site") == 1, text
    assert "taking no new step" in text and "stopped after" in text
    assert "Traceback" not in text and "ERROR" not in text, text


def test_wait_for_gateway_needs_until_idle(tmp_path: Path) -> None:
    root = copy_example(tmp_path / "shop", canary=True)
    assert run_cli(root, "init").returncode == 0
    refused = run_cli(root, "worker", "--wait-for-gateway")
    assert refused.returncode == 2
    assert "--wait-for-gateway applies only with --until-idle" in refused.stderr
