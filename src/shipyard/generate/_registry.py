"""Provider look-up by name, from the ``shipyard.providers`` entry points."""

from __future__ import annotations

from importlib.metadata import entry_points

from shipyard.config import GenerateSettings
from shipyard.errors import ConfigError
from shipyard.generate._provider import Provider

__all__ = ["ENTRY_POINT_GROUP", "load_provider"]

ENTRY_POINT_GROUP = "shipyard.providers"


def load_provider(settings: GenerateSettings) -> Provider:
    """Instantiate the provider that ``[generate] provider`` names, with its settings."""
    name = settings.provider
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in found:
        raise ConfigError(
            f"shipyard.toml: key 'generate.provider': no provider named {name!r}",
            hint=f"installed providers: {', '.join(sorted(found)) or '(none)'}",
        )
    provider = found[name].load()(settings)
    if not isinstance(provider, Provider):
        raise ConfigError(
            f"provider {name!r} ({found[name].value}) does not implement the Provider protocol",
            hint="it needs a `name` attribute and a `generate(request)` method",
        )
    return provider
