"""Generation: providers behind one protocol, the tier router, budgets, cost, prompts.

Without a model configured, Shipyard uses the ``template`` tier (offline, deterministic).
"""

from __future__ import annotations

from shipyard.generate._cost import Cost, price_call
from shipyard.generate._fallback import Admission, TierWalk, Walked
from shipyard.generate._prompt import prompt_hash, render_prompt
from shipyard.generate._provider import Generation, GenerationRequest, Provider
from shipyard.generate._registry import ENTRY_POINT_GROUP, installed_providers, load_provider
from shipyard.generate._reply import REPLY_FORMAT, parse_files
from shipyard.generate._retry import RetryPolicy, call_with_retries
from shipyard.generate._router import FREE_PROVIDERS, Breaker, Limit, Plan, Rate, Router, Spend
from shipyard.generate._secrets import read_secrets
from shipyard.generate._templates import render, slugify
from shipyard.generate.providers.command import CommandProvider
from shipyard.generate.providers.replay import (
    Recorded,
    ReplayProvider,
    first_of,
    recorded_replies,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "FREE_PROVIDERS",
    "REPLY_FORMAT",
    "Admission",
    "Breaker",
    "CommandProvider",
    "Cost",
    "Generation",
    "GenerationRequest",
    "Limit",
    "Plan",
    "Provider",
    "Rate",
    "Recorded",
    "ReplayProvider",
    "RetryPolicy",
    "Router",
    "Spend",
    "TierWalk",
    "Walked",
    "call_with_retries",
    "first_of",
    "installed_providers",
    "load_provider",
    "parse_files",
    "price_call",
    "prompt_hash",
    "read_secrets",
    "recorded_replies",
    "render",
    "render_prompt",
    "slugify",
]
