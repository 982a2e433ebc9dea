"""The client seam shared by every provider, and a fake that replays queued responses.

A client turns chat ``messages`` plus a Pydantic ``response_model`` into a validated instance and
the token usage of the call (retries and re-asks included). Transport failures are retried inside
the client; what is left when the retries are exhausted surfaces as :class:`LLMCallError`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)

Message = dict[str, str]


class PromptMessages(list):  # type: ignore[type-arg]  # list[Message]
    """Chat messages whose last message starts with text every call of a wave shares.

    ``shared_chars``: how many leading characters of the last message's content are the same in
    every call (the static prefix; the per-call request follows). Providers that cache prompt
    prefixes only when told where the prefix ends (Anthropic's ``cache_control``) use it; any
    other client treats the object as the plain list of messages it is.
    """

    def __init__(self, messages: list[Message], shared_chars: int) -> None:
        super().__init__(messages)
        self.shared_chars = shared_chars


def reply_budget(client: Any, messages: Sequence[Message], text_chars: int, fields: int) -> int:
    """``max_tokens`` for a structured reply of at most ``text_chars`` characters of free text in
    ``fields`` JSON fields: room for every string at its ``maxLength`` (2 characters per token, a
    bound for short words and digits) plus the JSON around them, capped by what the client's
    context window leaves after the prompt (a smaller budget, not a prompt cut; the client
    reports a reply that does not fit)."""
    budget = 64 + 12 * fields + text_chars // 2
    window = getattr(client, "context_window", None)
    if window:
        prompt = client.count_tokens("\n".join(m["content"] for m in messages)) + 16 * len(messages)
        budget = max(64, min(budget, window - prompt - 32))
    return budget


@dataclass
class Usage:
    """Token usage of one logical call, summed over its retries and re-asks."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    attempts: int = 1
    retries: int = 0
    reasks: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    #: Replies whose token usage was missing or implausible and was estimated from the text.
    estimated: int = 0
    #: Input tokens written to the provider's prompt cache (Anthropic ``cache_creation_input_
    #: tokens``; part of ``input_tokens``, priced higher). Set by provider batches.
    cache_write_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.attempts += other.attempts
        self.retries += other.retries
        self.reasks += other.reasks
        self.estimated += other.estimated
        self.cache_write_tokens += other.cache_write_tokens
        for k, v in other.faults.items():
            self.faults[k] = self.faults.get(k, 0) + v

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "attempts": self.attempts,
            "retries": self.retries,
            "reasks": self.reasks,
            "faults": dict(self.faults),
            **({"estimated": self.estimated} if self.estimated else {}),
            **({"cache_write_tokens": self.cache_write_tokens} if self.cache_write_tokens else {}),
        }


@dataclass
class Completion(Generic[T]):
    """A validated response and what it cost."""

    value: T
    usage: Usage
    finish_reason: str | None = None


class LLMCallError(Exception):
    """A call failed for good (retries/re-asks exhausted, or a non-retryable error).

    ``kind`` is one of ``rate_limit``, ``server_error``, ``timeout``, ``connection``,
    ``invalid_output``, ``truncated``, ``context_overflow``, ``oversized``, ``auth``,
    ``bad_request``, ``other``.
    ``usage`` holds the tokens spent before giving up, so a run's totals stay exact. The message
    is one line and never contains an API key.
    """

    def __init__(self, kind: str, message: str, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.usage = usage or Usage(attempts=0)


@runtime_checkable
class LLMClient(Protocol):
    """What every provider client offers."""

    label: str
    is_local: bool

    def create(
        self,
        messages: list[Message],
        response_model: type[T],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.7,
        seed: int | None = None,
    ) -> Completion[T]: ...

    async def acreate(
        self,
        messages: list[Message],
        response_model: type[T],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.7,
        seed: int | None = None,
    ) -> Completion[T]: ...

    def count_tokens(self, text: str) -> int: ...


Responder = Callable[[list[Message], type[BaseModel]], Any]


class FakeClient:
    """Replays queued responses; for tests and dry runs.

    Each queued item is a ``BaseModel`` instance, a ``dict`` (validated against the requested
    model), an ``Exception`` (raised), or a callable ``(messages, response_model) -> item``. When
    the queue is empty, ``default`` (if given) answers. Every call is recorded in ``calls``.
    """

    def __init__(
        self,
        responses: list[Any] | None = None,
        *,
        default: Responder | None = None,
        label: str = "fake/fake",
        is_local: bool = False,
        tokens_per_char: float = 0.25,
    ) -> None:
        self.label = label
        self.is_local = is_local
        self._queue: deque[Any] = deque(responses or [])
        self._default = default
        self._lock = threading.Lock()
        self._tpc = tokens_per_char
        self.calls: list[dict[str, Any]] = []

    def enqueue(self, *items: Any) -> FakeClient:
        with self._lock:
            self._queue.extend(items)
        return self

    def count_tokens(self, text: str) -> int:
        return max(1, int(len(text) * self._tpc))

    def _next(self, messages: list[Message], response_model: type[T]) -> Any:
        with self._lock:
            self.calls.append({"messages": messages, "response_model": response_model})
            if self._queue:
                item = self._queue.popleft()
            elif self._default is not None:
                item = self._default
            else:
                raise AssertionError("FakeClient: no queued response left")
        if callable(item) and not isinstance(item, BaseModel | type):
            item = item(messages, response_model)
        return item

    def create(
        self,
        messages: list[Message],
        response_model: type[T],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.7,
        seed: int | None = None,
    ) -> Completion[T]:
        item = self._next(messages, response_model)
        if isinstance(item, BaseException):
            raise item
        value = item if isinstance(item, response_model) else response_model.model_validate(item)
        prompt = "".join(m["content"] for m in messages)
        usage = Usage(
            input_tokens=self.count_tokens(prompt),
            output_tokens=self.count_tokens(value.model_dump_json()),
        )
        return Completion(value=value, usage=usage, finish_reason="stop")

    async def acreate(
        self,
        messages: list[Message],
        response_model: type[T],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.7,
        seed: int | None = None,
    ) -> Completion[T]:
        await asyncio.sleep(0)
        return self.create(
            messages, response_model, max_tokens=max_tokens, temperature=temperature, seed=seed
        )
