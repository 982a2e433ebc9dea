"""Provider-neutral records of the batch layer: requests, results, jobs, statuses and prices.

Nothing here talks to a network: :mod:`panelsynth.llm.batch.openai` and
:mod:`panelsynth.llm.batch.anthropic` turn these records into each provider's wire format.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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

#: Version of the :class:`BatchJob` record written to checkpoints.
JOB_RECORD_VERSION = 1
#: Key that marks a checkpoint record as a :class:`BatchJob`.
JOB_RECORD_KEY = "batch_job"


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
            ``usage.input_tokens``; priced higher).
        finish_reason: The provider's finish/stop reason, when it answered.
    """

    custom_id: str
    value: BaseModel | None = None
    kind: str | None = None
    message: str = ""
    usage: Usage = field(default_factory=lambda: Usage(attempts=0))
    cache_write_tokens: int = 0
    finish_reason: str | None = None

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


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class BatchJob:
    """A submitted batch: enough to poll, collect or cancel it from another process.

    Attributes:
        provider: ``openai`` or ``anthropic``.
        model: Model name as sent to the provider.
        batch_id: The provider's batch id.
        custom_ids: The requests submitted, in order.
        submitted_at: UTC time of submission (ISO 8601).
        input_file_id: The uploaded JSONL file (OpenAI).
        status: Last known state (see :data:`STATES`).
        counts: Last known counts (:meth:`BatchCounts.to_dict`).
        output_file_id: File of results (OpenAI), once known.
        error_file_id: File of per-request errors (OpenAI), once known.
    """

    provider: str
    model: str
    batch_id: str
    custom_ids: list[str]
    submitted_at: str = field(default_factory=_now)
    input_file_id: str | None = None
    status: str = "validating"
    counts: dict[str, int] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None

    def update(self, status: BatchStatus) -> None:
        """Take the state and counts of a fresh poll."""
        self.status = status.state
        self.counts = status.counts.to_dict()

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATES

    def to_record(self) -> dict[str, Any]:
        """The JSON-able checkpoint record (``{"batch_job": {...}}``)."""
        return {
            JOB_RECORD_KEY: {
                "v": JOB_RECORD_VERSION,
                "provider": self.provider,
                "model": self.model,
                "batch_id": self.batch_id,
                "custom_ids": list(self.custom_ids),
                "submitted_at": self.submitted_at,
                "input_file_id": self.input_file_id,
                "status": self.status,
                "counts": dict(self.counts),
                "output_file_id": self.output_file_id,
                "error_file_id": self.error_file_id,
            }
        }

    def to_json_line(self) -> str:
        """One JSON line (with its newline), to append to a wave's checkpoint."""
        return json.dumps(self.to_record(), sort_keys=True) + "\n"

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> BatchJob:
        """Restore a job from :meth:`to_record` output.

        Raises:
            ValueError: The record is not a batch job of a known version, or is malformed.
        """
        body = record.get(JOB_RECORD_KEY)
        if not isinstance(body, Mapping):
            raise ValueError(f"not a {JOB_RECORD_KEY} record")
        if body.get("v") != JOB_RECORD_VERSION:
            raise ValueError(f"{JOB_RECORD_KEY} record of unknown version {body.get('v')!r}")
        try:
            ids = [str(c) for c in body["custom_ids"]]
            job = cls(
                provider=str(body["provider"]),
                model=str(body["model"]),
                batch_id=str(body["batch_id"]),
                custom_ids=ids,
                submitted_at=str(body["submitted_at"]),
                input_file_id=body.get("input_file_id"),
                status=str(body.get("status") or "validating"),
                counts={str(k): int(v) for k, v in (body.get("counts") or {}).items()},
                output_file_id=body.get("output_file_id"),
                error_file_id=body.get("error_file_id"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed {JOB_RECORD_KEY} record: {err}") from None
        if job.status not in STATES or not job.batch_id or len(set(ids)) != len(ids):
            raise ValueError(f"malformed {JOB_RECORD_KEY} record for batch {job.batch_id!r}")
        return job

    @classmethod
    def from_json_line(cls, line: str) -> BatchJob:
        """Restore a job from :meth:`to_json_line` output."""
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"not a JSON line: {err}") from None
        if not isinstance(record, Mapping):
            raise ValueError(f"not a {JOB_RECORD_KEY} record")
        return cls.from_record(record)


def split_job_records(
    records: Iterable[Mapping[str, Any]],
) -> tuple[list[BatchJob], list[Mapping[str, Any]]]:
    """Separate batch-job records from the other records of a checkpoint.

    A later record of the same batch id (a status update) replaces an earlier one; jobs keep
    the order of their first record.

    Returns:
        ``(jobs, other_records)``.
    """
    jobs: dict[str, BatchJob] = {}
    others: list[Mapping[str, Any]] = []
    for record in records:
        if JOB_RECORD_KEY in record:
            job = BatchJob.from_record(record)
            jobs[job.batch_id] = job
        else:
            others.append(record)
    return list(jobs.values()), others


# -- prices ----------------------------------------------------------------------------------

#: Batch price as a share of the online price. OpenAI: "50% cost discount compared to
#: synchronous APIs" (platform.openai.com/docs/guides/batch); Anthropic: "Batch API ... 50% of
#: standard API prices" (docs.anthropic.com/en/docs/build-with-claude/batch-processing).
BATCH_MULTIPLIER: dict[str, float] = {"openai": 0.5, "anthropic": 0.5}
#: Price of a cached input token as a share of the input price. Anthropic cache reads: 0.1,
#: cache writes (5-minute): 1.25 (docs.anthropic.com/en/docs/build-with-claude/prompt-caching).
#: OpenAI cached input: 0.5 for the gpt-4o family (0.25 gpt-4.1, 0.1 gpt-5): pass your model's.
CACHED_INPUT_MULTIPLIER: dict[str, float] = {"openai": 0.5, "anthropic": 0.1}
CACHE_WRITE_MULTIPLIER: dict[str, float] = {"openai": 1.0, "anthropic": 1.25}


@dataclass(frozen=True)
class BatchPricing:
    """Prices of batch requests, from a model's online prices.

    Attributes:
        input_per_mtok: Online USD per million input tokens (``[prices]`` of panelsynth.toml).
        output_per_mtok: Online USD per million output tokens.
        batch_multiplier: Batch price as a share of online (0.5 for OpenAI and Anthropic).
        cached_input_multiplier: Cached (cache-read) input price as a share of input.
        cache_write_multiplier: Cache-write input price as a share of input.
    """

    input_per_mtok: float
    output_per_mtok: float
    batch_multiplier: float = 0.5
    cached_input_multiplier: float = 1.0
    cache_write_multiplier: float = 1.0

    @classmethod
    def for_provider(
        cls, provider: str, input_per_mtok: float, output_per_mtok: float
    ) -> BatchPricing:
        """The provider's documented batch and cache multipliers around the given prices."""
        return cls(
            input_per_mtok,
            output_per_mtok,
            BATCH_MULTIPLIER.get(provider, 1.0),
            CACHED_INPUT_MULTIPLIER.get(provider, 1.0),
            CACHE_WRITE_MULTIPLIER.get(provider, 1.0),
        )

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float:
        """USD of the given tokens at batch prices (``input_tokens`` includes cached ones)."""
        plain = max(0, input_tokens - cached_input_tokens - cache_write_tokens)
        inputs = self.input_per_mtok * (
            plain
            + cached_input_tokens * self.cached_input_multiplier
            + cache_write_tokens * self.cache_write_multiplier
        )
        return self.batch_multiplier * (inputs + self.output_per_mtok * output_tokens) / 1e6

    def cost_of(self, results: Iterable[BatchResult]) -> float:
        """USD of a batch's results (failed requests that were billed included)."""
        return sum(
            self.cost(
                r.usage.input_tokens,
                r.usage.output_tokens,
                r.usage.cached_input_tokens,
                r.cache_write_tokens,
            )
            for r in results
        )


def total_usage(results: Iterable[BatchResult]) -> Usage:
    """Sum of the results' usage (attempts: requests processed; faults: per kind)."""
    total = Usage(attempts=0)
    for r in results:
        total.add(r.usage)
    return total


# -- schemas ---------------------------------------------------------------------------------

_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_LISTS = ("anyOf", "allOf", "prefixItems")
_SCHEMA_NODES = ("items", "not", "additionalProperties", "contains")
_DROPPED = ("default", "examples")


def strict_json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a Pydantic JSON schema that OpenAI's strict structured outputs accept.

    Every object gets ``additionalProperties: false`` and lists all its properties as required
    (a property that was optional becomes nullable); ``oneOf`` becomes ``anyOf``; ``default``
    and ``examples`` are dropped; nested ``$defs`` move to the root, where ``$ref`` finds them.
    """
    root = copy.deepcopy(dict(schema))
    hoisted: dict[str, Any] = {}

    def fix(node: Any) -> None:
        if not isinstance(node, dict):
            return
        for key in _DROPPED:
            node.pop(key, None)
        if "oneOf" in node:
            node["anyOf"] = node.pop("oneOf")
        if node is not root and "$defs" in node:
            hoisted.update(node.pop("$defs"))
        if node.get("type") == "object" or "properties" in node:
            props = node.setdefault("properties", {})
            required = set(node.get("required", []))
            for name in list(props):
                if name not in required:
                    props[name] = {"anyOf": [props[name], {"type": "null"}]}
            node["required"] = list(props)
            node["additionalProperties"] = False
        for key in _SCHEMA_MAPS:
            if isinstance(node.get(key), dict):
                for sub in node[key].values():
                    fix(sub)
        for key in _SCHEMA_LISTS:
            for sub in node.get(key) or []:
                fix(sub)
        for key in _SCHEMA_NODES:
            fix(node.get(key))

    fix(root)
    while hoisted:
        pending = dict(hoisted)
        hoisted.clear()
        defs = root.setdefault("$defs", {})
        for name, sub in pending.items():
            fix(sub)
            defs.setdefault(name, sub)
    return root
