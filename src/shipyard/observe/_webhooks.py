"""What a notification looks like on the wire: a CloudEvent in JSON, signed as a Standard
Webhook.

The body is one CloudEvents 1.0 event in the JSON format, sent in the HTTP binding's
structured mode (``Content-Type: application/cloudevents+json; charset=utf-8``): the
attributes ``specversion``, ``id``, ``source``, ``type``, ``subject``, ``time`` and
``datacontenttype`` beside ``data``. The headers follow the Standard Webhooks specification:
``webhook-id`` (the event's id, the same on every attempt), ``webhook-timestamp`` (Unix
seconds of this attempt) and ``webhook-signature`` (``v1,`` and the base64 HMAC-SHA256 of
``ID.TIMESTAMP.BODY`` under the endpoint's secret). :func:`verify_webhook` is the receiver's
half, for Python receivers and the tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shipyard.errors import ConfigError, InputError

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_TOLERANCE_SECONDS",
    "SPECVERSION",
    "cloudevent",
    "encode",
    "new_secret",
    "sign",
    "signing_key",
    "verify_webhook",
    "webhook_headers",
]

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
"""The structured mode's media type for the JSON event format."""
SPECVERSION = "1.0"
DEFAULT_TOLERANCE_SECONDS = 300.0
"""How far a delivery's ``webhook-timestamp`` may be from the receiver's clock (5 minutes)."""
SECRET_PREFIX = "whsec_"
_REQUIRED = ("specversion", "id", "source", "type")
_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def new_secret() -> str:
    """A fresh endpoint secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def signing_key(secret: str, *, name: str = "the webhook secret") -> bytes:
    """The HMAC key a Standard Webhooks secret stands for: the bytes its base64 encodes
    (after an optional ``whsec_`` prefix), 24 to 64 of them.

    ``name`` says where the secret came from in the error (e.g. the variable's name).
    """
    text = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not 24 <= len(key) <= 64:
        raise ConfigError(
            f"{name} is not a webhook secret: it must be whsec_ followed by the base64 of "
            "24 to 64 random bytes",
            hint='make one with: python -c "import base64, secrets; '
            "print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\"",
        )
    return key


def cloudevent(
    *, id: str, source: str, type: str, subject: str, time: datetime, data: Mapping[str, Any]
) -> dict[str, Any]:
    """The event in the CloudEvents JSON format (attributes first, then ``data``)."""
    return {
        "specversion": SPECVERSION,
        "id": id,
        "source": source,
        "type": type,
        "subject": subject,
        "time": _rfc3339(time),
        "datacontenttype": "application/json",
        "data": dict(data),
    }


def encode(event: Mapping[str, Any]) -> bytes:
    """The body as sent (and signed): compact UTF-8 JSON."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` and the base64 HMAC-SHA256 of ``ID.TIMESTAMP.BODY``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def webhook_headers(
    key: bytes, webhook_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (its timestamp: now, unless given)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(key, webhook_id, stamp, body),
    }


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | bytes,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """Check one delivery as a receiver must, and return its CloudEvent.

    ``body`` is the request's raw bytes (not JSON parsed and dumped again: the signature is
    over the bytes); ``headers`` its headers (any case); ``secret`` the endpoint's
    ``whsec_...`` secret or its key bytes. Raises :class:`~shipyard.errors.InputError`,
    saying which, when a header is missing, the timestamp is further than
    ``tolerance_seconds`` from ``now`` (a replay), no ``v1`` signature matches (a wrong
    secret, or a body altered on the way), or the body is not a CloudEvents 1.0 event whose
    ``id`` is the ``webhook-id``. Deduplicate on the returned event's ``id``: a delivery can
    arrive more than once.
    """
    key = secret if isinstance(secret, bytes) else signing_key(secret)
    found = {name.lower(): value for name, value in headers.items()}
    missing = [h for h in _HEADERS if h not in found]
    if missing:
        raise InputError(
            f"not a signed delivery: no {', '.join(missing)} header",
            hint="Shipyard signs every delivery with webhook-id, webhook-timestamp and "
            "webhook-signature headers",
        )
    webhook_id, stamp = found["webhook-id"], found["webhook-timestamp"]
    try:
        timestamp = int(stamp)
    except ValueError:
        raise InputError(f"webhook-timestamp {stamp!r} is not Unix seconds") from None
    drift = (time.time() if now is None else now) - timestamp
    if abs(drift) > tolerance_seconds:
        raise InputError(
            f"webhook-timestamp is {abs(drift):.0f} s in the "
            f"{'past' if drift > 0 else 'future'} (tolerance {tolerance_seconds:g} s)",
            hint="a replayed delivery, or a clock that is off: check both machines' time",
        )
    expected = sign(key, webhook_id, timestamp, body).encode()
    offered = [s.encode() for s in found["webhook-signature"].split() if s.startswith("v1,")]
    if not any(hmac.compare_digest(expected, s) for s in offered):
        raise InputError(
            "the webhook signature does not match",
            hint="check that the receiver has the endpoint's secret (secret_env) and reads "
            "the raw body",
        )
    return _event(body, webhook_id)


def _event(body: bytes, webhook_id: str) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"the body is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise InputError("the body is not a CloudEvent (a JSON object)")
    absent = [name for name in _REQUIRED if not event.get(name)]
    if absent:
        raise InputError(f"the CloudEvent lacks {', '.join(absent)}")
    if event["specversion"] != SPECVERSION:
        raise InputError(f"CloudEvents specversion {event['specversion']!r}, expected 1.0")
    if event["id"] != webhook_id:
        raise InputError(f"the event's id {event['id']!r} is not the webhook-id {webhook_id!r}")
    return event


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
