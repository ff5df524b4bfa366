"""Generation: providers behind one protocol, prompt rendering, provider look-up.

Without a model configured, Shipyard uses the ``template`` provider (offline, deterministic).
"""

from __future__ import annotations

from shipyard.generate._cost import Cost, price_call
from shipyard.generate._prompt import prompt_hash, render_prompt
from shipyard.generate._provider import Generation, GenerationRequest, Provider
from shipyard.generate._registry import ENTRY_POINT_GROUP, load_provider
from shipyard.generate._reply import REPLY_FORMAT, parse_files
from shipyard.generate._templates import render, slugify

__all__ = [
    "ENTRY_POINT_GROUP",
    "REPLY_FORMAT",
    "Cost",
    "Generation",
    "GenerationRequest",
    "Provider",
    "load_provider",
    "parse_files",
    "price_call",
    "prompt_hash",
    "render",
    "render_prompt",
    "slugify",
]
