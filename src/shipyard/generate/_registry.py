"""Provider look-up by name, from the ``shipyard.providers`` entry points.

A provider's factory is called as ``factory(settings, secrets=...)``: its tier's settings and
the secrets file's variables (for API keys the environment does not hold).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points

from shipyard.config import TierSettings
from shipyard.errors import ConfigError
from shipyard.generate._provider import Provider

__all__ = ["ENTRY_POINT_GROUP", "installed_providers", "load_provider"]

ENTRY_POINT_GROUP = "shipyard.providers"


def installed_providers() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_provider(
    settings: TierSettings, *, tier: str = "template", secrets: Mapping[str, str] = {}
) -> Provider:
    """Instantiate the provider that ``[tiers.TIER] provider`` names, with its settings."""
    name = settings.provider
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in found:
        raise ConfigError(
            f"shipyard.toml: key 'tiers.{tier}.provider': no provider named {name!r}",
            hint=f"known providers: {', '.join(sorted([*found, 'replay']))}",
        )
    try:
        provider = found[name].load()(settings, secrets=secrets)
    except ConfigError as exc:
        raise ConfigError(
            f"shipyard.toml: tier {tier!r}: {exc.message}", hint=exc.hint, details=exc.details
        ) from exc
    if not isinstance(provider, Provider):
        raise ConfigError(
            f"provider {name!r} ({found[name].value}) does not implement the Provider protocol",
            hint="it needs a `name` attribute and a `generate(request)` method",
        )
    return provider
