"""The anthropic provider against a local server speaking the Messages API over real HTTP."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from generate._fake_anthropic import FakeAnthropic
from shipyard.config import TierSettings
from shipyard.errors import ConfigError, MalformedReply, ProviderError, ShipyardError, to_dict
from shipyard.generate import REPLY_FORMAT, GenerationRequest, Provider
from shipyard.generate.providers.anthropic import AnthropicProvider
from shipyard.jobs import JobKind, load_job_kind

KEY_ENV = "SHIPYARD_TEST_ANTHROPIC_KEY"
KEY = "sk-ant-test-0123456789abcdef"
MODEL = "claude-haiku-5-5"

GOOD_REPLY = """\
Here you go.

### FILE: app.py
```python
print("hi")
```

### FILE: index.html
```html
<h1>mug</h1>
```
"""


def make_kind(root: Path) -> JobKind:
    """A job kind with two outputs, loaded from a real folder."""
    folder = root / "widget"
    folder.mkdir()
    (folder / "job.toml").write_text(
        'name = "widget"\n'
        'input_key = "sku"\n'
        'outputs = { "index.html" = "page.html.j2", "app.py" = "app.py.j2" }\n'
        'checks = [{ name = "html" }]\n',
        encoding="utf-8",
    )
    (folder / "input.schema.json").write_text(
        json.dumps({"type": "object", "properties": {"sku": {"type": "string"}}}),
        encoding="utf-8",
    )
    (folder / "prompt.md.j2").write_text("Write {{ sku }}.\n", encoding="utf-8")
    (folder / "page.html.j2").write_text("<h1>{{ sku }}</h1>\n", encoding="utf-8")
    (folder / "app.py.j2").write_text("print({{ sku | tojson }})\n", encoding="utf-8")
    return load_job_kind(folder, domain="d")


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def job_request(tmp_path: Path) -> GenerationRequest:
    return GenerationRequest(
        task_id="t-1",
        kind=make_kind(tmp_path),
        inputs={"sku": "mug"},
        attempt=1,
        prompt="Write the mug page.",
    )


@pytest.fixture
def provider(fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> AnthropicProvider:
    monkeypatch.setenv(KEY_ENV, KEY)
    return AnthropicProvider(settings(fake, timeout_seconds=5))


def settings(fake: FakeAnthropic, **overrides: Any) -> TierSettings:
    values: dict[str, Any] = {
        "provider": "anthropic",
        "model": MODEL,
        "base_url": fake.url,
        "api_key_env": KEY_ENV,
        "max_tokens": 1234,
    }
    return TierSettings(**(values | overrides))


def assert_no_key(error: ShipyardError) -> None:
    assert KEY not in str(error)
    assert KEY not in json.dumps(to_dict(error), default=str)


def test_a_reply_becomes_files_with_usage_and_stop_reason(
    fake: FakeAnthropic, provider: AnthropicProvider, job_request: GenerationRequest
) -> None:
    fake.reply(GOOD_REPLY, model=MODEL, input_tokens=321, output_tokens=45)

    generation = provider.generate(job_request)

    assert isinstance(provider, Provider)
    assert generation.files == {"app.py": 'print("hi")\n', "index.html": "<h1>mug</h1>\n"}
    assert (generation.provider, generation.model) == ("anthropic", MODEL)
    assert (generation.input_tokens, generation.output_tokens) == (321, 45)
    assert generation.finish_reason == "end_turn"
    assert generation.reply == GOOD_REPLY
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.body == {
        "model": MODEL,
        "max_tokens": 1234,
        "system": REPLY_FORMAT,
        "messages": [{"role": "user", "content": "Write the mug page."}],
    }
    assert sent.headers["anthropic-version"]
    # SDK 0.x/1.x send the key as x-api-key, 2.x as a bearer token: either reaches the API.
    sent_keys = {sent.headers.get("x-api-key"), sent.headers.get("authorization")}
    assert sent_keys & {KEY, f"Bearer {KEY}"}


def test_text_blocks_are_joined_and_other_blocks_ignored(
    fake: FakeAnthropic, provider: AnthropicProvider, job_request: GenerationRequest
) -> None:
    head, tail = GOOD_REPLY[:40], GOOD_REPLY[40:]
    fake.reply(
        [
            {"type": "thinking", "thinking": "### FILE: nope.txt", "signature": "s"},
            {"type": "text", "text": head},
            {"type": "text", "text": tail},
        ]
    )

    generation = provider.generate(job_request)

    assert sorted(generation.files) == ["app.py", "index.html"]
    assert generation.reply == GOOD_REPLY


def test_rate_limit_carries_retry_after(
    fake: FakeAnthropic, provider: AnthropicProvider, job_request: GenerationRequest
) -> None:
    fake.error(
        429,
        "Number of request tokens has exceeded your per-minute rate limit",
        error_type="rate_limit_error",
        headers={"Retry-After": "7", "request-id": "req_abc"},
    )

    with pytest.raises(ProviderError) as caught:
        provider.generate(job_request)

    error = caught.value
    assert type(error) is ProviderError
    assert error.details["retry_after"] == 7
    assert error.details["status"] == 429
    assert error.details["request_id"] == "req_abc"
    assert "429" in error.message and "rate limit" in error.message
    assert len(fake.requests) == 1  # the SDK's own retries are off
    assert_no_key(error)


@pytest.mark.parametrize(
    ("status", "error_type"), [(500, "api_error"), (529, "overloaded_error"), (401, "auth")]
)
def test_an_error_status_is_a_provider_error_with_the_status(
    fake: FakeAnthropic,
    provider: AnthropicProvider,
    job_request: GenerationRequest,
    status: int,
    error_type: str,
) -> None:
    fake.error(status, f"{error_type} happened", error_type=error_type)

    with pytest.raises(ProviderError) as caught:
        provider.generate(job_request)

    error = caught.value
    assert type(error) is ProviderError
    assert error.details["status"] == status
    assert f"HTTP {status}" in error.message
    assert f"{error_type} happened" in error.message
    assert "retry_after" not in error.details
    assert isinstance(error.__cause__, Exception)
    assert len(fake.requests) == 1
    assert_no_key(error)


def test_a_refused_key_hint_names_the_variable_not_the_key(
    fake: FakeAnthropic, provider: AnthropicProvider, job_request: GenerationRequest
) -> None:
    fake.error(401, f"invalid x-api-key {KEY}", error_type="authentication_error")

    with pytest.raises(ProviderError) as caught:
        provider.generate(job_request)

    assert KEY_ENV in caught.value.hint
    assert "[redacted]" in caught.value.message
    assert_no_key(caught.value)


def test_a_slow_server_times_out(
    fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, job_request: GenerationRequest
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    provider = AnthropicProvider(settings(fake, timeout_seconds=0.5))
    fake.reply(GOOD_REPLY, delay=3.0)

    with pytest.raises(ProviderError) as caught:
        provider.generate(job_request)

    error = caught.value
    assert type(error) is ProviderError
    assert "timed out after 0.5 s" in error.message
    assert_no_key(error)


def test_an_unreachable_server_is_a_provider_error(
    monkeypatch: pytest.MonkeyPatch, job_request: GenerationRequest
) -> None:
    with FakeAnthropic() as gone:
        url = gone.url
    monkeypatch.setenv(KEY_ENV, KEY)
    provider = AnthropicProvider(
        TierSettings(provider="anthropic", model=MODEL, base_url=url, api_key_env=KEY_ENV)
    )

    with pytest.raises(ProviderError) as caught:
        provider.generate(job_request)

    assert type(caught.value) is ProviderError
    assert "cannot reach" in caught.value.message
    assert_no_key(caught.value)


def test_a_body_that_is_not_json_is_a_malformed_reply(
    fake: FakeAnthropic, provider: AnthropicProvider, job_request: GenerationRequest
) -> None:
    fake.raw(200, b'{"id": "msg_1", "content": [')

    with pytest.raises(MalformedReply) as caught:
        provider.generate(job_request)

    assert "not valid JSON" in caught.value.message
    assert caught.value.details["provider"] == "anthropic"
    assert caught.value.details["reply"] == '{"id": "msg_1", "content": ['
    assert_no_key(caught.value)


def test_a_body_of_another_content_type_is_a_malformed_reply(
    fake: FakeAnthropic, provider: AnthropicProvider, job_request: GenerationRequest
) -> None:
    fake.raw(200, b"<html>gateway says hello</html>", content_type="text/html")

    with pytest.raises(MalformedReply) as caught:
        provider.generate(job_request)

    assert "not JSON" in caught.value.message
    assert "gateway says hello" in caught.value.details["reply"]


def test_an_empty_content_list_is_a_malformed_reply(
    fake: FakeAnthropic, provider: AnthropicProvider, job_request: GenerationRequest
) -> None:
    fake.reply([], stop_reason="end_turn", input_tokens=5, output_tokens=0)

    with pytest.raises(MalformedReply) as caught:
        provider.generate(job_request)

    assert "without any content" in caught.value.message
    assert caught.value.details["input_tokens"] == 5
    assert caught.value.details["finish_reason"] == "end_turn"


def test_a_message_without_content_is_a_malformed_reply(
    fake: FakeAnthropic, provider: AnthropicProvider, job_request: GenerationRequest
) -> None:
    fake.json(200, {"id": "msg_1", "type": "message", "role": "assistant"})

    with pytest.raises(MalformedReply, match="without any content"):
        provider.generate(job_request)


def test_a_reply_missing_a_file_is_malformed_with_the_spent_tokens(
    fake: FakeAnthropic, provider: AnthropicProvider, job_request: GenerationRequest
) -> None:
    reply = GOOD_REPLY.split("### FILE: index.html")[0]
    fake.reply(reply, model=MODEL, input_tokens=300, output_tokens=40)

    with pytest.raises(MalformedReply) as caught:
        provider.generate(job_request)

    error = caught.value
    assert "missing index.html" in error.message
    assert error.details == {
        "provider": "anthropic",
        "model": MODEL,
        "reply": reply,
        "input_tokens": 300,
        "output_tokens": 40,
        "finish_reason": "end_turn",
    }
    assert isinstance(error.__cause__, MalformedReply)


def test_a_reply_cut_off_at_max_tokens_says_so(
    fake: FakeAnthropic, provider: AnthropicProvider, job_request: GenerationRequest
) -> None:
    fake.reply(GOOD_REPLY[:70], stop_reason="max_tokens", output_tokens=1234)

    with pytest.raises(MalformedReply) as caught:
        provider.generate(job_request)

    assert caught.value.details["finish_reason"] == "max_tokens"
    assert "cut off" in caught.value.hint and "max_tokens=1234" in caught.value.hint


def test_a_missing_key_is_a_config_error_naming_the_variable(
    fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)

    with pytest.raises(ConfigError, match=KEY_ENV):
        AnthropicProvider(settings(fake))


def test_the_key_variable_defaults_to_anthropic_api_key(
    fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)

    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider(settings(fake, api_key_env=""))

    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    assert AnthropicProvider(settings(fake, api_key_env="")).name == "anthropic"


def test_a_missing_model_is_a_config_error(
    fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)

    with pytest.raises(ConfigError, match=r"key 'model' is required") as caught:
        AnthropicProvider(settings(fake, model=""))

    assert_no_key(caught.value)


def test_provider_errors_survive_the_workflow_serializer(
    fake: FakeAnthropic, provider: AnthropicProvider, job_request: GenerationRequest
) -> None:
    fake.error(429, "slow down", error_type="rate_limit_error", headers={"Retry-After": "7"})

    with pytest.raises(ProviderError) as caught:
        provider.generate(job_request)

    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is ProviderError
    assert copy.details == caught.value.details
