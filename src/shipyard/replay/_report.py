"""A replay's report: totals, regression thresholds, and the report as JSON or HTML."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Thresholds", "regressions", "render_html", "totals"]


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """What ``--fail-on-regression`` counts as a regression, in total."""

    max_pass_drop: float = 0.0
    """Largest allowed drop of the check pass rate (0.05: five points)."""
    max_newly_allowed_high: int = 0
    """High-risk releases the candidate lets out by themselves that the recorded run did not."""
    max_cost_increase: float = 0.10
    """Largest allowed rise of the total cost, as a fraction of the recorded cost."""
    max_newly_denied: int = 0
    """Tasks the candidate denies (at the gate or a tool) that the recorded run let through."""


def _rates(tasks: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """Pass rates over the same tasks: those the recorded run checked (one the replay could
    not check counts as failing)."""
    checked = [t for t in tasks if t["before"]["passed"] is not None]
    if not checked:
        return None, None
    before = sum(1 for t in checked if t["before"]["passed"]) / len(checked)
    after = sum(1 for t in checked if t["after"]["passed"]) / len(checked)
    return before, after


def totals(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's summary over its tasks."""
    counts: dict[str, int] = {}
    for task in tasks:
        for change in task["changes"]:
            counts[change] = counts.get(change, 0) + 1
    newly_high = sum(
        1
        for t in tasks
        if t["after"]["gate"] == "auto"
        and t["after"]["risk"] == "high"
        and t["before"]["gate"] != "auto"
    )
    cost_before = sum(t["before"]["cost_usd"] for t in tasks)
    cost_after = sum(t["after"]["cost_usd"] for t in tasks)
    before, after = _rates(tasks)
    return {
        "tasks": len(tasks),
        "pass_rate_before": before,
        "pass_rate_after": after,
        "changes": counts,
        "newly_allowed_high_risk": newly_high,
        "cost_usd_before": round(cost_before, 6),
        "cost_usd_after": round(cost_after, 6),
        "seconds_before": round(sum(t["before"]["seconds"] for t in tasks), 3),
        "seconds_after": round(sum(t["after"]["seconds"] for t in tasks), 3),
        "regressions": sum(1 for t in tasks if t["regression"]),
    }


def regressions(summary: dict[str, Any], limits: Thresholds) -> list[str]:
    """What breaks the thresholds, in words (empty: the candidate may go live)."""
    found = []
    before, after = summary["pass_rate_before"], summary["pass_rate_after"]
    if before is not None and after is not None and before - after > limits.max_pass_drop + 1e-9:
        found.append(
            f"check pass rate {before:.1%} -> {after:.1%} "
            f"(a drop of more than {limits.max_pass_drop:.1%})"
        )
    if summary["newly_allowed_high_risk"] > limits.max_newly_allowed_high:
        found.append(
            f"{summary['newly_allowed_high_risk']} high-risk release(s) newly go out without "
            f"approval (limit {limits.max_newly_allowed_high})"
        )
    changes = summary["changes"]
    denied = changes.get("newly denied", 0) + changes.get("tool newly denied", 0)
    if denied > limits.max_newly_denied:
        found.append(f"{denied} task(s) newly denied (limit {limits.max_newly_denied})")
    cost_before, cost_after = summary["cost_usd_before"], summary["cost_usd_after"]
    if cost_after > cost_before * (1 + limits.max_cost_increase) + 1e-9:
        found.append(
            f"cost ${cost_before:.4f} -> ${cost_after:.4f} "
            f"(more than +{limits.max_cost_increase:.0%})"
        )
    for change in ("newly invalid", "job kind gone", "target gone", "generation failed"):
        if changes.get(change):  # no threshold makes these acceptable
            found.append(f"{changes[change]} task(s) {change}")
    return found


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1b1b}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;
text-align:left;vertical-align:top}th{background:#f3f3f3}.bad{background:#fde8e8}
.good{background:#e8f6e8}pre{background:#f7f7f7;padding:.6rem;overflow:auto;font-size:12px}
summary{cursor:pointer}
"""


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained page (no scripts, no external files)."""
    e = html.escape
    summary = report["summary"]
    rows = []
    for t in report["tasks"]:
        cls = "bad" if t["regression"] else ("good" if t["changes"] else "")
        b, a = t["before"], t["after"]
        rows.append(
            f'<tr class="{cls}"><td>{e(t["task_id"])}</td><td>{e(t["job_kind"])}</td>'
            f"<td>{e(t['input_key'])}</td>"
            f"<td>{_passed(b['passed'])} → {_passed(a['passed'])}</td>"
            f"<td>{e(b['gate'])} → {e(a['gate'])}</td>"
            f"<td>{b['attempts']} → {a['attempts']}</td>"
            f"<td>${b['cost_usd']:.4f} → ${a['cost_usd']:.4f}</td>"
            f"<td>{e(', '.join(t['changes']) or 'same')}"
            + (f"<br>{e(a['note'])}" if a["note"] else "")
            + (f"<br>failing: {e(', '.join(a['failing']))}" if a["failing"] else "")
            + "</td></tr>"
        )
    diffs = "".join(
        f"<details><summary>{e(t['task_id'])} {e(t['job_kind'])} {e(t['input_key'])}"
        f"</summary><pre>{e(t['diff'])}</pre></details>"
        for t in report["tasks"]
        if t["diff"]
    )
    verdict = report.get("regressions", [])
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Shipyard replay {e(report['id'])}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Replay {e(report['id'])}</h1>"
        f"<p>{summary['tasks']} task(s) from step <b>{e(report['from_step'])}</b>; candidate "
        f"policy {e(report['candidate']['policy_hash'][:19])} (live "
        f"{e(report['baseline']['policy_hash'][:19])}); "
        f"{e(report['candidate']['config'])}</p>"
        f"<pre>{e(json.dumps(summary, indent=1))}</pre>"
        + (
            "<h2>Regressions</h2><ul>" + "".join(f"<li>{e(r)}</li>" for r in verdict) + "</ul>"
            if verdict
            else "<p>No regression beyond the thresholds.</p>"
        )
        + "<table><tr><th>task</th><th>job</th><th>subject</th><th>checks</th><th>gate</th>"
        "<th>attempts</th><th>cost</th><th>changes</th></tr>"
        + "".join(rows)
        + "</table>"
        + (f"<h2>Code that changed</h2>{diffs}" if diffs else "")
        + "</body></html>\n"
    )


def _passed(value: bool | None) -> str:
    return {True: "pass", False: "fail", None: "-"}[value]
