"""Failure classification and the transport retry policy (Tenacity).

:func:`classify_exception` maps an exception from any provider SDK (OpenAI, Anthropic, Google),
httpx/httpx2, Instructor or the standard library to a *kind*. Kinds in :data:`RETRYABLE_KINDS` are
retried with exponential backoff and jitter, honouring ``Retry-After``; all others fail fast.
Classification goes by class names and HTTP status codes, so no SDK has to be imported.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from pydantic import ValidationError

from panelsynth.llm.base import LLMCallError

#: Kinds a retry may cure.
RETRYABLE_KINDS: frozenset[str] = frozenset({"rate_limit", "server_error", "timeout", "connection"})

#: Every kind a failure can have (``LLMCallError.kind`` and the keys of ``Usage.faults``).
FAULT_KINDS: tuple[str, ...] = (
    "rate_limit",
    "server_error",
    "timeout",
    "connection",
    "invalid_output",
    "truncated",
    "context_overflow",
    "oversized",
    "auth",
    "bad_request",
    "other",
)

OnRetry = Callable[[str, float], None]

#: A per-task listener called like ``on_retry`` before each transport retry, in addition to the
#: client's own hook. The generation runner sets it around each call (asyncio tasks and
#: ``asyncio.to_thread`` copy context variables), so it learns which call was rate limited.
RETRY_LISTENER: ContextVar[OnRetry | None] = ContextVar("panelsynth_retry_listener", default=None)

_TIMEOUT_NAMES = frozenset(
    {
        "APITimeoutError",
        "TimeoutException",
        "ReadTimeout",
        "WriteTimeout",
        "ConnectTimeout",
        "PoolTimeout",
        "TimeoutError",
        "DeadlineExceeded",
    }
)
_CONNECTION_NAMES = frozenset(
    {
        "APIConnectionError",
        "ConnectError",
        "RemoteProtocolError",
        "ReadError",
        "WriteError",
        "NetworkError",
        "TransportError",
        "ProtocolError",
        "ConnectionError",
        "ServerDisconnectedError",
        "ClientConnectionError",
        "IncompleteRead",
    }
)
_PARSE_NAMES = frozenset(
    {"ValidationError", "JSONDecodeError", "ResponseParsingError", "AsyncValidationError"}
)


def _class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def status_code(exc: BaseException) -> int | None:
    """The HTTP status carried by an SDK/httpx exception, if any."""
    for candidate in (
        getattr(exc, "status_code", None),
        getattr(getattr(exc, "response", None), "status_code", None),
        getattr(exc, "code", None),
        getattr(exc, "status", None),
    ):
        if isinstance(candidate, int) and not isinstance(candidate, bool):
            if 100 <= candidate < 600:
                return candidate
    return None


def classify_exception(exc: BaseException) -> str:
    """Map an exception to a failure kind.

    Args:
        exc: An exception from a provider SDK, httpx, Instructor, pydantic or the stdlib.

    Returns:
        One of :data:`FAULT_KINDS`: ``rate_limit`` (429), ``server_error`` (5xx, overloaded),
        ``timeout``, ``connection`` (refused/dropped), ``auth`` (401/403), ``bad_request``
        (other 4xx), ``invalid_output`` (unparseable/invalid structured output), ``truncated``
        (cut off by the token limit), ``context_overflow``, ``oversized`` (a reply larger than
        ``max_tokens`` allows, cut off by :mod:`panelsynth.llm.limits`) or ``other``.
    """
    if isinstance(exc, LLMCallError):
        return exc.kind
    seen: BaseException | None = exc
    for _ in range(8):  # an SDK wraps what the transport raised (APIConnectionError from ...)
        if seen is None:
            break
        if getattr(seen, "kind", None) == "oversized":
            return "oversized"
        seen = seen.__cause__ or seen.__context__
    names = _class_names(exc)
    if "IncompleteOutputException" in names or "LengthFinishReasonError" in names:
        return "truncated"
    if "InstructorRetryException" in names:
        cause = exc.__cause__
        if cause is None or _class_names(cause) & _PARSE_NAMES:
            return "invalid_output"
        return classify_exception(cause)
    if names & _TIMEOUT_NAMES:
        return "timeout"
    code = status_code(exc)
    if code is not None:
        if code == 429:
            return "rate_limit"
        if code == 408:
            return "timeout"
        if code in (401, 403):
            return "auth"
        if code >= 500:
            return "server_error"
        if code >= 400:
            return "bad_request"
    if "RateLimitError" in names:
        return "rate_limit"
    if names & {"AuthenticationError", "PermissionDeniedError"}:
        return "auth"
    if names & {"InternalServerError", "ServiceUnavailableError", "OverloadedError"}:
        return "server_error"
    if names & _CONNECTION_NAMES:
        return "connection"
    if isinstance(exc, ValidationError | json.JSONDecodeError) or names & _PARSE_NAMES:
        return "invalid_output"
    return "other"


def retry_after_seconds(exc: BaseException, *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``Retry-After``), if it did.

    ``Retry-After`` may be a number of seconds (fractions allowed) or an HTTP-date.

    Args:
        exc: An exception whose ``response`` carries headers (OpenAI/Anthropic/httpx errors).
        now: Current POSIX time, for tests.

    Returns:
        A non-negative number of seconds, or ``None`` if the response says nothing.
    """
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


@dataclass(frozen=True)
class RetryPolicy:
    """How transport failures are retried.

    The n-th wait is ``initial_wait * 2**(n-1)`` plus a uniform jitter in ``[0, jitter)``, capped
    at ``max_wait``; a server's ``Retry-After`` replaces it (capped at ``max_retry_after``).

    Attributes:
        max_retries: Retries after the first attempt (so ``max_retries + 1`` attempts at most).
        initial_wait: First backoff, in seconds.
        max_wait: Cap of the exponential backoff, in seconds.
        jitter: Upper bound of the random jitter added to each wait, in seconds.
        max_retry_after: Cap on a server-requested wait, in seconds.
    """

    max_retries: int = 5
    initial_wait: float = 1.0
    max_wait: float = 60.0
    jitter: float = 1.0
    max_retry_after: float = 300.0

    @property
    def max_attempts(self) -> int:
        """Attempts in total, the first included."""
        return max(0, self.max_retries) + 1

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Args:
            attempt: Number of the attempt that just failed.
            retry_after: Wait requested by the server, if any.

        Returns:
            The wait in seconds.
        """
        if retry_after is not None:
            return min(retry_after, self.max_retry_after) + random.uniform(0, self.jitter / 10)
        exp = self.initial_wait * (2 ** max(0, attempt - 1))
        return min(self.max_wait, exp + random.uniform(0, self.jitter))


def is_retryable(kind: str) -> bool:
    """Whether failures of ``kind`` are worth retrying."""
    return kind in RETRYABLE_KINDS


def short_message(exc: BaseException, limit: int = 300) -> str:
    """A one-line, bounded description of ``exc`` (not yet scrubbed)."""
    text = str(exc) or type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(exc: BaseException) -> dict[str, Any]:
    """Kind, status and Retry-After of ``exc``, for logs and tests."""
    return {
        "kind": classify_exception(exc),
        "status": status_code(exc),
        "retry_after": retry_after_seconds(exc),
    }
