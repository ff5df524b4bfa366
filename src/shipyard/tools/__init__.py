"""Tools: actions with effects outside Shipyard, each with a capability policy checks, an
idempotency key, and (where it can) a compensation. The orchestrator journals every call.
"""

from __future__ import annotations

from shipyard.tools._builtin import GitPushTool, HttpTool, PublishTool, push_environment
from shipyard.tools._tool import Tool

__all__ = ["GitPushTool", "HttpTool", "PublishTool", "Tool", "push_environment"]
