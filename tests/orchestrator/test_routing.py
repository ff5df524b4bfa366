"""Tiers through the whole pipeline: fallbacks, the breaker, budgets, a person, replay.

Model tiers are real ``openai`` providers talking HTTP to a local Chat Completions server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from generate._fake_openai import FakeOpenAI
from shipyard.config import Project, load_project
from shipyard.errors import InputError, StateError
from shipyard.generate import render
from shipyard.jobs import BatchRow, load_job_kind, validate_inputs
from shipyard.model import CheckReport
from shipyard.service import (
    Runtime,
    budget_report,
    provide,
    resume,
    submit,
    task_story,
)
from support import PRODUCT, SETTLED, as_person, run_cli, wait_for_state


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a local server needs no key
    with FakeOpenAI() as server:
        yield server


def configure(project: Project, text: str, *, budgets: str | None = None) -> Project:
    """The project with ``text`` appended to shipyard.toml (and [budgets] replaced if given)."""
    path = project.config_path
    config = path.read_text()
    if budgets is not None:
        head, _, rest = config.partition("[budgets]")
        rest = rest[rest.index("\n[") :] if "\n[" in rest else ""
        config = f"{head}[budgets]\n{budgets}\n{rest}"
    path.write_text(config + "\n" + text)
    return load_project(project.root)


def local_tier(fake: FakeOpenAI, **extra: str) -> str:
    lines = [
        "[tiers.local]",
        'provider = "openai"',
        f'base_url = "{fake.url}"',
        'model = "local-model"',
        "max_tokens = 1000",
        *(f"{k} = {v}" for k, v in extra.items()),
        '[prices."local-model"]',
        "input_per_mtok = 1.0",
        "output_per_mtok = 2.0",
    ]
    return "\n".join(lines) + "\n"


def router(**settings: str) -> str:
    return "".join(f"{k} = {v}\n" for k, v in settings.items())


def with_generate(project: Project, settings: str) -> None:
    path = project.config_path
    path.write_text(path.read_text().replace('tier = "template"\n', settings, 1))


def good_page(project: Project) -> str:
    kind = load_job_kind(project.root / "jobs" / "landing-page", domain="storefront")
    inputs = validate_inputs(kind, PRODUCT, where="t")
    page = render(kind.outputs["index.html"], inputs, name="index.html", where="t")
    return page if page.endswith("\n") else page + "\n"


def model_reply(project: Project) -> str:
    return f"### FILE: index.html\n````html\n{good_page(project)}````\n"


def one(rt: Runtime, data: dict[str, str] = PRODUCT) -> str:
    """A new task for ``data`` each time (``again``: the same inputs make a new generation)."""
    result = submit(
        rt,
        rt.jobs.get("landing-page"),
        [BatchRow(where="t", data=data)],
        submitted_by="me",
        again=True,
    )
    return result.submitted[0]


def test_a_failing_tier_falls_back_down_the_chain_and_its_circuit_opens(
    project: Project, start_worker: Callable[..., Runtime], fake: FakeOpenAI
) -> None:
    with_generate(project, router(tier='"local"', tries_per_call="1", breaker_failures="2"))
    project = configure(project, local_tier(fake))
    rt = start_worker(project)  # nothing scripted: the server answers 500 every time

    routes = []
    for _ in range(3):
        task_id = one(rt)
        assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
        [attempt] = task_story(rt, task_id).attempts
        assert (attempt.tier, attempt.provider) == ("template", "template")
        routes.append(attempt.route.splitlines())

    assert routes[0][0] == "job kind landing-page asks for tier local"
    assert routes[0][1].startswith("local failed: ") and "nothing scripted" in routes[0][1]
    assert routes[0][2] == "template served"
    assert "now out of service" in routes[1][1]  # the second failure in a row opened it
    # The third task never called the server: the circuit was open.
    assert routes[2][1].startswith("local skipped: out of service for ")
    assert len(fake.requests) == 2


def test_a_call_that_would_break_a_budget_is_throttled_to_a_cheaper_tier(
    project: Project, start_worker: Callable[..., Runtime], fake: FakeOpenAI
) -> None:
    with_generate(project, router(tier='"local"'))
    project = configure(project, local_tier(fake), budgets="task_usd = 0.001")
    rt = start_worker(project)
    task_id = one(rt)
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    [attempt] = task_story(rt, task_id).attempts
    assert attempt.tier == "template"
    assert f"local skipped: task {task_id} budget $0.001: $0.0000 spent" in attempt.route
    assert not fake.requests


def test_a_task_that_only_budgets_stop_pauses_and_resumes_when_they_allow(
    project: Project, start_worker: Callable[..., Runtime], fake: FakeOpenAI
) -> None:
    with_generate(project, router(tier='"local"', chain='["local"]'))
    paused_project = configure(project, local_tier(fake), budgets="day_usd = 0.001")
    rt = start_worker(paused_project)
    task_id = one(rt)
    assert wait_for_state(rt, task_id, SETTLED) == "paused"
    story = task_story(rt, task_id)
    assert not story.attempts and not fake.requests
    assert "all domains today budget $0.001" in story.task.error
    assert "paused: every tier that could serve would break a budget" in story.task.error
    [line] = [x for x in budget_report(rt).limits if x.scope == "all domains today"]
    assert (line.usd, line.paused) == (Decimal("0.001"), 1)

    with pytest.raises(StateError, match="not waiting for code"):
        provide(rt, task_id, {"index.html": "<p>hi</p>"}, actor="ops")

    # The budget is raised; a worker with the new settings resumes the task.
    raised = configure(paused_project, "", budgets="day_usd = 1.0")
    fake.reply(model_reply(raised), prompt_tokens=1000, completion_tokens=500)
    rt = start_worker(raised)
    assert resume(rt, task_id, actor="ops").state == "resuming"
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    [attempt] = task_story(rt, task_id).attempts
    assert (attempt.tier, attempt.provider, attempt.model) == ("local", "openai", "local-model")
    assert attempt.cost_usd == Decimal("0.002") and attempt.cost_source == "override"
    decisions = [d.decision for d in task_story(rt, task_id).decisions]
    assert decisions[0] == "resumed"
    [line] = [x for x in budget_report(rt).limits if x.scope == "all domains today"]
    assert line.spent.usd == Decimal("0.002")


def test_a_person_writes_the_code_and_it_goes_through_the_same_checks(
    project: Project, start_worker: Callable[..., Runtime], tmp_path: Path
) -> None:
    with_generate(project, router(tier='"human"'))
    project = load_project(project.root)
    rt = start_worker(project)
    task_id = one(rt)
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_input"
    [waiting] = task_story(rt, task_id).attempts
    assert (waiting.tier, waiting.files, waiting.passed) == ("human", {}, None)
    assert "job kind landing-page is written by a person" in waiting.route

    with pytest.raises(InputError, match=r"missing \['index.html'\].*\['page.html'\]"):
        provide(rt, task_id, {"page.html": "<p>"}, actor="alice")

    # A first try without a title fails the html check; the repair gets the findings.
    provide(
        rt, task_id, {"index.html": "<!DOCTYPE html><html><body>hi</body></html>\n"}, actor="alice"
    )
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_input"
    first, second = task_story(rt, task_id).attempts
    assert first.passed is False and first.model == "alice"
    assert second.tier == "human" and second.feedback
    assert "html." in CheckReport.from_dict(first.report or {}).findings[0].rule

    page = tmp_path / "index.html"
    page.write_text(good_page(project))
    bob = as_person(project.root, "bob")
    done = run_cli(
        project.root, "provide", task_id[:12], "--file", str(page), "--as", "bob", env=bob
    )
    assert done.returncode == 0, done.stderr
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    story = task_story(rt, task_id)
    assert story.attempts[-1].passed is True and story.attempts[-1].model == "bob"
    assert [d.decision for d in story.decisions][:2] == ["provided", "provided"]
    assert story.provenance is not None and story.provenance.record["provider"] == "human"

    again = run_cli(
        project.root, "provide", task_id, "--file", f"index.html={page}", "--as", "bob", env=bob
    )
    assert again.returncode == 5 and "not waiting for code" in again.stderr
    shown = run_cli(project.root, "show", task_id)
    assert "tier human" in shown.stdout and "finding(s) fed back" in shown.stdout
    assert "is written by a person" in shown.stdout


def test_replay_serves_the_generation_an_earlier_run_recorded(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    with_generate(project, router(tier='"replay"'))
    project = configure(project, '[tiers.replay]\nprovider = "replay"\n')
    rt = start_worker(project)

    first = one(rt)
    assert wait_for_state(rt, first, SETTLED) == "waiting_approval"
    [original] = task_story(rt, first).attempts
    assert original.tier == "template"  # nothing recorded yet: replay fell back
    assert "replay failed: nothing recorded to replay" in original.route

    second = one(rt)
    assert wait_for_state(rt, second, SETTLED) == "waiting_approval"
    [replayed] = task_story(rt, second).attempts
    assert (replayed.tier, replayed.provider) == ("replay", "replay")
    assert replayed.files == original.files
    assert replayed.model == f"template/{original.model} from {first}#1"
    assert replayed.cost_usd == 0 and replayed.input_tokens == 0

    other = one(rt, {**PRODUCT, "sku": "SKU-202"})  # other inputs: nothing to replay
    assert wait_for_state(rt, other, SETTLED) == "waiting_approval"
    assert task_story(rt, other).attempts[0].tier == "template"


def test_budget_command_shows_limits_and_spend_per_job_kind_domain_and_day(
    project: Project, start_worker: Callable[..., Runtime], fake: FakeOpenAI
) -> None:
    with_generate(project, router(tier='"local"'))
    project = configure(project, local_tier(fake))
    fake.reply(model_reply(project), prompt_tokens=2000, completion_tokens=1000)
    rt = start_worker(project)
    task_id = one(rt)
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"

    shown = run_cli(project.root, "budget")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "all domains today" in out and "$0.0040" in out and "$10.0000" in out
    assert "domain storefront today" in out and "$5.0000" in out
    assert "landing-page" in out and "2,000" in out and "1,000" in out
    data = run_cli(project.root, "budget", "--json")
    assert '"usd": "0.004' in data.stdout
