"""The ``replay`` provider: the generation recorded for the same work in an earlier run.

It calls no model and spends nothing: it hands back the files (and raw reply) that an
earlier task of the same job kind with the same inputs produced at the same attempt number,
so a run can be repeated under a new policy, new checks or a new prompt with the model's
output held fixed. Where nothing was recorded it fails like an unavailable service, and the
router falls back down the chain.

The look-up into Shipyard's records is supplied by the orchestrator (this package does not
read the store). A tier may also name a folder of recorded replies (``recorded``): TOML files
of ``[[reply]]`` tables (``goal``, ``attempt``, ``model``, ``text``) that a repository
change's goal is matched against — how an example ships a model's answers so it runs offline.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shipyard.errors import ConfigError, ProviderError
from shipyard.generate._provider import Generation, GenerationRequest

__all__ = ["Recorded", "ReplayProvider", "first_of", "recorded_replies"]


@dataclass(frozen=True, kw_only=True)
class Recorded:
    """A generation found in the records."""

    task_id: str
    attempt: int
    provider: str
    model: str
    files: dict[str, str]
    reply: str = ""
    finish_reason: str = ""


class ReplayProvider:
    name = "replay"

    def __init__(self, lookup: Callable[[GenerationRequest], Recorded | None]) -> None:
        self.lookup = lookup

    def generate(self, request: GenerationRequest) -> Generation:
        found = self.lookup(request)
        if found is None:
            raise ProviderError(
                f"nothing recorded to replay for job kind {request.kind.name!r} with these "
                f"inputs at attempt {request.attempt}",
                hint="replay serves work that an earlier run recorded; run it once on a model "
                "tier first, or route this job kind to another tier",
                details={"provider": self.name, "status": 404},
            )
        return Generation(
            files=dict(found.files),
            provider=self.name,
            model=f"{found.provider}/{found.model} from {found.task_id}#{found.attempt}",
            reply=found.reply,
            finish_reason=found.finish_reason,
        )


def _words(text: str) -> str:
    return " ".join(text.split())


def recorded_replies(folder: Path) -> Callable[[GenerationRequest], Recorded | None]:
    """A look-up of the replies recorded in ``folder/*.toml`` for a request's goal: the
    reply with the highest attempt number not above the request's. A file that is not valid
    TOML, or a reply without a goal or text, is a ConfigError naming it."""
    if not folder.is_dir():
        raise ConfigError(
            f"recorded replies: {folder} is not a folder",
            hint="point the tier's recorded key at a folder of .toml files of [[reply]] tables",
        )
    by_goal: dict[str, list[tuple[int, Recorded]]] = {}
    for path in sorted(folder.glob("*.toml")):
        try:
            entries = tomllib.loads(path.read_text(encoding="utf-8")).get("reply", [])
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}", hint="fix the syntax") from exc
        for number, entry in enumerate(entries, start=1):
            goal, text = entry.get("goal"), entry.get("text")
            if not isinstance(goal, str) or not isinstance(text, str) or not goal.strip():
                raise ConfigError(
                    f"{path}: reply {number} needs a goal and a text (strings)",
                    hint='each [[reply]] has goal = "...", attempt = N, text = """..."""',
                )
            attempt = int(entry.get("attempt", 1))
            recorded = Recorded(
                task_id=f"{path.name}#{number}",
                attempt=attempt,
                provider="recorded",
                model=str(entry.get("model", "recorded")),
                files={},
                reply=text,
            )
            by_goal.setdefault(_words(goal), []).append((attempt, recorded))

    def lookup(request: GenerationRequest) -> Recorded | None:
        found = [r for n, r in by_goal.get(_words(request.goal), []) if n <= request.attempt]
        return max(found, key=lambda r: r.attempt) if found else None

    return lookup


def first_of(
    *lookups: Callable[[GenerationRequest], Recorded | None],
) -> Callable[[GenerationRequest], Recorded | None]:
    """The first look-up's answer that is not None."""

    def lookup(request: GenerationRequest) -> Recorded | None:
        for each in lookups:
            found = each(request)
            if found is not None:
                return found
        return None

    return lookup
