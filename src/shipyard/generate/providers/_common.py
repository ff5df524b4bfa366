"""What the HTTP model providers share: failure details, usage, Retry-After, hints, scrubbing."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shipyard.errors import MalformedReply
from shipyard.generate._provider import Generation, GenerationRequest
from shipyard.generate._reply import parse_files

__all__ = [
    "display_url",
    "failure_details",
    "generation_from_reply",
    "read_key",
    "retry_after",
    "scrub",
    "status_hint",
    "tokens",
]


def failure_details(provider: str, model: str, /, **known: Any) -> dict[str, Any]:
    """What the generate stage records of a failed attempt (see MalformedReply)."""
    return {
        "provider": provider,
        "model": model,
        "reply": "",
        "input_tokens": 0,
        "output_tokens": 0,
        "finish_reason": "",
    } | known


def generation_from_reply(
    text: str,
    request: GenerationRequest,
    details: dict[str, Any],
    hint: Callable[[str, str], str],
) -> Generation:
    """The job kind's files parsed from ``text`` (none for a reply of edits, which the caller
    applies), or a MalformedReply carrying ``details``.

    ``details`` holds what the call cost and how it ended (see :func:`failure_details`);
    ``hint(finish_reason, default)`` lets the provider explain a cut-off or refused reply.
    """
    if request.reply_format == "edits" and not text.strip():
        raise MalformedReply(
            "the model's reply is empty",
            hint=hint(details["finish_reason"], "the next attempt asks again"),
            details=details,
        )
    try:
        # Edits to a repository are parsed and applied by the caller, against the copy.
        files = (
            {}
            if request.reply_format == "edits"
            else parse_files(text, sorted(request.kind.outputs))
        )
    except MalformedReply as exc:
        raise MalformedReply(
            exc.message, hint=hint(details["finish_reason"], exc.hint), details=details
        ) from exc
    return Generation(
        files=files,
        provider=details["provider"],
        model=details["model"],
        input_tokens=details["input_tokens"],
        output_tokens=details["output_tokens"],
        reply=text,
        finish_reason=details["finish_reason"],
    )


def tokens(usage: object, field: str) -> int:
    """A token count from a response's usage object; 0 when absent or not an integer."""
    value = getattr(usage, field, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def retry_after(headers: Any) -> float | int | None:
    """Seconds to wait per ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``."""
    header = headers.get("retry-after")
    seconds: float | None = None
    if header:
        try:
            seconds = float(header)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(header).timestamp() - time.time()
            except (TypeError, ValueError):
                seconds = None
    if seconds is None and (millis := headers.get("retry-after-ms")):
        try:
            seconds = float(millis) / 1000
        except ValueError:
            seconds = None
    if seconds is None or not math.isfinite(seconds):
        return None
    seconds = max(seconds, 0.0)
    return int(seconds) if seconds.is_integer() else seconds


def status_hint(status: int, *, key_env: str, key_set: bool) -> str:
    """What to do about an HTTP error status from a model API."""
    if status in (401, 403):
        if not key_set:
            return (
                f"the server wants an API key and ${key_env} is not set: export it "
                "(or name another variable with the tier's api_key_env)"
            )
        return f"the server refused the key in ${key_env}; check it"
    if status == 404:
        return "no such model or endpoint; check the tier's model and the tier's base_url"
    if status == 429:
        return "rate limited; the generate stage retries the call"
    if status == 529:
        return "the API is overloaded; the generate stage retries the call"
    if status >= 500:
        return "a failure on the server's side; the generate stage retries the call"
    return "the server rejected the request; check the tier's model and max_tokens"


def scrub(text: str, key: str) -> str:
    """``text`` with the API key blanked out, in case a server or library echoed it."""
    return text.replace(key, "[redacted]") if key else text


def read_key(variable: str, secrets: Mapping[str, str]) -> str:
    """The API key in ``$variable``, else in the project's secrets file; empty when neither."""
    return os.environ.get(variable, "").strip() or secrets.get(variable, "").strip()


def display_url(url: str) -> str:
    """``url`` without any user name or password it may carry (for messages)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url.rstrip("/")
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=host)).rstrip("/")
