"""The whole pipeline with the openai provider, against a local Chat Completions server.

The model's first reply ignores the reply format; the generate stage records it as a failed
attempt and the second prompt carries the finding, which a well-formed reply then fixes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from generate._fake_openai import FakeOpenAI
from shipyard.config import Project, TierSettings, load_project
from shipyard.generate import render
from shipyard.generate.providers.openai import OpenAIProvider
from shipyard.jobs import BatchRow, load_job_kind, validate_inputs
from shipyard.model import CheckReport
from shipyard.service import Runtime, submit, task_story
from support import PRODUCT, SETTLED, wait_for_state


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def test_a_malformed_reply_is_a_failed_attempt_fed_back_to_the_next(
    project: Project,
    start_worker: Callable[..., Runtime],
    fake: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kind = load_job_kind(project.root / "jobs" / "landing-page", domain="storefront")
    inputs = validate_inputs(kind, PRODUCT, where="test")
    page = render(kind.outputs["index.html"], inputs, name="index.html", where="test")
    page = page if page.endswith("\n") else page + "\n"
    fake.reply(
        "Sure! Here is a landing page for the Trail Mug:\n\n<!DOCTYPE html><title>Mug</title>",
        prompt_tokens=101,
        completion_tokens=17,
    )
    fake.reply(
        f"### FILE: index.html\n````html\n{page}````\n", prompt_tokens=205, completion_tokens=640
    )
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a local server needs no key
    provider = OpenAIProvider(
        TierSettings(provider="openai", model="local-model", base_url=fake.url)
    )

    # The local model has a price in the project's own table ($1 / $2 per million tokens).
    config = project.root / "shipyard.toml"
    config.write_text(
        config.read_text()
        + '\n[prices."local-model"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n'
    )
    project = load_project(project.root)
    rt = start_worker(project, provider)
    result = submit(
        rt, rt.jobs.get("landing-page"), [BatchRow(where="test", data=PRODUCT)], submitted_by="me"
    )
    [task_id] = result.submitted
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"

    first, second = task_story(rt, task_id).attempts
    # Attempt 1: the reply had no FILE header, so it failed without reaching the checks.
    assert first.passed is False and first.files == {}
    assert first.report is not None
    [finding] = CheckReport.from_dict(first.report).findings
    assert finding.rule == "generate.malformed"
    assert "FILE" in finding.message
    assert first.reply.startswith("Sure! Here is a landing page")
    assert (first.input_tokens, first.output_tokens, first.finish_reason) == (101, 17, "stop")
    assert (first.provider, first.model) == ("openai", "local-model")
    # Attempt 2: the prompt the server received carried that finding, and the files passed.
    assert len(fake.requests) == 2
    sent = fake.requests[1].message("user")
    assert "generate.malformed" in sent and finding.message in sent
    assert second.prompt == sent
    assert second.feedback == [finding.to_dict()]
    assert second.passed is True and second.files == {"index.html": page}
    assert (second.input_tokens, second.output_tokens) == (205, 640)
    # Every attempt is priced, the failed one included: its tokens were spent too.
    assert (first.cost_usd, first.cost_source) == (Decimal("0.000135"), "override")
    assert (second.cost_usd, second.cost_source) == (Decimal("0.001485"), "override")
