"""The provider batch API interface, what every provider adapter shares, and the registry.

A :class:`BatchApi` submits :class:`BatchRequest` s as one provider batch and returns a
:class:`BatchJob`; :meth:`BatchApi.poll`, :meth:`~BatchApi.collect` and
:meth:`~BatchApi.cancel` take that job, also when it was restored from a checkpoint in
another process, so a batch is never submitted twice.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from panelsynth.errors import ProviderError
from panelsynth.llm.batch.core import (
    UNFINISHED,
    BatchCounts,
    BatchError,
    BatchRequest,
    BatchResult,
    BatchStatus,
    failed_result,
)
from panelsynth.llm.batch.http import HttpApi
from panelsynth.llm.batch.job import BatchJob
from panelsynth.llm.keys import install_log_scrubber, resolve_api_key
from panelsynth.llm.registry import parse_label
from panelsynth.llm.retry import OnRetry, RetryPolicy

logger = logging.getLogger("panelsynth")

#: Response model of every request, or per custom_id.
ResponseModels = type[BaseModel] | Mapping[str, type[BaseModel]]


def response_model_for(models: ResponseModels, custom_id: str) -> type[BaseModel] | None:
    """The response model of ``custom_id`` (``None``: unknown)."""
    if isinstance(models, Mapping):
        return models.get(custom_id)
    return models


class BatchApi(ABC):
    """One provider's batch API.

    Args:
        model: Model name as the provider spells it.
        api_key: Key from the command line; otherwise the provider's environment variable.
        base_url: API root (default: the provider's); a test stub's address in tests.
        timeout: Seconds per HTTP request.
        retry_policy: Transport retry policy.
        on_retry: Called as ``on_retry(kind, wait_seconds)`` before each transport retry.
        sleep: How waits happen (retries and :meth:`wait`); tests pass a fake.
    """

    provider: str = ""
    default_base_url: str = ""
    #: Most requests one batch may hold.
    max_requests: int = 50_000
    #: Largest batch payload (bytes of the JSONL file or of the create request).
    max_bytes: int = 200_000_000

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 120.0,
        retry_policy: RetryPolicy | None = None,
        on_retry: OnRetry | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model
        key = resolve_api_key(self.provider, api_key)
        install_log_scrubber()
        self._sleep = sleep
        self.api = HttpApi(
            f"{self.provider} batch",
            base_url or self.default_base_url,
            self._auth_headers(key or ""),
            timeout=timeout,
            policy=retry_policy,
            on_retry=on_retry,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r}, base_url={self.api.base_url!r})"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.api.close()

    def __enter__(self) -> BatchApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- provider specifics -------------------------------------------------------------------
    @abstractmethod
    def _auth_headers(self, key: str) -> dict[str, str]: ...

    @abstractmethod
    def request_bytes(self, request: BatchRequest) -> int:
        """Bytes ``request`` takes in the batch payload."""

    @abstractmethod
    def _submit(self, requests: Sequence[BatchRequest]) -> BatchJob: ...

    @abstractmethod
    def _status(self, job: BatchJob) -> BatchStatus: ...

    @abstractmethod
    def _results(
        self, job: BatchJob, status: BatchStatus, models: ResponseModels
    ) -> dict[str, BatchResult]:
        """Results and errors the provider has for ``job``, by custom_id."""

    @abstractmethod
    def _cancel(self, job: BatchJob) -> None: ...

    # -- the interface ------------------------------------------------------------------------
    def submit(self, requests: Sequence[BatchRequest]) -> BatchJob:
        """Upload and create one batch of ``requests``.

        Record the returned job (``job.to_json_line()``) at once: it is what lets a later
        process poll and collect this batch instead of paying for it again.

        Raises:
            BatchError: Empty, too large, duplicate ids, or the provider refused.
        """
        if not requests:
            raise BatchError("bad_request", f"{self.provider} batch: nothing to submit")
        if len(requests) > self.max_requests:
            raise BatchError(
                "bad_request",
                f"{self.provider} batch: {len(requests)} requests, at most {self.max_requests} "
                "per batch — split them",
            )
        ids = [r.custom_id for r in requests]
        if len(set(ids)) != len(ids):
            dup = sorted({c for c in ids if ids.count(c) > 1})
            raise BatchError("bad_request", f"duplicate custom_id: {', '.join(dup[:5])}")
        size = sum(self.request_bytes(r) + 1 for r in requests)
        if size > self.max_bytes:
            raise BatchError(
                "bad_request",
                f"{self.provider} batch: {size} bytes, at most {self.max_bytes} per batch — "
                "split the requests (BatchApi.split)",
            )
        job = self._submit(requests)
        logger.info(
            "%s batch %s submitted: %d requests", self.provider, job.batch_id, len(job.custom_ids)
        )
        return job

    def split(self, requests: Sequence[BatchRequest]) -> list[list[BatchRequest]]:
        """Cut ``requests`` into batches within :attr:`max_requests` and :attr:`max_bytes`.

        Raises:
            BatchError: One request alone is larger than a batch may be.
        """
        out: list[list[BatchRequest]] = []
        current: list[BatchRequest] = []
        size = 0
        for r in requests:
            n = self.request_bytes(r) + 1
            if n > self.max_bytes:
                raise BatchError("bad_request", f"{r.custom_id}: {n} bytes, larger than a batch")
            if current and (len(current) >= self.max_requests or size + n > self.max_bytes):
                out.append(current)
                current, size = [], 0
            current.append(r)
            size += n
        if current:
            out.append(current)
        return out

    def poll(self, job: BatchJob) -> BatchStatus:
        """The batch's current state and counts (``job`` is updated too)."""
        self._check(job)
        status = self._status(job)
        job.update(status)
        return status

    def wait(
        self,
        job: BatchJob,
        *,
        interval: float = 30.0,
        max_interval: float | None = None,
        timeout: float | None = None,
        progress: Callable[[BatchStatus], None] | None = None,
    ) -> BatchStatus:
        """Poll until the batch ends (or ``timeout`` passes).

        Args:
            job: The batch.
            interval: Seconds between polls.
            max_interval: When given, the wait doubles up to this while the counts do not
                change, and falls back to ``interval`` when they do.
            timeout: Give up waiting after this many seconds (the batch keeps running).
            progress: Called with every status polled.

        Returns:
            The last status (terminal unless the timeout passed first).
        """
        started = time.monotonic()
        wait = interval
        last: BatchCounts | None = None
        while True:
            status = self.poll(job)
            if progress is not None:
                progress(status)
            if status.terminal:
                return status
            wait = next_poll_wait(wait, interval, max_interval, last, status.counts)
            last = status.counts
            if timeout is not None and time.monotonic() - started + wait > timeout:
                return status
            self._sleep(wait)

    def collect(self, job: BatchJob, response_model: ResponseModels) -> list[BatchResult]:
        """Results of an ended batch, one per submitted custom_id, in submission order.

        Each reply is validated against its response model. Requests the provider reported as
        errored carry their fault kind; requests in neither the results nor the errors (or
        reported cancelled/expired) are :data:`~panelsynth.llm.batch.core.UNFINISHED`: resubmit
        only those.

        Raises:
            BatchError: The batch has not ended (``kind == "in_progress"``), or a transport
                failure.
        """
        status = self.poll(job)
        if not status.terminal:
            raise BatchError(
                "in_progress",
                f"{self.provider} batch {job.batch_id} is {status.state} "
                f"({status.counts.succeeded + status.counts.failed} of {status.counts.total} "
                "done); collect it once it has ended",
            )
        found = self._results(job, status, response_model)
        submitted = set(job.custom_ids)
        unknown = sorted(set(found) - submitted)
        if unknown:
            logger.warning(
                "%s batch %s: %d results for requests it did not submit (ignored): %s",
                self.provider,
                job.batch_id,
                len(unknown),
                ", ".join(unknown[:5]),
            )
        out: list[BatchResult] = []
        why = f"not processed: the batch is {status.state}"
        missing = UNFINISHED
        if status.state == "failed":
            why = f"the batch failed: {status.message or 'no reason given'}"
            # OpenAI fails a batch past the organisation's enqueued-token limit: a rate limit
            missing = "rate_limit" if "token_limit" in status.message else "bad_request"
        for cid in job.custom_ids:
            result = found.get(cid)
            if result is None:
                kind = missing
                result = failed_result(cid, kind, why, None)
            out.append(result)
        return out

    def cancel(self, job: BatchJob) -> BatchStatus:
        """Ask the provider to stop the batch; results finished so far stay collectable."""
        self._check(job)
        if not job.terminal:
            self._cancel(job)
        return self.poll(job)

    def _check(self, job: BatchJob) -> None:
        if job.provider != self.provider:
            raise BatchError(
                "bad_request",
                f"batch {job.batch_id} belongs to {job.provider}, not {self.provider}",
            )


def next_poll_wait(
    wait: float,
    interval: float,
    max_interval: float | None,
    last: BatchCounts | None,
    counts: BatchCounts,
) -> float:
    """The wait before the next poll: doubled (up to ``max_interval``) while the counts stand
    still, back to ``interval`` when they move; always ``interval`` without ``max_interval``."""
    if max_interval is None:
        return interval
    unchanged = last is not None and counts == last
    return min(max_interval, wait * 2) if unchanged else interval


#: Provider prefix -> its batch API class (filled by the adapter modules).
BATCH_APIS: dict[str, type[BatchApi]] = {}


def register_batch_api(cls: type[BatchApi]) -> type[BatchApi]:
    """Add a batch API class under its ``provider`` (usable as a decorator)."""
    BATCH_APIS[cls.provider] = cls
    return cls


def supports_batch(label: str) -> bool:
    """Whether a model label's provider has a batch API here."""
    try:
        provider, _ = parse_label(label)
    except ProviderError:
        return False
    return provider in BATCH_APIS


def make_batch_api(label: str, **kwargs: Any) -> BatchApi:
    """The batch API of a model label (``openai/gpt-4o-mini``, ``anthropic/claude-...``).

    Args:
        label: ``provider/model``.
        **kwargs: :class:`BatchApi` options (``api_key``, ``base_url``, ``timeout``,
            ``retry_policy``, ``on_retry``, ``sleep``).

    Raises:
        ProviderError: Malformed label, a provider without a batch API here, or no key.
    """
    provider, model = parse_label(label)
    cls = BATCH_APIS.get(provider)
    if cls is None:
        raise ProviderError(
            f"--batch is not available for provider '{provider}'; batch works with "
            f"{', '.join(sorted(BATCH_APIS))} — run without --batch"
        )
    return cls(model, **kwargs)


def api_for_job(job: BatchJob, **kwargs: Any) -> BatchApi:
    """The batch API that polls/collects/cancels a restored job (same provider and model)."""
    return make_batch_api(f"{job.provider}/{job.model}", **kwargs)
