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

__all__ = [
    "ENTRY_POINT_GROUP",
    "BatchRow",
    "CheckSpec",
    "EffectSpec",
    "JobKind",
    "JobRegistry",
    "ProbeSpec",
    "ReleaseSpec",
    "inputs_hash",
    "kept_of_refused",
    "load_job_kind",
    "read_batch",
    "validate_inputs",
]
