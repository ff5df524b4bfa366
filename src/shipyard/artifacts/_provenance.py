"""Provenance statements: what a task recorded, as in-toto / SLSA, and checks against it.

Built from plain data (the orchestrator reads the store); checked the same way, so this
module never touches the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipyard import __version__
from shipyard.artifacts._attest import BUILD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE, digest_of

__all__ = ["Attempt", "build_statement", "check_statement"]

BUILDER_ID = "urn:shipyard:builder:worker"


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One attempt as provenance records it."""

    number: int
    tier: str
    provider: str
    model: str
    prompt_hash: str
    report: dict[str, Any] | None
    passed: bool | None


def _hex(value: str) -> str:
    return value.removeprefix("sha256:")


def build_statement(
    *,
    artifact_id: str,
    manifest: Mapping[str, Mapping[str, Any]],
    record: Mapping[str, Any],
    attempts: Sequence[Attempt],
    inputs: Mapping[str, Any] | None,
    approvals: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The in-toto Statement v1 (SLSA Provenance v1 predicate) of one task's artifact.

    ``record`` is the task's provenance record (see the register step); ``inputs`` is None
    when the project keeps inputs out of provenance (their digest is always there).
    """
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": name, "digest": {"sha256": str(entry["sha256"])}}
            for name, entry in sorted(manifest.items())
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": _external_parameters(record, inputs),
                "internalParameters": _internal_parameters(artifact_id, record, attempts),
                "resolvedDependencies": _resolved_dependencies(record, attempts),
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"shipyard": __version__}},
                "metadata": {
                    "invocationId": record["task"],
                    "startedOn": record["submitted_at"],
                    "finishedOn": record["registered_at"],
                },
                "byproducts": _byproducts(attempts, approvals),
            },
        },
    }


def _external_parameters(
    record: Mapping[str, Any], inputs: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What the task was asked for: its job kind, subject and inputs (or only their digest)."""
    external: dict[str, Any] = {
        "jobKind": record["job_kind"],
        "domain": record["domain"],
        "inputKey": record["input_key"],
        "inputsDigest": {"sha256": _hex(record["inputs_hash"])},
    }
    if inputs is not None:
        external["inputs"] = dict(inputs)
    return external


def _internal_parameters(
    artifact_id: str, record: Mapping[str, Any], attempts: Sequence[Attempt]
) -> dict[str, Any]:
    """How Shipyard made it: the artifact, the passing attempt's tier, the model, the prompt."""
    passing = attempts[-1] if attempts else None
    return {
        "artifact": artifact_id,
        "tier": passing.tier if passing else "",
        "provider": record["provider"],
        "model": record["model"],
        "promptTemplateDigest": {"sha256": _hex(record["template_hash"])},
        "promptDigest": {"sha256": _hex(record["prompt_hash"])},
    }


def _resolved_dependencies(
    record: Mapping[str, Any], attempts: Sequence[Attempt]
) -> list[dict[str, Any]]:
    """What went into it: the job kind's templates, every attempt's prompt, recalled memory."""
    dependencies: list[dict[str, Any]] = [
        {
            "name": "job-kind-templates",
            "uri": f"shipyard:job-kind/{record['job_kind']}",
            "digest": {"sha256": _hex(record["template_hash"])},
        }
    ]
    dependencies += [
        {
            "name": f"prompt/attempt-{a.number}",
            "uri": f"shipyard:task/{record['task']}/attempt/{a.number}/prompt",
            "digest": {"sha256": _hex(a.prompt_hash)},
            "annotations": {"tier": a.tier, "provider": a.provider, "model": a.model},
        }
        for a in attempts
    ]
    dependencies += [
        {"name": f"memory/{item}", "uri": f"shipyard:memory/{item}"}
        for item in record.get("recalled", [])
    ]
    change = record.get("change")
    if change:  # a repository change: the commit it was made on, and what the model read
        repo, base = change["repo"], change["base"]
        dependencies.append(
            {
                "name": f"repository/{repo}",
                "uri": f"shipyard:repo/{repo}",
                "digest": {"gitCommit": base},
                "annotations": {"tree": change["tree"]},
            }
        )
        if change.get("context_digest"):
            dependencies.append(
                {
                    "name": f"repository/{repo}/context",
                    "uri": f"shipyard:repo/{repo}@{base}/context",
                    "digest": {"sha256": _hex(change["context_digest"])},
                    "annotations": {"files": list(change["context_files"])},
                }
            )
    return dependencies


def _byproducts(
    attempts: Sequence[Attempt], approvals: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """What the run left besides the files: each attempt's check report, and the approvals."""
    byproducts: list[dict[str, Any]] = [
        {
            "name": f"checks/attempt-{a.number}",
            "digest": {"sha256": digest_of(a.report)},
            "annotations": {"passed": a.passed},
        }
        for a in attempts
        if a.report is not None
    ]
    byproducts.append(
        {
            "name": "approvals",
            "digest": {"sha256": digest_of(list(approvals))},
            "annotations": {"approvals": list(approvals)},
        }
    )
    return byproducts


def check_statement(
    statement: Mapping[str, Any],
    *,
    artifact_id: str,
    manifest: Mapping[str, Mapping[str, Any]],
    reports: Mapping[int, dict[str, Any] | None],
    record: Mapping[str, Any] | None = None,
    attempts: Sequence[Attempt] = (),
) -> list[str]:
    """What in the store disagrees with the signed statement (empty when nothing does).

    ``manifest`` is the artifact's manifest as stored (its files already checked against
    their digests); ``reports`` maps attempt numbers to the check reports on record;
    ``record`` and ``attempts``, when given, are the provenance record and attempt rows that
    lineage reads, compared field by field with what was signed.
    """
    problems: list[str] = []
    if record is not None:
        problems += _record_problems(statement, record, attempts)
    predicate = statement.get("predicate", {})
    internal = predicate.get("buildDefinition", {}).get("internalParameters", {})
    if internal.get("artifact") != artifact_id:
        problems.append(f"the statement is about artifact {internal.get('artifact')}, not this one")
    signed = {s["name"]: s["digest"]["sha256"] for s in statement.get("subject", [])}
    stored = {name: str(entry["sha256"]) for name, entry in manifest.items()}
    for name in sorted(set(signed) | set(stored)):
        if name not in stored:
            problems.append(f"file {name} is in the statement but not in the artifact")
        elif name not in signed:
            problems.append(f"file {name} is in the artifact but not in the statement")
        elif signed[name] != stored[name]:
            problems.append(
                f"file {name}: the artifact holds sha256 {stored[name][:16]}…, "
                f"the statement signed {signed[name][:16]}…"
            )
    for product in predicate.get("runDetails", {}).get("byproducts", []):
        name = str(product.get("name", ""))
        if not name.startswith("checks/attempt-"):
            continue
        number = int(name.removeprefix("checks/attempt-"))
        if number not in reports or reports[number] is None:
            problems.append(f"the check report of attempt {number} is missing from the records")
        elif digest_of(reports[number]) != product["digest"]["sha256"]:
            problems.append(f"the check report of attempt {number} was changed after signing")
    return problems


def _record_problems(
    statement: Mapping[str, Any], record: Mapping[str, Any], attempts: Sequence[Attempt]
) -> list[str]:
    predicate = statement.get("predicate", {})
    build = predicate.get("buildDefinition", {})
    internal = build.get("internalParameters", {})
    external = build.get("externalParameters", {})
    run = predicate.get("runDetails", {})
    signed = {
        "task": run.get("metadata", {}).get("invocationId"),
        "job_kind": external.get("jobKind"),
        "inputs_hash": external.get("inputsDigest", {}).get("sha256"),
        "provider": internal.get("provider"),
        "model": internal.get("model"),
        "prompt_hash": internal.get("promptDigest", {}).get("sha256"),
        "template_hash": internal.get("promptTemplateDigest", {}).get("sha256"),
    }
    problems = [
        f"the record's {field} ({_hex(str(record.get(field, '')))!r}) differs from the signed "
        f"statement's ({value!r})"
        for field, value in signed.items()
        if _hex(str(record.get(field, ""))) != value
    ]
    product: dict[str, Any] = next(
        (b for b in run.get("byproducts", []) if b.get("name") == "approvals"), {}
    )
    approvals = product.get("annotations", {}).get("approvals")
    if approvals is not None and list(record.get("approvals", [])) != approvals:
        problems.append("the record's approvals differ from the signed statement's")
    prompts = {
        d["name"]: d
        for d in build.get("resolvedDependencies", [])
        if str(d.get("name", "")).startswith("prompt/attempt-")
    }
    for a in attempts:
        dep = prompts.get(f"prompt/attempt-{a.number}")
        if dep is None:
            continue
        seen = (_hex(a.prompt_hash), a.tier, a.provider, a.model)
        notes = dep.get("annotations", {})
        wanted = (
            dep["digest"]["sha256"],
            notes.get("tier"),
            notes.get("provider"),
            notes.get("model"),
        )
        if seen != wanted:
            problems.append(f"attempt {a.number} on record differs from the signed statement")
    return problems
