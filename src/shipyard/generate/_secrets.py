"""API keys from a secrets file: ``KEY=VALUE`` lines beside the environment, never in config.

``[generate] secrets_file`` names the file (relative to shipyard.toml). A key in the
environment wins over the file. The file must be readable by its owner only (mode 600), as
ssh insists for private keys: a key that others can read is not a secret.
"""

from __future__ import annotations

import stat
from pathlib import Path

from shipyard.errors import ConfigError

__all__ = ["read_secrets"]


def read_secrets(path: Path | None) -> dict[str, str]:
    """The file's variables; empty when no file is configured."""
    if path is None:
        return {}
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path}: the secrets file named by generate.secrets_file does not exist",
            hint="create it (KEY=VALUE lines, chmod 600) or remove generate.secrets_file",
        ) from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path}: the secrets file is open to other users (mode {stat.filemode(mode)})",
            hint=f"chmod 600 {path}",
        )
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not name.isidentifier():
            raise ConfigError(
                f"{path}:{number}: expected NAME=VALUE",
                hint="one variable per line, e.g. OPENAI_API_KEY=sk-...; '#' starts a comment",
            )
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[name] = value
    return found
