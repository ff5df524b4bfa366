"""The ``replay`` provider: the generation recorded for the same work in an earlier run.

It calls no model and spends nothing: it hands back the files (and raw reply) that an
earlier task of the same job kind with the same inputs produced at the same attempt number,
so a run can be repeated under a new policy, new checks or a new prompt with the model's
output held fixed. Where nothing was recorded it fails like an unavailable service, and the
router falls back down the chain.

The look-up into Shipyard's records is supplied by the orchestrator (this package does not
read the store).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shipyard.errors import ProviderError
from shipyard.generate._provider import Generation, GenerationRequest

__all__ = ["Recorded", "ReplayProvider"]


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
