"""Provenance through the pipeline: signed at register, re-signed with approvals, verified
against the files and reports; lineage back and forward; OpenLineage; diff; retention."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from sqlalchemy import update

from shipyard.artifacts import ArtifactStore, DatabaseArtifactStore
from shipyard.config import Project
from shipyard.generate import GenerationRequest, render
from shipyard.jobs import BatchRow, load_job_kind, validate_inputs
from shipyard.service import (
    Runtime,
    approve,
    collect_garbage,
    diff_artifacts,
    lineage,
    openlineage_events,
    produced_with,
    rollback,
    submit,
    task_story,
    verify_artifact,
)
from shipyard.store import ArtifactBlobRow, ArtifactRow, AttemptRow, ProvenanceRow
from shipyard.testing import FunctionProvider
from support import PRODUCT, SETTLED, run_cli, wait_for_state, wait_until_finished

SCHEMA = json.loads((Path(__file__).parent / "openlineage_run_event.schema.json").read_text())


def page(project: Project, data: dict[str, str]) -> str:
    kind = load_job_kind(project.root / "jobs" / "landing-page", domain="storefront")
    inputs = validate_inputs(kind, data, where="t")
    return render(kind.outputs["index.html"], inputs, name="index.html", where="t")


def _inputs_as_csv(inputs: dict[str, object]) -> dict[str, str]:
    return {k: "|".join(v) if isinstance(v, list) else str(v) for k, v in inputs.items()}


def publish(rt: Runtime, data: dict[str, str]) -> str:
    result = submit(
        rt, rt.jobs.get("landing-page"), [BatchRow(where="t", data=data)], submitted_by="me"
    )
    task_id = result.submitted[0]
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    approve(rt, task_id, actor="alice", reason="fine")
    assert wait_until_finished(rt, task_id) == "published"
    return task_id


def test_a_published_page_verifies_and_its_lineage_reaches_back_to_everything(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    def write(request: GenerationRequest) -> dict[str, str]:
        html = page(project, _inputs_as_csv(request.inputs))
        if request.inputs["sku"] == "SKU-101" and request.attempt < 3:  # two failed attempts
            html = html.replace("<title>", "<!-- ").replace("</title>", " -->")
        return {"index.html": html}

    provider = FunctionProvider(write, model="script")
    rt = start_worker(project, provider)
    task_id = publish(rt, PRODUCT)
    other = publish(rt, {**PRODUCT, "sku": "SKU-102", "name": "Camp Mug"})
    rollback(rt, "storefront-site", actor="ops")  # takes SKU-102 off again

    story = task_story(rt, task_id)
    artifact_id = story.task.artifact_id
    check = verify_artifact(rt, artifact_id)
    assert check.ok, check.problems
    assert any("signature by sha256:" in line for line in check.checked)

    tree = lineage(rt, task_id)
    assert tree["artifact"]["id"] == artifact_id and tree["live_on"] == ["storefront-site"]
    [t] = tree["tasks"]
    assert [a["passed"] for a in t["attempts"]] == [False, False, True]
    assert t["attempts"][1]["findings_fed_back"] > 0
    assert t["attempts"][2]["checks"][0]["check"] == "html"
    assert t["inputs"]["sku"] == "SKU-101" and t["prompt_hash"].startswith("sha256:")
    assert [a["actor"] for a in t["approvals"]] == ["alice"]
    assert t["releases"][0]["state"] == "live"
    rolled = lineage(rt, other)["tasks"][0]["releases"][0]
    assert rolled["state"] == "rolled_back" and rolled["rolled_back_at"]

    # The signed statement names the approval (re-signed after the decision).
    with rt.sessions() as session:
        envelope = session.get(ProvenanceRow, task_id).envelope  # type: ignore[union-attr]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    approvals = next(
        b for b in statement["predicate"]["runDetails"]["byproducts"] if b["name"] == "approvals"
    )
    assert approvals["annotations"]["approvals"][0]["actor"] == "alice"
    assert len(statement["predicate"]["runDetails"]["byproducts"]) == 4  # 3 reports + approvals

    # Recall queries: everything made with this model, or with the first prompt.
    made = produced_with(rt, model="script")
    assert {r["task"] for r in made} == {task_id, other}
    first_prompt = story.attempts[0].prompt_hash.removeprefix("sha256:")[:12]
    assert [r["task"] for r in produced_with(rt, prompt=first_prompt)] == [task_id]

    shown = run_cli(project.root, "lineage", task_id)
    assert shown.returncode == 0, shown.stderr
    assert "3 attempt(s)" in shown.stdout and "approved by alice" in shown.stdout


def test_openlineage_events_fit_the_run_event_schema(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(project)
    task_id = publish(rt, PRODUCT)
    events = openlineage_events(rt, task_id)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    checker = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    for event in events:
        checker.validate(event)
    assert events[0]["run"]["runId"] == events[1]["run"]["runId"]
    assert events[1]["outputs"][0]["name"].startswith("artifacts/sha256:")
    # The schema bites: an event without a run id, or with a bad time, is refused.
    with pytest.raises(jsonschema.ValidationError):
        checker.validate(events[0] | {"run": {"facets": {}}})
    with pytest.raises(jsonschema.ValidationError):
        checker.validate(events[0] | {"eventTime": "yesterday"})
    cli = run_cli(project.root, "lineage", task_id, "--openlineage")
    assert [json.loads(line)["eventType"] for line in cli.stdout.splitlines()] == [
        "START",
        "COMPLETE",
    ]


def test_tampering_with_a_file_the_statement_or_a_report_is_caught(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(project)
    task_id = publish(rt, PRODUCT)
    artifact_id = task_story(rt, task_id).task.artifact_id
    assert verify_artifact(rt, artifact_id).ok

    # A check report edited in the database.
    with rt.sessions() as session, session.begin():
        session.execute(
            update(AttemptRow).where(AttemptRow.task_id == task_id).values(report={"passed": True})
        )
    problems = verify_artifact(rt, artifact_id).problems
    assert problems == [f"task {task_id}: the check report of attempt 1 was changed after signing"]

    # The record lineage reads, edited: it no longer agrees with what was signed.
    with rt.sessions() as session, session.begin():
        row = session.get(ProvenanceRow, task_id)
        assert row is not None
        row.record = row.record | {"model": "a-better-one"}
    assert any(
        "the record's model ('a-better-one') differs from the signed statement's" in p
        for p in verify_artifact(rt, artifact_id).problems
    )

    # The statement edited (the model swapped): the signature no longer holds.
    with rt.sessions() as session, session.begin():
        row = session.get(ProvenanceRow, task_id)
        assert row is not None and row.envelope is not None
        statement = json.loads(base64.b64decode(row.envelope["payload"]))
        statement["predicate"]["buildDefinition"]["internalParameters"]["model"] = "a-better-one"
        forged = base64.b64encode(json.dumps(statement).encode()).decode()
        row.envelope = row.envelope | {"payload": forged}
    [problem] = verify_artifact(rt, artifact_id).problems
    assert "the signature does not match the statement" in problem

    # A stored file changed (on disk, or in the database): its digest no longer matches.
    digest = rt.artifacts.get(artifact_id).manifest["index.html"]["sha256"]
    if isinstance(rt.artifacts, DatabaseArtifactStore):
        with rt.sessions() as session, session.begin():
            session.execute(
                update(ArtifactBlobRow)
                .where(ArtifactBlobRow.digest == digest)
                .values(content=b"<h1>defaced</h1>")
            )
    else:
        blob = ArtifactStore(project.artifacts_dir).blob_path(digest)
        os.chmod(blob, 0o644)
        blob.write_bytes(b"<h1>defaced</h1>")
    done = run_cli(project.root, "artifacts", "verify", artifact_id)
    assert done.returncode == 1
    assert "does not match its digest" in done.stdout


def test_same_content_twice_is_one_version_and_diff_shows_what_changed(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(project)
    first = publish(rt, PRODUCT)
    again = submit(
        rt,
        rt.jobs.get("landing-page"),
        [BatchRow(where="t", data=PRODUCT)],
        submitted_by="me",
        again=True,  # the same inputs: a new task only when asked for
    ).submitted[0]
    assert wait_for_state(rt, again, SETTLED) == "waiting_approval"
    same = task_story(rt, first).task.artifact_id
    assert task_story(rt, again).task.artifact_id == same
    assert [t["task"] for t in lineage(rt, same)["tasks"]] == [first, again]
    assert verify_artifact(rt, same).ok  # both tasks' statements hold

    cheaper = publish(rt, {**PRODUCT, "price": "12.00"})
    changed = task_story(rt, cheaper).task.artifact_id
    lines = diff_artifacts(rt, same, changed)
    assert any(line.startswith("-") and "18.50" in line for line in lines)
    assert any(line.startswith("+") and "12.00" in line for line in lines)
    other = publish(rt, {**PRODUCT, "sku": "SKU-999"})
    with pytest.raises(Exception, match="not versions of the same thing"):
        diff_artifacts(rt, same, task_story(rt, other).task.artifact_id)


def test_gc_keeps_what_releases_use_and_collects_old_unreleased_versions(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(project)
    released = publish(rt, PRODUCT)
    result = submit(
        rt,
        rt.jobs.get("landing-page"),
        [BatchRow(where="t", data={**PRODUCT, "sku": "SKU-300"})],
        submitted_by="me",
    )
    unreleased = result.submitted[0]
    assert wait_for_state(rt, unreleased, SETTLED) == "waiting_approval"
    from shipyard.service import reject

    reject(rt, unreleased, actor="alice", reason="not this one")
    wait_until_finished(rt, unreleased)
    old_id = task_story(rt, unreleased).task.artifact_id
    later = datetime.now(UTC) + timedelta(days=31)

    dry = collect_garbage(rt, now=later)
    assert dry.expired == [old_id] and not dry.applied
    assert dry.kept[task_story(rt, released).task.artifact_id] == "referenced by a release"
    assert collect_garbage(rt, now=datetime.now(UTC)).expired == []  # too young

    done = collect_garbage(rt, apply=True, now=later)
    assert done.expired == [old_id] and done.freed_bytes > 0
    with rt.sessions() as session:
        assert session.get(ArtifactRow, old_id).collected_at is not None  # type: ignore[union-attr]
    assert "collected" in verify_artifact(rt, old_id).problems[0]
    assert lineage(rt, old_id)["tasks"][0]["task"] == unreleased  # the records stay
    assert verify_artifact(rt, task_story(rt, released).task.artifact_id).ok

    # The same content made again brings the version back: it verifies again.
    again = submit(
        rt,
        rt.jobs.get("landing-page"),
        [BatchRow(where="t", data={**PRODUCT, "sku": "SKU-300"})],
        submitted_by="me",
        again=True,  # the same inputs: a new task only when asked for
    ).submitted[0]
    assert wait_for_state(rt, again, SETTLED) == "waiting_approval"
    assert task_story(rt, again).task.artifact_id == old_id
    assert verify_artifact(rt, old_id).ok
