"""Recall for the pipeline: what a task's prompt gets before generating, what a finished task
leaves behind, and a task's working state (session memory, read from the records the workflow
keeps). Semantic and structured memory live in ``memory_items``; every function reads and
writes through the session it is handed."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.config import MemorySettings, Settings
from shipyard.memory._semantic import SearchPolicy, SemanticMemory
from shipyard.memory._structured import recall
from shipyard.model import CheckReport
from shipyard.store import AttemptRow, StepRow, TaskRow

__all__ = [
    "outcome_memories",
    "readable_namespaces",
    "recall_for_task",
    "search_policy",
    "session_state",
]


def search_policy(settings: MemorySettings) -> SearchPolicy:
    """How recall weighs, cuts and caps what it finds, from ``[memory]``."""
    return SearchPolicy(
        threshold=settings.threshold,
        half_life_days=settings.half_life_days,
        max_tokens=settings.max_context_tokens,
    )


def readable_namespaces(settings: Settings, domain: str) -> list[str]:
    """A domain reads its own namespace, the global one, and those its config allows."""
    found = settings.domains.get(domain)
    reads = found.memory_reads if found is not None else []
    return list(dict.fromkeys([domain, "global", *reads]))


def recall_for_task(
    session: Session, memory: SemanticMemory, settings: Settings, task_id: str
) -> list[dict[str, Any]]:
    """What a task's prompt gets: structured recall (this job kind and subject), then
    semantic recall over the namespaces its domain may read; deduplicated, capped."""
    task = session.get(TaskRow, task_id)
    if task is None:
        return []
    exact = recall(session, namespace=task.domain, job_kind=task.job_kind, input_key=task.input_key)
    query = f"{task.job_kind} {task.input_key} " + " ".join(str(v) for v in task.inputs.values())
    hits = memory.search(
        session,
        query,
        namespaces=readable_namespaces(settings, task.domain),
        k=settings.memory.recall_items,
        policy=search_policy(settings.memory),
    )
    budget = settings.memory.max_context_tokens * 4
    items: list[dict[str, Any]] = []
    for item in exact:  # the records first: this subject's own history
        if len(item["text"]) <= budget:
            budget -= len(item["text"])
            items.append(item)
    seen = {item["id"] for item in items}
    for hit in hits:
        ident = f"mem-{hit.id}"
        if ident in seen or len(hit.text) > budget:
            continue
        budget -= len(hit.text)
        seen.add(ident)
        items.append(
            {
                "id": ident,
                "kind": hit.kind,
                "task": hit.task_id,
                "text": hit.text,
                "similarity": round(hit.similarity, 3),
                "namespace": hit.namespace,
            }
        )
    return items


def session_state(session: Session, task: TaskRow) -> dict[str, Any]:
    """A task's working state, as the workflow holds it in the records."""
    steps = session.scalars(
        select(StepRow).where(StepRow.task_id == task.id).order_by(StepRow.id)
    ).all()
    last = session.scalar(
        select(AttemptRow)
        .where(AttemptRow.task_id == task.id)
        .order_by(AttemptRow.number.desc())
        .limit(1)
    )
    report = CheckReport.from_dict(last.report) if last is not None and last.report else None
    return {
        "task": task.id,
        "state": task.state,
        "job_kind": task.job_kind,
        "inputs": task.inputs,
        "stage": steps[-1].stage if steps else "",
        "steps": [f"{s.stage}{s.attempt or ''}: {s.status}" for s in steps],
        "attempt": last.number if last else 0,
        "tier": last.tier if last else "",
        "recalled": list(last.recalled) if last else [],
        "feedback": list(last.feedback) if last else [],
        "open_findings": [f.to_dict() for f in report.findings] if report else [],
        "files": sorted(last.files) if last else [],
    }


EXCERPT = 800
"""Characters of an approved output kept in memory (enough to recall its style and facts)."""


def outcome_memories(
    task: TaskRow,
    attempts: Sequence[AttemptRow],
    outcome: str,
    error: str,
    files: Mapping[str, bytes],
) -> list[tuple[str, str]]:
    """(kind, text) to remember of a finished task: the outcome, and a repair that worked.

    ``attempts`` are the task's, in order; ``files`` its artifact's (empty when it has none).
    """
    subject = f"{task.job_kind} for {task.input_key}"
    found: list[tuple[str, str]] = []
    if outcome == "failed":
        findings = CheckReport.from_dict(attempts[-1].report or {}).findings if attempts else []
        listed = "; ".join(f"{f.rule}: {f.message}" for f in findings[:5])
        found.append((outcome, f"{subject} failed its checks: {listed or error}"))
    elif outcome == "rejected":
        found.append((outcome, f"{subject} was rejected: {error}"))
    elif outcome in ("published", "approved") and task.artifact_id:
        spec = ", ".join(
            f"{k}={'; '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in task.inputs.items()
        )
        prose = [n for n in sorted(files) if n.endswith((".md", ".html", ".txt"))]
        excerpt = " ".join(files[n].decode("utf-8", "replace") for n in prose or sorted(files))
        excerpt = re.sub(r"<[^>]+>|\s+", " ", excerpt).strip()[:EXCERPT]
        found.append(
            (outcome, f"{subject} {outcome} as artifact {task.artifact_id[:19]}. "
             f"Spec: {spec}. Output: {excerpt}")
        )  # fmt: skip
    else:
        found.append((outcome, f"{subject} ended {outcome}: {error}".rstrip(": ")))
    passing = [a for a in attempts if a.passed]
    before = {a.number: a for a in attempts}.get(passing[-1].number - 1) if passing else None
    if passing and before is not None:
        failed = CheckReport.from_dict(before.report or {}).findings
        fixed = "; ".join(f"{f.rule}: {f.message}" for f in failed[:5])
        found.append(
            ("repair", f"{subject}: attempt {passing[-1].number - 1} failed ({fixed}); "
             f"attempt {passing[-1].number} fixed it and passed")
        )  # fmt: skip
    return found
