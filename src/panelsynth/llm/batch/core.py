"""Provider-neutral records of the batch layer: requests, results and statuses.

Nothing here talks to a network: :mod:`panelsynth.llm.batch.openai` and
:mod:`panelsynth.llm.batch.anthropic` turn these records into each provider's wire format;
:mod:`~panelsynth.llm.batch.job` holds the resumable job record, :mod:`~panelsynth.llm.batch.prices`
the batch prices and :mod:`~panelsynth.llm.batch.schema` the strict schema of OpenAI.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from panelsynth.errors import ProviderError
from panelsynth.llm.base import Message, Usage
from panelsynth.llm.keys import scrub

#: Kind of a request the provider never processed (batch expired or cancelled first, or missing
#: from every result file): resubmit exactly these.
UNFINISHED = "unfinished"

#: Batch states, provider-neutral. The last four are terminal.
STATES: tuple[str, ...] = (
    "validating",
    "in_progress",
    "finalizing",
    "cancelling",
    "completed",
    "failed",
    "expired",
    "cancelled",
)
TERMINAL_STATES: frozenset[str] = frozenset({"completed", "failed", "expired", "cancelled"})

#: ``custom_id`` shape accepted by both providers (Anthropic's rule, the stricter one).
CUSTOM_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class BatchError(ProviderError):
    """A batch operation failed for good (after the transport retries).

    ``kind`` is one of the fault kinds of :mod:`panelsynth.llm.retry` (``auth``, ``rate_limit``,
    ``server_error``, ``connection``, ``bad_request``, ...) or ``in_progress`` (results asked of
    a batch that has not ended). The message is one line and never contains an API key.
    """

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(" ".join(scrub(message).split()))


@dataclass(frozen=True)
class BatchRequest:
    """One structured-output call, to be sent in a batch.

    Attributes:
        custom_id: Unique within its batch; letters, digits, ``_`` and ``-``, at most 64
            characters (both providers accept this shape).
        messages: Chat messages. A :class:`~panelsynth.llm.base.PromptMessages` carries
            ``shared_chars``, the length of the prefix of the last message every request of the
            wave shares; Anthropic requests mark it with ``cache_control``.
        response_model: The Pydantic model of the reply; its JSON schema is sent (OpenAI strict
            ``json_schema``, Anthropic forced tool) and each result is validated against it.
        max_tokens: Output budget of the reply.
        temperature: Sampling temperature.
        seed: Sampling seed (OpenAI only; Anthropic has none).
        shared_chars: Overrides the ``shared_chars`` of ``messages``.
    """

    custom_id: str
    messages: Sequence[Message]
    response_model: type[BaseModel]
    max_tokens: int
    temperature: float = 0.7
    seed: int | None = None
    shared_chars: int | None = None

    def __post_init__(self) -> None:
        if not CUSTOM_ID_PATTERN.match(self.custom_id):
            raise ValueError(
                f"custom_id {self.custom_id!r} must be 1-64 letters, digits, '_' or '-'"
            )
        if self.max_tokens < 1:
            raise ValueError(f"{self.custom_id}: max_tokens must be at least 1")
        if not self.messages or not all(isinstance(m.get("content"), str) for m in self.messages):
            raise ValueError(f"{self.custom_id}: messages must be non-empty, with text content")

    @property
    def prefix_chars(self) -> int:
        """Length of the shared prefix of the last message (0: none), bounded by its length."""
        shared = self.shared_chars
        if shared is None:
            shared = int(getattr(self.messages, "shared_chars", 0) or 0)
        return max(0, min(shared, len(self.messages[-1]["content"])))

    def schema(self) -> dict[str, Any]:
        """The JSON schema of :attr:`response_model`."""
        return self.response_model.model_json_schema()

    @property
    def schema_name(self) -> str:
        """A name for the schema or tool that both providers accept."""
        name = re.sub(r"[^A-Za-z0-9_-]", "_", self.response_model.__name__)[:64]
        return name or "response"


@dataclass
class BatchResult:
    """What the provider returned for one request, validated.

    Attributes:
        custom_id: The request's id.
        value: The validated reply (an instance of the request's response model), or ``None``.
        kind: ``None`` on success; else a fault kind (``invalid_output``, ``truncated``,
            ``rate_limit``, ``server_error``, ``bad_request``, ``context_overflow``, ``auth``,
            ``other``) or :data:`UNFINISHED`.
        message: One line on what went wrong (scrubbed of keys).
        usage: Tokens the request was billed for (``cached_input_tokens``: cache reads), its
            attempt (0 when unfinished) and its fault.
        cache_write_tokens: Input tokens written to Anthropic's prompt cache (part of
            ``usage.input_tokens``; priced higher). Also carried by ``usage`` (its
            ``cache_write_tokens``), so the call record a run writes keeps it.
        finish_reason: The provider's finish/stop reason, when it answered.
    """

    custom_id: str
    value: BaseModel | None = None
    kind: str | None = None
    message: str = ""
    usage: Usage = field(default_factory=lambda: Usage(attempts=0))
    cache_write_tokens: int = 0
    finish_reason: str | None = None

    def __post_init__(self) -> None:
        if self.cache_write_tokens:
            self.usage.cache_write_tokens = self.cache_write_tokens
        else:
            self.cache_write_tokens = self.usage.cache_write_tokens

    @property
    def ok(self) -> bool:
        """Whether the reply validated."""
        return self.kind is None and self.value is not None


def failed_result(
    custom_id: str,
    kind: str,
    message: str,
    usage: Usage | None = None,
    *,
    finish_reason: str | None = None,
    cache_write_tokens: int = 0,
) -> BatchResult:
    """A :class:`BatchResult` for a request that gave no valid reply (its fault counted)."""
    if usage is None:
        usage = Usage(attempts=0 if kind == UNFINISHED else 1)
    if kind != UNFINISHED:
        usage.faults[kind] = usage.faults.get(kind, 0) + 1
    return BatchResult(
        custom_id,
        None,
        kind,
        " ".join(scrub(message).split())[:500],
        usage,
        cache_write_tokens,
        finish_reason,
    )


def validate_reply(
    custom_id: str,
    reply: str | dict[str, Any],
    response_model: type[BaseModel],
    usage: Usage,
    *,
    finish_reason: str | None = None,
    truncated: bool = False,
    cache_write_tokens: int = 0,
) -> BatchResult:
    """Validate a reply (JSON text or a decoded object) against ``response_model``.

    A reply cut off by the token limit is ``truncated``; one that does not parse or validate is
    ``invalid_output``.
    """
    extra = {"finish_reason": finish_reason, "cache_write_tokens": cache_write_tokens}
    if truncated:
        return failed_result(custom_id, "truncated", "reply cut off by max_tokens", usage, **extra)
    try:
        if isinstance(reply, str):
            value = response_model.model_validate_json(reply)
        else:
            value = response_model.model_validate(reply)
    except ValidationError as err:
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": str(err)}
        loc = ".".join(str(x) for x in first.get("loc", ())) or "reply"
        return failed_result(
            custom_id, "invalid_output", f"{loc}: {first.get('msg')}", usage, **extra
        )
    return BatchResult(custom_id, value, None, "", usage, cache_write_tokens, finish_reason)


@dataclass(frozen=True)
class BatchCounts:
    """Request counts of a batch, provider-neutral.

    ``failed`` counts requests that errored; ``unfinished`` those cancelled or expired before
    they ran; ``processing`` those not yet done.
    """

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    unfinished: int = 0
    processing: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "unfinished": self.unfinished,
            "processing": self.processing,
        }


@dataclass(frozen=True)
class BatchStatus:
    """Where a batch stands.

    Attributes:
        state: One of :data:`STATES`.
        provider_status: The provider's own status word (``in_progress``, ``ended``, ...).
        counts: Request counts.
        message: Batch-level errors (e.g. a file that failed validation), one line.
    """

    state: str
    provider_status: str
    counts: BatchCounts
    message: str = ""

    @property
    def terminal(self) -> bool:
        """Whether the batch has ended (its results can be collected)."""
        return self.state in TERMINAL_STATES


def total_usage(results: Iterable[BatchResult]) -> Usage:
    """Sum of the results' usage (attempts: requests processed; faults: per kind)."""
    total = Usage(attempts=0)
    for r in results:
        total.add(r.usage)
    return total
