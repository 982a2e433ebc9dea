"""Fixtures of the LLM-layer tests: the OpenAI-compatible stub server, fast retry policies, keys."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # so that `tests.servers.openai_stub` imports from any cwd
    sys.path.insert(0, str(_REPO))

from panelsynth.llm.keys import KEY_ENV_VARS  # noqa: E402
from panelsynth.llm.retry import RetryPolicy  # noqa: E402
from tests.servers.openai_stub import OpenAIStub  # noqa: E402


@pytest.fixture
def openai_stub() -> Iterator[OpenAIStub]:
    """A running OpenAI-compatible stub server (no faults unless a test scripts them)."""
    with OpenAIStub() as stub:
        yield stub


@pytest.fixture
def fast_policy() -> RetryPolicy:
    """A retry policy with millisecond waits, so fault tests stay fast."""
    return RetryPolicy(max_retries=3, initial_wait=0.001, max_wait=0.01, jitter=0.001)


@pytest.fixture
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every provider key variable from the environment."""
    for names in KEY_ENV_VARS.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)
