"""The openai provider against a local server speaking Chat Completions over real HTTP."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from generate._fake_openai import FakeOpenAI
from shipyard.config import TierSettings
from shipyard.errors import ConfigError, MalformedReply, ProviderError, ShipyardError, to_dict
from shipyard.generate import REPLY_FORMAT, GenerationRequest, Provider
from shipyard.generate.providers.openai import NO_KEY_PLACEHOLDER, OpenAIProvider
from shipyard.jobs import JobKind, load_job_kind

KEY = "sk-shipyard-test-7f3a9c1e5b2d4680"
MODEL = "local-model"
PROMPT = "Write the mug page."

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


def settings(base_url: str, **overrides: Any) -> TierSettings:
    values: dict[str, Any] = {
        "provider": "openai",
        "model": MODEL,
        "base_url": base_url,
        "max_tokens": 1234,
        "temperature": 0.3,
        "timeout_seconds": 5,
    }
    return TierSettings(**(values | overrides))


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def job_request(tmp_path: Path) -> GenerationRequest:
    return GenerationRequest(
        task_id="t-1", kind=make_kind(tmp_path), inputs={"sku": "mug"}, attempt=1, prompt=PROMPT
    )


@pytest.fixture
def provider(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> OpenAIProvider:
    """The provider with its key in OPENAI_API_KEY (the default variable)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return OpenAIProvider(settings(fake.url))


def assert_no_key(error: ShipyardError) -> None:
    assert KEY not in str(error)
    assert KEY not in json.dumps(to_dict(error), default=str)


def only_error(provider: OpenAIProvider, request: GenerationRequest) -> ProviderError:
    """The error the call raised, checked for the key and for a leaked SDK exception type."""
    with pytest.raises(ProviderError) as caught:
        provider.generate(request)
    assert_no_key(caught.value)
    return caught.value


# -- a good reply ---------------------------------------------------------------------------


def test_a_reply_becomes_files_with_usage_and_finish_reason(
    fake: FakeOpenAI, provider: OpenAIProvider, job_request: GenerationRequest
) -> None:
    fake.reply(GOOD_REPLY, prompt_tokens=321, completion_tokens=45)

    generation = provider.generate(job_request)

    assert isinstance(provider, Provider)
    assert generation.files == {"app.py": 'print("hi")\n', "index.html": "<h1>mug</h1>\n"}
    assert (generation.provider, generation.model) == ("openai", MODEL)
    assert (generation.input_tokens, generation.output_tokens) == (321, 45)
    assert generation.finish_reason == "stop"
    assert generation.reply == GOOD_REPLY


def test_the_request_carries_format_prompt_model_limits_and_key(
    fake: FakeOpenAI, provider: OpenAIProvider, job_request: GenerationRequest
) -> None:
    fake.reply(GOOD_REPLY)

    provider.generate(job_request)

    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.body["messages"] == [
        {"role": "system", "content": REPLY_FORMAT},
        {"role": "user", "content": PROMPT},
    ]
    assert sent.body["model"] == MODEL
    assert sent.body["max_tokens"] == 1234
    assert sent.body["temperature"] == 0.3
    assert not sent.body.get("stream")
    assert sent.headers["authorization"] == f"Bearer {KEY}"


def test_the_key_comes_from_the_variable_api_key_env_names(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, job_request: GenerationRequest
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-wrong-one")
    monkeypatch.setenv("SHIPYARD_TEST_VLLM_KEY", KEY)
    provider = OpenAIProvider(settings(fake.url, api_key_env="SHIPYARD_TEST_VLLM_KEY"))
    fake.reply(GOOD_REPLY)

    provider.generate(job_request)

    assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_a_local_server_needs_no_key(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, job_request: GenerationRequest
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    provider = OpenAIProvider(settings(fake.url))
    fake.reply(GOOD_REPLY)

    assert sorted(provider.generate(job_request).files) == ["app.py", "index.html"]
    assert fake.requests[0].headers["authorization"] == f"Bearer {NO_KEY_PLACEHOLDER}"


# -- the server fails -------------------------------------------------------------------------


def test_rate_limit_carries_retry_after(
    fake: FakeOpenAI, provider: OpenAIProvider, job_request: GenerationRequest
) -> None:
    fake.error(
        429,
        "Rate limit reached for requests",
        error_type="requests",
        headers={"Retry-After": "7", "x-request-id": "req_abc"},
    )

    error = only_error(provider, job_request)

    assert type(error) is ProviderError
    assert error.details["retry_after"] == 7
    assert error.details["status"] == 429
    assert error.details["request_id"] == "req_abc"
    assert "HTTP 429" in error.message and "Rate limit reached" in error.message
    assert len(fake.requests) == 1  # the SDK's own retries are off: Shipyard owns them


@pytest.mark.parametrize("status", [500, 503, 400, 404])
def test_an_error_status_is_a_provider_error_with_the_status(
    fake: FakeOpenAI, provider: OpenAIProvider, job_request: GenerationRequest, status: int
) -> None:
    fake.error(status, f"status {status} happened")

    error = only_error(provider, job_request)

    assert type(error) is ProviderError
    assert error.details["status"] == status
    assert f"HTTP {status}" in error.message and f"status {status} happened" in error.message
    assert "retry_after" not in error.details
    assert isinstance(error.__cause__, Exception)
    assert len(fake.requests) == 1


def test_a_refused_key_is_blanked_out_and_the_hint_names_the_variable(
    fake: FakeOpenAI, provider: OpenAIProvider, job_request: GenerationRequest
) -> None:
    fake.error(401, f"Incorrect API key provided: {KEY}", error_type="invalid_request_error")

    error = only_error(provider, job_request)

    assert error.details["status"] == 401
    assert "[redacted]" in error.message
    assert "OPENAI_API_KEY" in error.hint


def test_a_slow_server_times_out(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, job_request: GenerationRequest
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    provider = OpenAIProvider(settings(fake.url, timeout_seconds=0.5))
    fake.reply(GOOD_REPLY, delay=3.0)

    error = only_error(provider, job_request)

    assert type(error) is ProviderError
    assert "timed out after 0.5 s" in error.message
    assert len(fake.requests) == 1


def test_an_unreachable_server_is_a_provider_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, job_request: GenerationRequest
) -> None:
    with FakeOpenAI() as gone:
        url = gone.url
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    provider = OpenAIProvider(settings(url))

    error = only_error(provider, job_request)

    assert type(error) is ProviderError
    assert "cannot reach" in error.message and url in error.message


# -- the server answers, but not with files ---------------------------------------------------


def test_a_body_that_is_not_valid_json_is_a_malformed_reply(
    fake: FakeOpenAI, provider: OpenAIProvider, job_request: GenerationRequest
) -> None:
    fake.raw(200, b'{"id": "chatcmpl-1", "choices": [')

    error = only_error(provider, job_request)

    assert isinstance(error, MalformedReply)
    assert "invalid JSON" in error.message
    assert error.details["provider"] == "openai"
    assert error.details["reply"] == '{"id": "chatcmpl-1", "choices": ['


def test_a_body_of_another_content_type_is_a_malformed_reply(
    fake: FakeOpenAI, provider: OpenAIProvider, job_request: GenerationRequest
) -> None:
    fake.raw(200, b"<html>proxy says hello</html>", content_type="text/html")

    error = only_error(provider, job_request)

    assert isinstance(error, MalformedReply)
    assert "not JSON" in error.message
    assert "proxy says hello" in error.details["reply"]


@pytest.mark.parametrize(
    "body",
    [{"id": "chatcmpl-1", "object": "chat.completion"}, {"id": "x", "choices": []}, [1, 2]],
    ids=["no-choices", "empty-choices", "a-list"],
)
def test_a_body_without_choices_is_a_malformed_reply(
    fake: FakeOpenAI, provider: OpenAIProvider, job_request: GenerationRequest, body: Any
) -> None:
    fake.json(200, body)

    error = only_error(provider, job_request)

    assert isinstance(error, MalformedReply)
    assert error.details["provider"] == "openai"


@pytest.mark.parametrize("content", ["", None])
def test_empty_content_is_a_malformed_reply(
    fake: FakeOpenAI, provider: OpenAIProvider, job_request: GenerationRequest, content: str | None
) -> None:
    fake.reply(content, prompt_tokens=5, completion_tokens=0)

    error = only_error(provider, job_request)

    assert isinstance(error, MalformedReply)
    assert "empty" in error.message
    assert error.details["input_tokens"] == 5
    assert error.details["finish_reason"] == "stop"


def test_a_reply_missing_a_file_is_malformed_with_the_spent_tokens(
    fake: FakeOpenAI, provider: OpenAIProvider, job_request: GenerationRequest
) -> None:
    reply = GOOD_REPLY.split("### FILE: index.html")[0]
    fake.reply(reply, prompt_tokens=300, completion_tokens=40)

    error = only_error(provider, job_request)

    assert isinstance(error, MalformedReply)
    assert "missing index.html" in error.message
    assert error.details == {
        "provider": "openai",
        "model": MODEL,
        "reply": reply,
        "input_tokens": 300,
        "output_tokens": 40,
        "finish_reason": "stop",
    }
    assert isinstance(error.__cause__, MalformedReply)


def test_a_reply_cut_off_at_max_tokens_says_so(
    fake: FakeOpenAI, provider: OpenAIProvider, job_request: GenerationRequest
) -> None:
    fake.reply(GOOD_REPLY[:70], finish_reason="length", completion_tokens=1234)

    error = only_error(provider, job_request)

    assert isinstance(error, MalformedReply)
    assert error.details["finish_reason"] == "length"
    assert "cut off" in error.hint and "max_tokens=1234" in error.hint


# -- configuration ----------------------------------------------------------------------------


def test_a_missing_model_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)

    with pytest.raises(ConfigError, match=r"key 'model' is required") as caught:
        OpenAIProvider(settings("", model=""))

    assert_no_key(caught.value)


@pytest.mark.parametrize("variable", ["", "SHIPYARD_TEST_OPENAI_KEY"])
def test_no_key_and_no_base_url_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("SHIPYARD_TEST_OPENAI_KEY", raising=False)

    with pytest.raises(ConfigError) as caught:
        OpenAIProvider(settings("", api_key_env=variable))

    assert (variable or "OPENAI_API_KEY") in caught.value.message


def test_provider_errors_survive_the_workflow_serializer(
    fake: FakeOpenAI, provider: OpenAIProvider, job_request: GenerationRequest
) -> None:
    fake.error(429, "slow down", headers={"Retry-After": "7"})
    fake.reply("no files here", prompt_tokens=9, completion_tokens=3)

    for expected in (ProviderError, MalformedReply):
        error = only_error(provider, job_request)
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) is expected
        assert copy.details == error.details
