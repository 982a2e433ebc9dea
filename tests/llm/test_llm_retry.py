"""classify_exception, Retry-After parsing and the backoff policy."""

from __future__ import annotations

import importlib
import json
from email.utils import formatdate
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel, ValidationError

from panelsynth.llm.base import LLMCallError
from panelsynth.llm.local import ContextOverflowError
from panelsynth.llm.retry import (
    RETRYABLE_KINDS,
    RetryPolicy,
    classify_exception,
    retry_after_seconds,
    status_code,
)

# The HTTP library the installed openai SDK is built on (httpx, or its httpx2 fork).
_openai_http: Any = getattr(importlib.import_module("openai._exceptions"), "httpx2", None) or httpx


def _response(status: int, headers: dict[str, str] | None = None) -> Any:
    request = _openai_http.Request("POST", "http://127.0.0.1/v1/chat/completions")
    return _openai_http.Response(status, headers=headers or {}, request=request)


def _openai_status(cls: type, status: int, headers: dict[str, str] | None = None) -> Exception:
    return cls(f"Error code: {status}", response=_response(status, headers), body=None)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (lambda: _openai_status(openai.RateLimitError, 429), "rate_limit"),
        (lambda: _openai_status(openai.InternalServerError, 500), "server_error"),
        (lambda: _openai_status(openai.InternalServerError, 503), "server_error"),
        (lambda: _openai_status(openai.AuthenticationError, 401), "auth"),
        (lambda: _openai_status(openai.PermissionDeniedError, 403), "auth"),
        (lambda: _openai_status(openai.BadRequestError, 400), "bad_request"),
        (lambda: _openai_status(openai.NotFoundError, 404), "bad_request"),
        (lambda: _openai_status(openai.APIStatusError, 529), "server_error"),
        (lambda: openai.APITimeoutError(request=_response(200).request), "timeout"),
        (lambda: openai.APIConnectionError(request=_response(200).request), "connection"),
    ],
)
def test_openai_sdk_exceptions(exc: Any, kind: str) -> None:
    assert classify_exception(exc()) == kind


class _AnthropicLike(Exception):
    """Anthropic's SDK shares the OpenAI SDK's class names and ``status_code``."""

    def __init__(self, status: int | None = None) -> None:
        super().__init__("anthropic error")
        if status is not None:
            self.status_code = status


def _named(name: str, status: int | None = None) -> Exception:
    return type(name, (_AnthropicLike,), {})(status)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_named("RateLimitError", 429), "rate_limit"),
        (_named("OverloadedError", 529), "server_error"),
        (_named("InternalServerError", 500), "server_error"),
        (_named("AuthenticationError", 401), "auth"),
        (_named("BadRequestError", 400), "bad_request"),
        (_named("APITimeoutError"), "timeout"),
        (_named("APIConnectionError"), "connection"),
        (_named("RateLimitError"), "rate_limit"),  # by name when no status is attached
    ],
)
def test_anthropic_style_exceptions(exc: Exception, kind: str) -> None:
    assert classify_exception(exc) == kind


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.ConnectTimeout("slow"), "timeout"),
        (httpx.ConnectError("refused"), "connection"),
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            "connection",
        ),
        (httpx.ReadError("reset"), "connection"),
        (TimeoutError("t"), "timeout"),
        (ConnectionResetError("r"), "connection"),
        (json.JSONDecodeError("x", "doc", 0), "invalid_output"),
        (ValueError("no idea"), "other"),
    ],
)
def test_httpx_and_stdlib_exceptions(exc: Exception, kind: str) -> None:
    assert classify_exception(exc) == kind


def test_httpx_status_error_uses_the_response_status() -> None:
    request = httpx.Request("POST", "http://x")
    err = httpx.HTTPStatusError("x", request=request, response=httpx.Response(502, request=request))
    assert status_code(err) == 502
    assert classify_exception(err) == "server_error"


def test_pydantic_validation_error_is_invalid_output() -> None:
    class M(BaseModel):
        n: int

    with pytest.raises(ValidationError) as err:
        M.model_validate({"n": "x"})
    assert classify_exception(err.value) == "invalid_output"


def test_instructor_exceptions() -> None:
    from instructor.core import IncompleteOutputException, InstructorRetryException

    assert classify_exception(IncompleteOutputException()) == "truncated"

    def wrapped(cause: Exception) -> Exception:
        try:
            raise InstructorRetryException("x", n_attempts=1, total_usage=0) from cause
        except InstructorRetryException as exc:
            return exc

    assert classify_exception(wrapped(_openai_status(openai.RateLimitError, 429))) == "rate_limit"
    assert classify_exception(wrapped(json.JSONDecodeError("x", "d", 0))) == "invalid_output"
    overflow = ContextOverflowError("too long", prompt_tokens=9000, context_window=8192)
    assert classify_exception(wrapped(overflow)) == "context_overflow"


def test_llm_call_error_keeps_its_kind() -> None:
    assert classify_exception(LLMCallError("truncated", "cut")) == "truncated"


def test_retryable_kinds() -> None:
    assert RETRYABLE_KINDS == {"rate_limit", "server_error", "timeout", "connection"}


def test_retry_after_seconds_forms() -> None:
    assert (
        retry_after_seconds(_openai_status(openai.RateLimitError, 429, {"Retry-After": "7"})) == 7
    )
    assert retry_after_seconds(
        _openai_status(openai.RateLimitError, 429, {"Retry-After": "0.25"})
    ) == pytest.approx(0.25)
    assert retry_after_seconds(
        _openai_status(openai.RateLimitError, 429, {"retry-after-ms": "1500", "Retry-After": "9"})
    ) == pytest.approx(1.5)
    now = 1_700_000_000.0
    dated = _openai_status(
        openai.RateLimitError, 429, {"Retry-After": formatdate(now + 42, usegmt=True)}
    )
    assert retry_after_seconds(dated, now=now) == pytest.approx(42, abs=1)
    past = _openai_status(
        openai.RateLimitError, 429, {"Retry-After": formatdate(now - 5, usegmt=True)}
    )
    assert retry_after_seconds(past, now=now) == 0.0
    assert retry_after_seconds(_openai_status(openai.RateLimitError, 429)) is None
    junk = _openai_status(openai.RateLimitError, 429, {"Retry-After": "soon-ish"})
    assert retry_after_seconds(junk) is None
    assert retry_after_seconds(ValueError("no response")) is None


def test_backoff_grows_exponentially_with_bounded_jitter_and_cap() -> None:
    policy = RetryPolicy(max_retries=5, initial_wait=1.0, max_wait=5.0, jitter=0.5)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0)]:
        for _ in range(20):
            assert base <= policy.backoff(attempt) <= base + 0.5
    assert all(policy.backoff(10) == 5.0 for _ in range(5))
    assert len({policy.backoff(1) for _ in range(20)}) > 1  # jittered
    assert policy.max_attempts == 6


def test_backoff_prefers_retry_after_capped() -> None:
    policy = RetryPolicy(initial_wait=1.0, jitter=0.5, max_retry_after=30.0)
    assert 12.0 <= policy.backoff(1, retry_after=12.0) <= 12.06
    assert 30.0 <= policy.backoff(1, retry_after=3600.0) <= 30.06
