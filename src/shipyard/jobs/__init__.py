"""Job kinds: input schema, prompt and code templates, checks, release target, risk.

Inputs are validated here, at the door, before any workflow starts.
"""

from __future__ import annotations

from shipyard.jobs._inputs import (
    BatchRow,
    inputs_hash,
    kept_of_refused,
    read_batch,
    validate_inputs,
)
from shipyard.jobs._kind import (
    CheckSpec,
    EffectSpec,
    JobKind,
    ProbeSpec,
    ReleaseSpec,
    load_job_kind,
)
from shipyard.jobs._registry import ENTRY_POINT_GROUP, JobRegistry
from shipyard.jobs._repo_change import (
    CHANGE_FILES,
    REPO_CHANGE,
    is_repo_change,
    repo_change_kind,
    repo_of,
    repo_target,
)

__all__ = [
    "CHANGE_FILES",
    "ENTRY_POINT_GROUP",
    "REPO_CHANGE",
    "BatchRow",
    "CheckSpec",
    "EffectSpec",
    "JobKind",
    "JobRegistry",
    "ProbeSpec",
    "ReleaseSpec",
    "inputs_hash",
    "is_repo_change",
    "kept_of_refused",
    "load_job_kind",
    "read_batch",
    "repo_change_kind",
    "repo_of",
    "repo_target",
    "validate_inputs",
]
