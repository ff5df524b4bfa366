"""Read models: records as plain data, the same for the CLI's --json and the REST API."""

from __future__ import annotations

from typing import Any

from shipyard.model import CheckReport
from shipyard.service._queries import TaskStory
from shipyard.store import TaskRow

__all__ = ["story_dict", "task_dict"]


def task_dict(t: TaskRow) -> dict[str, Any]:
    """A task as the CLI's --json and the API show it."""
    return {
        "id": t.id,
        "domain": t.domain,
        "job_kind": t.job_kind,
        "input_key": t.input_key,
        "state": t.state,
        "attempts": t.attempts,
        "artifact": t.artifact_id,
        "error": t.error,
        "source": t.source,
        "batch": t.batch_id,
        "submitted_by": t.submitted_by,
        "submitted_at": t.submitted_at,
        "finished_at": t.finished_at,
        "inputs": t.inputs,
    }


def story_dict(story: TaskStory) -> dict[str, Any]:
    """Everything recorded about a task (``shipyard show --json``, ``GET /api/v1/tasks/ID``)."""
    return {
        "task": task_dict(story.task),
        "steps": [
            {
                "stage": s.stage,
                "attempt": s.attempt,
                "status": s.status,
                "runs": s.runs,
                "started_at": s.started_at,
                "finished_at": s.finished_at,
                "summary": s.summary,
                "detail": s.detail,
            }
            for s in story.steps
        ],
        "attempts": [
            {
                "number": a.number,
                "tier": a.tier,
                "route": a.route.splitlines(),
                "provider": a.provider,
                "model": a.model,
                "prompt_hash": a.prompt_hash,
                "files": sorted(a.files),
                "passed": a.passed,
                "input_tokens": a.input_tokens,
                "output_tokens": a.output_tokens,
                "finish_reason": a.finish_reason,
                "cost_usd": a.cost_usd,
                "cost_source": a.cost_source,
                "feedback": a.feedback,
                "recalled": a.recalled,
                "report": a.report,
                "change": _change_view(a),
            }
            for a in story.attempts
        ],
        "decisions": [
            {"decision": d.decision, "actor": d.actor, "reason": d.reason, "at": d.decided_at}
            for d in story.decisions
        ],
        "provenance": story.provenance.record if story.provenance else None,
        "release": (
            {
                "target": story.release.target,
                "path": story.release.path,
                "version": story.release.version,
                "state": story.release.state,
                "released_at": story.release.released_at,
                "stages": list((story.release.plan or {}).get("stages", [])),
                "weight": story.release.weight,
                "reason": story.release.reason,
                "verdicts": list(story.release.verdicts or []),
            }
            if story.release
            else None
        ),
    }


def _change_view(attempt: Any) -> dict[str, Any] | None:
    """A repository change's attempt: its context, summary and facts, and its diff by file
    with the findings at their lines (None for other job kinds)."""
    if "change.patch" not in (attempt.files or {}):
        return None
    from shipyard.repos import file_diffs  # a repository change's tooling, for these alone

    findings = CheckReport.from_dict(attempt.report).findings if attempt.report else []
    diffs = file_diffs(str(attempt.files["change.patch"]), findings)
    return dict(attempt.change or {}) | {"diff": [d.to_dict() for d in diffs]}
