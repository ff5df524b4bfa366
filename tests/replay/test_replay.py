"""Replay: recorded tasks re-run under a candidate policy, check set or template, in
simulation; every live record stays as it was."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dbos import DBOS
from sqlalchemy import select, text

from shipyard.config import Project
from shipyard.jobs import BatchRow
from shipyard.replay import Candidate, Selection, run_replay
from shipyard.service import Runtime, submit
from shipyard.store import AuditRow, Base, ReplayRunRow
from support import PRODUCT, SETTLED, as_person, run_cli, wait_for_state

EXPERIMENT = {
    "name": "checkout-button",
    "variants": ["control", "green-button"],
    "ratio": 0.5,
    "salt": "2026-11-checkout",
}
FORBID_AB_TESTS = """
// Stricter: A/B test scripts are never released.
@id("no-ab-tests")
forbid(principal, action == Action::"release", resource == JobKind::"ab-test");
"""


@pytest.fixture
def recorded(project: Project, start_worker: Callable[..., Runtime]) -> Runtime:
    """A landing page and an A/B test, generated, checked and gated (waiting for approval)."""
    rt = start_worker(project)
    ids = [
        *submit(rt, rt.jobs.get("landing-page"), [BatchRow(where="t", data=PRODUCT)],
                submitted_by="me").submitted,
        *submit(rt, rt.jobs.get("ab-test"), [BatchRow(where="t", data=EXPERIMENT)],
                submitted_by="me").submitted,
    ]  # fmt: skip
    for task_id in ids:
        assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    # The state is set inside the gate step; its record, span and workflow close a moment
    # later: wait for the workflows to end, so the live tables hold still.
    deadline = time.monotonic() + 30
    while DBOS.list_workflows(status="PENDING", load_input=False, load_output=False):
        assert time.monotonic() < deadline, "the task workflows never ended"
        time.sleep(0.05)
    return rt


def strict_policy(project: Project, folder: Path) -> Path:
    path = folder / "strict.cedar"
    path.write_text(project.policy_files[0].read_text() + FORBID_AB_TESTS)
    return path


def live_tables(rt: Runtime) -> dict[str, list[Any]]:
    """Every row of every live table, and the state folder.

    Not replay runs (the replay's own record) nor workers (the running worker's heartbeat).
    """
    rt.tracing.flush()  # spans still batched would land after the snapshot
    found: dict[str, list[Any]] = {}
    with rt.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if table.name not in ("replay_runs", "workers"):
                rows = connection.execute(select(table)).all()
                found[table.name] = sorted(map(repr, rows))
        found["alembic_version"] = list(connection.execute(text("select * from alembic_version")))
    state = rt.project.state_dir
    found["files"] = sorted(
        str(p.relative_to(state))
        for p in state.rglob("*")
        if p.is_file() and "shipyard.db" not in p.name and "workflows" not in p.name
    )
    return found


def changes(report: dict[str, Any]) -> dict[str, list[str]]:
    return {t["job_kind"]: t["changes"] for t in report["tasks"]}


def test_a_stricter_policy_shows_as_newly_denied_and_changes_nothing_live(
    recorded: Runtime, tmp_path: Path
) -> None:
    rt = recorded
    before = live_tables(rt)
    report = run_replay(
        rt,
        Candidate(policy_files=(strict_policy(rt.project, tmp_path),)),
        Selection(),
        from_step="verify",
        actor="me",
    )
    assert changes(report) == {"landing-page": [], "ab-test": ["newly denied"]}
    ab = next(t for t in report["tasks"] if t["job_kind"] == "ab-test")
    assert ab["before"]["gate"] == "needs_approval" and ab["after"]["gate"] == "deny"
    assert ab["regression"] and ab["after"]["passed"] is True  # checks ran, and passed
    assert report["summary"]["changes"] == {"newly denied": 1}
    assert report["regressions"] == ["1 task(s) newly denied (limit 0)"]
    assert report["candidate"]["policy_hash"] != report["baseline"]["policy_hash"]
    assert live_tables(rt) == before  # not one live row or file changed
    with rt.sessions() as session:
        run = session.get(ReplayRunRow, report["id"])
        assert run is not None and run.summary["regressions"] == 1


def test_a_check_the_recorded_output_fails_is_a_regression(
    recorded: Runtime, tmp_path: Path
) -> None:
    rt = recorded
    candidate = tmp_path / "candidate"
    shutil.copytree(rt.project.root, candidate, ignore=shutil.ignore_patterns(".shipyard"))
    job = candidate / "jobs" / "landing-page" / "job.toml"
    # The candidate adds a check no recorded page passes: a page must mention returns.
    check = '{ name = "command", run = ["grep", "-q", "Free returns", "index.html"] }'
    job.write_text(job.read_text().replace("checks = [\n", f"checks = [\n  {check},\n"))
    report = run_replay(
        rt, Candidate(config=candidate / "shipyard.toml"), Selection(job_kind="landing-page"),
        from_step="verify", actor="me",
    )  # fmt: skip
    (page,) = report["tasks"]
    assert page["before"]["passed"] is True and page["after"]["passed"] is False
    assert page["changes"] == ["newly failing"] and page["regression"]
    assert page["after"]["failing"]
    assert report["summary"]["pass_rate_before"] == 1.0
    assert report["summary"]["pass_rate_after"] == 0.0
    assert report["regressions"][0].startswith("check pass rate 100.0% -> 0.0%")


def test_regenerating_with_a_changed_template_shows_the_code_diff(
    recorded: Runtime, tmp_path: Path
) -> None:
    rt = recorded
    candidate = tmp_path / "candidate"
    shutil.copytree(rt.project.root, candidate, ignore=shutil.ignore_patterns(".shipyard"))
    template = candidate / "jobs" / "landing-page" / "page.html.j2"
    template.write_text(template.read_text().replace("<h1 ", '<h1 data-v="2" ', 1))
    before = live_tables(rt)
    report = run_replay(
        rt, Candidate(config=candidate / "shipyard.toml"), Selection(job_kind="landing-page"),
        from_step="generate", actor="me",
    )  # fmt: skip
    (page,) = report["tasks"]
    assert page["after"]["passed"] is True and "code changed" in page["changes"]
    added = [line for line in page["diff"].splitlines() if line.startswith("+")]
    assert page["diff"].startswith("--- recorded/index.html")
    assert any('data-v="2"' in line for line in added)
    assert not page["regression"]
    assert live_tables(rt) == before


def test_fail_on_regression_exit_codes_and_the_html_report(
    recorded: Runtime, tmp_path: Path
) -> None:
    root = recorded.project.root
    strict = strict_policy(recorded.project, tmp_path)
    me = as_person(root, "me")
    same = run_cli(
        root, "replay", "--from-step", "gate", "--fail-on-regression", "--as", "me", env=me
    )
    assert same.returncode == 0, same.stderr
    assert "no regression beyond the thresholds" in same.stdout
    page = tmp_path / "report.html"
    worse = run_cli(
        root, "replay", "--policy", str(strict), "--fail-on-regression", "--html", str(page),
        "--as", "me", env=me,
    )  # fmt: skip
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "regression: 1 task(s) newly denied" in worse.stdout
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "newly denied" in html
    assert "<script" not in html and "http" not in html.split("</style>")[0]
    allowed = run_cli(
        root, "replay", "--policy", str(strict), "--fail-on-regression",
        "--max-newly-denied", "1", "--as", "me", env=me,
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stdout
    bad = run_cli(root, "replay", "--from-step", "deploy", "--as", "me", env=me)
    assert bad.returncode == 2 and "one of: generate, verify, gate" in bad.stderr


def test_policy_activate_takes_only_a_report_for_that_policy(
    recorded: Runtime, tmp_path: Path
) -> None:
    root = recorded.project.root
    strict = strict_policy(recorded.project, tmp_path)
    other = tmp_path / "other.cedar"
    other.write_text(strict.read_text().replace('"ab-test"', '"product-copy"'))
    report = tmp_path / "report.json"
    me, ops = as_person(root, "me"), as_person(root, "ops")
    done = run_cli(
        root, "replay", "--policy", str(strict), "--out", str(report), "--as", "me", env=me
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(report.read_text())["regressions"]

    wrong = run_cli(root, "policy", "activate", str(other), "--replay-report", str(report), env=ops)
    assert wrong.returncode == 5 and "another policy version" in wrong.stderr
    held = run_cli(root, "policy", "activate", str(strict), "--replay-report", str(report), env=ops)
    assert held.returncode == 5 and "lists regressions" in held.stderr
    live = recorded.project.policy_files[0]
    assert "no-ab-tests" not in live.read_text()

    ok = run_cli(
        root, "policy", "activate", str(strict), "--replay-report", str(report),
        "--accept-regressions", "--as", "ops", env=ops,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert live.read_text() == strict.read_text()
    with recorded.sessions() as session:
        entry = session.scalar(select(AuditRow).where(AuditRow.action == "activate_policy"))
    assert entry is not None and entry.actor == "ops"
    again = run_cli(
        root, "policy", "activate", str(strict), "--replay-report", str(report), env=ops
    )
    assert again.returncode == 5 and "other live policies" in again.stderr

    # The record decides, not the file: a report edited to drop its regressions is refused.
    forged = json.loads(report.read_text())
    forged["id"] = "r-20000101-00000000"
    report.write_text(json.dumps(forged))
    unknown = run_cli(
        root, "policy", "activate", str(strict), "--replay-report", str(report), env=ops
    )
    assert unknown.returncode == 5 and "no record of" in unknown.stderr


def test_regenerating_on_a_priced_model_is_estimated_capped_and_reported(
    recorded: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generate._fake_openai import FakeOpenAI
    from shipyard.errors import InputError
    from shipyard.generate import render
    from shipyard.jobs import validate_inputs

    rt = recorded
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    kind = rt.jobs.get("landing-page")
    page = render(
        kind.outputs["index.html"], validate_inputs(kind, PRODUCT, where="t"),
        name="index.html", where="t",
    )  # fmt: skip
    with FakeOpenAI() as fake:
        candidate = tmp_path / "candidate"
        shutil.copytree(rt.project.root, candidate, ignore=shutil.ignore_patterns(".shipyard"))
        config = candidate / "shipyard.toml"
        config.write_text(
            config.read_text().replace('tier = "template"\n', 'tier = "local"\n', 1)
            + f'\n[tiers.local]\nprovider = "openai"\nbase_url = "{fake.url}"\n'
            'model = "local-model"\nmax_tokens = 1000\n'
            '[prices."local-model"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n'
        )
        pages = Selection(job_kind="landing-page")
        with pytest.raises(InputError, match=r"may cost up to \$0\.0"):
            run_replay(rt, Candidate(config=config), pages, from_step="generate", actor="me")

        capped = run_replay(
            rt, Candidate(config=config), pages, from_step="generate",
            max_usd=Decimal("0.000001"), actor="me",
        )  # fmt: skip
        (stopped,) = capped["tasks"]
        assert (
            stopped["changes"] == ["generation failed"] and "spend cap" in stopped["after"]["note"]
        )
        assert capped["regressions"] == [
            "check pass rate 100.0% -> 0.0% (a drop of more than 0.0%)",
            "1 task(s) generation failed",
        ]
        assert capped["spent_usd"] == 0 and fake.requests == []  # not one call was made

        fake.reply(f"### FILE: index.html\n````html\n{page}\n````\n")
        report = run_replay(
            rt, Candidate(config=config), pages, from_step="generate",
            max_usd=Decimal("1"), actor="me",
        )  # fmt: skip
    (done,) = report["tasks"]
    assert done["after"]["passed"] is True and done["after"]["attempts"] == 1
    assert "cost up" in done["changes"] and done["after"]["cost_usd"] > 0
    assert report["spent_usd"] == pytest.approx(done["after"]["cost_usd"])
    assert 0 < report["spent_usd"] <= report["cost_estimate_usd"]
