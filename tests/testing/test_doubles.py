"""The test doubles shipped in shipyard.testing behave as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.errors import ProviderError
from shipyard.generate import GenerationRequest
from shipyard.jobs import load_job_kind
from shipyard.testing import FunctionProvider, ScriptedProvider
from support import EXAMPLE


def _request(attempt: int) -> GenerationRequest:
    kind = load_job_kind(Path(EXAMPLE / "jobs" / "ab-test"), domain="storefront")
    return GenerationRequest(task_id="t", kind=kind, inputs={}, attempt=attempt, prompt="p")


def test_scripted_provider_replies_per_attempt_and_repeats_the_last() -> None:
    provider = ScriptedProvider([{"ab_test.py": "one"}, {"ab_test.py": "two"}])
    replies = [provider.generate(_request(n)).files["ab_test.py"] for n in (1, 2, 3)]
    assert replies == ["one", "two", "two"]
    assert [r.attempt for r in provider.requests] == [1, 2, 3]


def test_scripted_provider_raises_scripted_errors() -> None:
    provider = ScriptedProvider([ProviderError("down"), {"ab_test.py": "ok"}])
    with pytest.raises(ProviderError, match="down"):
        provider.generate(_request(1))
    assert provider.generate(_request(2)).files == {"ab_test.py": "ok"}


def test_function_provider_turns_exceptions_into_provider_errors() -> None:
    def broken(request: GenerationRequest) -> dict[str, str]:
        raise RuntimeError(f"attempt {request.attempt} broke")

    with pytest.raises(ProviderError, match="attempt 1 broke"):
        FunctionProvider(broken).generate(_request(1))
    echo = FunctionProvider(lambda r: {"ab_test.py": r.prompt})
    assert echo.generate(_request(1)).files == {"ab_test.py": "p"}
