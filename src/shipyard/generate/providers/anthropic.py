"""The ``anthropic`` provider: one Messages API call per attempt, the reply parsed into files.

The system prompt is :data:`~shipyard.generate.REPLY_FORMAT`; the user message is the
rendered prompt (which already carries the repair feedback). The SDK's own retries are off:
a failed call raises :class:`~shipyard.errors.ProviderError` and the generate stage's durable
retries decide what happens next, so one policy governs every provider.

Every SDK exception is translated here, at the boundary; none leaves this module. The API
key is read from the environment variable that ``[tiers.NAME] api_key_env`` names and never
appears in an error message.

The tier's ``temperature`` is not sent: the installed SDK (2.x) has no sampling parameters,
and the API version it speaks rejects them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NoReturn

import anthropic

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

__all__ = ["DEFAULT_API_KEY_ENV", "AnthropicProvider"]

DEFAULT_API_KEY_ENV = "ANTHROPIC_API_KEY"
_BODY_EXCERPT = 2000
"""How much of an unparseable response body a MalformedReply keeps for the record."""
_CUT_OFF = {"max_tokens", "model_context_window_exceeded"}


class AnthropicProvider:
    """Claude (or any server speaking the Messages API) as a generator."""

    name = "anthropic"

    def __init__(self, settings: TierSettings, *, secrets: Mapping[str, str] = {}) -> None:
        if not settings.model:
            raise ConfigError(
                "key 'model' is required for the anthropic provider",
                hint='set e.g. model = "claude-sonnet-4-5" in the tier\'s table',
            )
        variable = settings.api_key_env or DEFAULT_API_KEY_ENV
        key = read_key(variable, secrets)
        if not key:
            raise ConfigError(
                f"the anthropic provider needs an API key in ${variable}, which is not set",
                hint=f"export {variable}=... (or name another variable with the tier's "
                "api_key_env, or put it in generate.secrets_file)",
                details={"api_key_env": variable},
            )
        self.settings = settings
        self.model = settings.model
        self._key = key
        self._client = anthropic.Anthropic(
            api_key=key,
            base_url=settings.base_url or None,
            timeout=settings.timeout_seconds,
            max_retries=0,
        )

    def generate(self, request: GenerationRequest) -> Generation:
        message = self._call(request)
        if isinstance(message, str):
            # The SDK hands back the text of a body that is not typed as JSON.
            raise MalformedReply(
                "the Messages API's response is not JSON",
                hint="the next attempt asks again; check the tier's base_url if it persists",
                details=self._details(reply=self._scrub(message[:_BODY_EXCERPT])),
            )
        content = getattr(message, "content", None)
        usage = getattr(message, "usage", None)
        model = getattr(message, "model", None)
        stop_reason = getattr(message, "stop_reason", None)
        details = self._details(
            model=model if isinstance(model, str) and model else self.model,
            input_tokens=tokens(usage, "input_tokens"),
            output_tokens=tokens(usage, "output_tokens"),
            finish_reason=stop_reason if isinstance(stop_reason, str) else "",
        )
        if not isinstance(content, list) or not content:
            raise MalformedReply(
                "the Messages API answered without any content"
                + (f" (stop_reason {stop_reason!r})" if details["finish_reason"] else ""),
                hint=self._hint(details["finish_reason"], "the next attempt asks again"),
                details=details,
            )
        details["reply"] = text = "".join(
            block.text
            for block in content
            if getattr(block, "type", None) == "text" and isinstance(block.text, str)
        )
        return generation_from_reply(text, request, details, self._hint)

    def _hint(self, finish_reason: str, hint: str) -> str:
        if finish_reason in _CUT_OFF:
            return (
                f"the reply was cut off ({finish_reason}) at max_tokens="
                f"{self.settings.max_tokens}: raise max_tokens"
            )
        if finish_reason == "refusal":
            return "the model declined to answer; check the job kind's prompt"
        return hint

    def _call(self, request: GenerationRequest) -> object:
        """The raw response object; every SDK failure leaves as a ProviderError."""
        try:
            return self._client.messages.create(
                model=self.model,
                max_tokens=self.settings.max_tokens,
                system=REPLY_FORMAT,
                messages=[{"role": "user", "content": request.prompt}],
            )
        except json.JSONDecodeError as exc:
            # The SDK decodes a JSON-typed body itself and lets the decoder's error through.
            raise MalformedReply(
                f"the Messages API's response is not valid JSON: {exc.msg} at char {exc.pos}",
                hint="the next attempt asks again; check the tier's base_url if it persists",
                details=self._details(reply=self._scrub(exc.doc[:_BODY_EXCERPT])),
            ) from exc
        except anthropic.APIError as exc:
            self._translate(exc)
        except anthropic.AnthropicError as exc:
            raise ProviderError(
                f"the anthropic SDK failed: {type(exc).__name__}: {self._scrub(str(exc))}"
            ) from exc

    def _translate(self, exc: anthropic.APIError) -> NoReturn:
        where = _display_url(str(self._client.base_url))
        if isinstance(exc, anthropic.APITimeoutError):
            raise ProviderError(
                f"the Messages API at {where} timed out after {self.settings.timeout_seconds:g} s",
                hint="raise the tier's timeout_seconds, or lower its max_tokens",
                details={"timeout_seconds": self.settings.timeout_seconds},
            ) from exc
        if isinstance(exc, anthropic.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            raise ProviderError(
                f"cannot reach the Messages API at {where}"
                + (f": {self._scrub(str(cause))}" if cause else ""),
                hint="check the network and the tier's base_url",
            ) from exc
        if isinstance(exc, anthropic.APIStatusError):
            self._status_error(exc)
        # An APIError with neither a status nor a connection problem: a body the SDK could
        # not fit into a Message.
        raise MalformedReply(
            f"the Messages API's response could not be read: {self._scrub(exc.message)}",
            hint="the next attempt asks again",
            details=self._details(),
        ) from exc

    def _status_error(self, exc: anthropic.APIStatusError) -> NoReturn:
        status = exc.status_code
        details: dict[str, Any] = {"status": status}
        error = exc.body.get("error") if isinstance(exc.body, dict) else None
        api_message = error.get("message") if isinstance(error, dict) else None
        request_id = exc.response.headers.get("request-id")
        if request_id:
            details["request_id"] = request_id
        if isinstance(exc, anthropic.RateLimitError):
            wait = retry_after(exc.response.headers)
            if wait is not None:
                details["retry_after"] = wait
        said = f": {self._scrub(str(api_message))}" if api_message else ""
        raise ProviderError(
            f"the Messages API answered HTTP {status} for model {self.model!r}{said}",
            hint=status_hint(
                status,
                key_env=self.settings.api_key_env or DEFAULT_API_KEY_ENV,
                key_set=bool(self._key),
            ),
            details=details,
        ) from exc

    def _scrub(self, text: str) -> str:
        return scrub(text, self._key)

    def _details(self, **known: Any) -> dict[str, Any]:
        return failure_details(self.name, self.model, **known)
