"""The ``openai`` provider: one Chat Completions call per attempt, the reply parsed into files.

It speaks the OpenAI wire format, so it works with OpenAI itself and with any server that
offers ``/v1/chat/completions``: Ollama, vLLM, the llama.cpp server, LM Studio (point
``base_url`` at the server's ``/v1``). Local servers need no key: with a
``base_url`` and no key in the environment, a placeholder is sent.

The system message is :data:`~shipyard.generate.REPLY_FORMAT`; the user message is the
rendered prompt (which already carries the repair loop's findings). The SDK's own retries are
off: a failed call raises :class:`~shipyard.errors.ProviderError` and the generate stage
decides what happens next (``tries_per_call``, then the router's fallbacks), so one policy
governs every provider. A reply that
does not hold the job kind's files raises :class:`~shipyard.errors.MalformedReply`, which the
generate stage records as a failed attempt and feeds back to the next one.

Every SDK exception is translated here, at the boundary; none leaves this module. The API key
is read from the variable that ``[tiers.NAME] api_key_env`` names (default
``OPENAI_API_KEY``), in the environment or the project's secrets file, and never appears in
an error message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NoReturn

import openai

from shipyard.config import TierSettings
from shipyard.errors import ConfigError, MalformedReply, ProviderError
from shipyard.generate._provider import Generation, GenerationRequest
from shipyard.generate._reply import REPLY_FORMAT
from shipyard.generate.providers._common import (
    display_url as _display_url,
)
from shipyard.generate.providers._common import (
    failure_details,
    generation_from_reply,
    read_key,
    retry_after,
    scrub,
    status_hint,
    tokens,
)

__all__ = ["DEFAULT_API_KEY_ENV", "NO_KEY_PLACEHOLDER", "OpenAIProvider"]

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
NO_KEY_PLACEHOLDER = "sk-no-key-required"
"""Sent to a local server (``base_url`` set) when no key is in the environment."""
_BODY_EXCERPT = 2000
"""How much of an unreadable response body a MalformedReply keeps for the record."""
_RETRY_HINT = "the next attempt asks again; check the tier's base_url if it persists"


class OpenAIProvider:
    """OpenAI, or any server speaking the Chat Completions API, as a generator."""

    name = "openai"

    def __init__(self, settings: TierSettings, *, secrets: Mapping[str, str] = {}) -> None:
        if not settings.model:
            raise ConfigError(
                "key 'model' is required for the openai provider",
                hint='set e.g. model = "gpt-4.1-mini" (or your local server\'s model name) '
                "in the tier's table",
            )
        variable = settings.api_key_env or DEFAULT_API_KEY_ENV
        key = read_key(variable, secrets)
        if not key and not settings.base_url:
            raise ConfigError(
                f"the openai provider needs an API key in ${variable}, which is not set",
                hint=f"export {variable}=... (or name another variable with "
                "the tier's api_key_env; a local server needs the tier's base_url and no key)",
                details={"api_key_env": variable},
            )
        self.settings = settings
        self.model = settings.model
        self._key_env = variable
        self._key = key
        self._client = openai.OpenAI(
            base_url=settings.base_url or None,
            api_key=key or NO_KEY_PLACEHOLDER,
            timeout=settings.timeout_seconds,
            max_retries=0,
        )
        self._where = _display_url(str(self._client.base_url))

    def generate(self, request: GenerationRequest) -> Generation:
        completion = self._call(request)
        if isinstance(completion, str):
            # The SDK hands back the text of a body that is not typed as JSON.
            raise MalformedReply(
                f"the Chat Completions API at {self._where} answered with a body that is not JSON",
                hint=_RETRY_HINT,
                details=self._details(reply=self._scrub(completion[:_BODY_EXCERPT])),
            )
        usage = getattr(completion, "usage", None)
        model = getattr(completion, "model", None)
        details = self._details(
            model=model if isinstance(model, str) and model else self.model,
            input_tokens=tokens(usage, "prompt_tokens"),
            output_tokens=tokens(usage, "completion_tokens"),
        )
        choices = getattr(completion, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise MalformedReply(
                f"the Chat Completions API at {self._where} answered without any choices",
                hint=_RETRY_HINT,
                details=details,
            )
        choice = choices[0]
        finish_reason = getattr(choice, "finish_reason", None)
        details["finish_reason"] = finish_reason if isinstance(finish_reason, str) else ""
        content = getattr(getattr(choice, "message", None), "content", None)
        details["reply"] = text = content if isinstance(content, str) else ""
        return generation_from_reply(text, request, details, self._hint)

    def _hint(self, finish_reason: str, hint: str) -> str:
        if finish_reason == "length":
            return (
                f"the reply was cut off at max_tokens={self.settings.max_tokens}: raise max_tokens"
            )
        if finish_reason == "content_filter":
            return "the server's content filter withheld the reply; check the job kind's prompt"
        return hint

    def _call(self, request: GenerationRequest) -> object:
        """The parsed response (or its text); every SDK failure leaves as a ProviderError."""
        try:
            return self._client.chat.completions.create(
                model=self.model,
                messages=[
                    {"role": "system", "content": REPLY_FORMAT},
                    {"role": "user", "content": request.prompt},
                ],
                max_tokens=self.settings.max_tokens,
                temperature=self.settings.temperature,
            )
        except json.JSONDecodeError as exc:
            # The SDK decodes a JSON-typed body itself and lets the decoder's error through.
            raise MalformedReply(
                f"the Chat Completions API at {self._where} answered with invalid JSON: "
                f"{exc.msg} at char {exc.pos}",
                hint=_RETRY_HINT,
                details=self._details(reply=self._scrub(exc.doc[:_BODY_EXCERPT])),
            ) from exc
        except openai.APIError as exc:
            self._translate(exc)
        except openai.OpenAIError as exc:
            raise ProviderError(
                f"the openai SDK failed: {type(exc).__name__}: {self._scrub(str(exc))}"
            ) from exc

    def _translate(self, exc: openai.APIError) -> NoReturn:
        if isinstance(exc, openai.APITimeoutError):
            raise ProviderError(
                f"the Chat Completions API at {self._where} timed out after "
                f"{self.settings.timeout_seconds:g} s",
                hint="raise the tier's timeout_seconds, or lower its max_tokens",
                details={"timeout_seconds": self.settings.timeout_seconds},
            ) from exc
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            raise ProviderError(
                f"cannot reach the Chat Completions API at {self._where}"
                + (f": {self._scrub(str(cause))}" if cause else ""),
                hint="check that the server is running and the tier's base_url",
                details={"base_url": self._where},
            ) from exc
        if isinstance(exc, openai.APIStatusError):
            self._status_error(exc)
        # An APIError with neither a status nor a connection problem: a body the SDK could
        # not fit into a ChatCompletion.
        raise MalformedReply(
            f"the Chat Completions API's response could not be read: {self._scrub(exc.message)}",
            hint=_RETRY_HINT,
            details=self._details(),
        ) from exc

    def _status_error(self, exc: openai.APIStatusError) -> NoReturn:
        status = exc.status_code
        details: dict[str, Any] = {"status": status}
        if exc.request_id:
            details["request_id"] = exc.request_id
        if isinstance(exc, openai.RateLimitError):
            wait = retry_after(exc.response.headers)
            if wait is not None:
                details["retry_after"] = wait
        said = _api_message(exc.body)
        raise ProviderError(
            f"the Chat Completions API at {self._where} answered HTTP {status} for model "
            f"{self.model!r}" + (f": {self._scrub(said)}" if said else ""),
            hint=self._status_hint(status),
            details=details,
        ) from exc

    def _scrub(self, text: str) -> str:
        return scrub(text, self._key)

    def _details(self, **known: Any) -> dict[str, Any]:
        return failure_details(self.name, self.model, **known)

    def _status_hint(self, status: int) -> str:
        return status_hint(status, key_env=self._key_env, key_set=bool(self._key))


def _api_message(body: object) -> str:
    """The ``message`` of an error body (the SDK has already unwrapped ``{"error": ...}``)."""
    if isinstance(body, dict):
        message = body.get("message")
        return message if isinstance(message, str) else ""
    return body[:200] if isinstance(body, str) else ""
