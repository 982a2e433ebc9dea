"""The step-3 call seam over a provider batch: ``await transport.call(...)`` -> ``Completion``.

The step-3 loop starts every planned call as a task and awaits ``transport.call(batch,
messages, response_model, max_tokens=..., temperature=..., seed=...)``. Online, that is one
HTTP request; here the call is queued, and once the expected number of calls are queued (or
after ``linger`` seconds without a new one, or on :meth:`BatchTransport.flush`) they travel as
one provider batch (split when larger than the provider allows). The batch id goes to
``on_submitted`` at once (the run appends it to the wave's checkpoint), the batch is polled
with progress events, and each call gets its :class:`~panelsynth.llm.base.Completion` or
raises :class:`~panelsynth.llm.base.LLMCallError` with the kind an online call would raise.

A transport built with the jobs of a checkpoint (:meth:`BatchTransport.from_records`) answers a
call from the job that already holds it instead of submitting it again. Requests a batch did not
run (it expired) are resubmitted on their own; requests of a cancelled batch raise
:class:`BatchCancelledError` (nothing is recorded: ``--resume`` submits them again).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from panelsynth.errors import PanelsynthError
from panelsynth.llm.base import Completion, LLMCallError, Message, Usage
from panelsynth.llm.batch.api import BatchApi, next_poll_wait
from panelsynth.llm.batch.core import (
    UNFINISHED,
    BatchError,
    BatchRequest,
    BatchResult,
    BatchStatus,
    validate_reply,
)
from panelsynth.llm.batch.ids import (
    MAX_ID_PREFIX,
    call_index_of,
    consumed_answers,
    id_prefix_for,
)
from panelsynth.llm.batch.job import BatchJob, split_job_records
from panelsynth.llm.batch.prices import BatchPricing
from panelsynth.llm.structured import estimate_tokens
from panelsynth.progress import Progress, emit

logger = logging.getLogger("panelsynth")


@dataclass
class BatchCompletion(Completion[Any]):
    """A :class:`Completion` from a provider batch; ``via`` is the batch id that answered (the
    run writes it into the call record, so a resume never takes the same answer twice)."""

    via: str | None = None


class BatchCallError(LLMCallError):
    """A request the provider batch answered with a fault (counted like an online fault)."""

    def __init__(self, kind: str, message: str, usage: Usage | None, via: str) -> None:
        super().__init__(kind, message, usage)
        self.via = via


class BatchCancelledError(PanelsynthError):
    """A provider batch was cancelled before it ran some calls (they were not recorded)."""


class _Raw(BaseModel):
    """Any JSON object: a result collected before its call arrived, validated when it does."""

    model_config = ConfigDict(extra="allow")


@dataclass
class _Pending:
    batch: int
    request: BatchRequest
    future: asyncio.Future[Any]
    resubmits: int = 0
    books: Mapping[str, Any] | None = None


class _Models(Mapping[str, type[BaseModel]]):
    """Response models of a job's requests: the waiting call's, else :class:`_Raw`."""

    def __init__(self, job: BatchJob, waiting: Mapping[str, _Pending]) -> None:
        self.ids = set(job.custom_ids)
        self.waiting = waiting

    def __getitem__(self, cid: str) -> type[BaseModel]:
        if cid not in self.ids:
            raise KeyError(cid)
        p = self.waiting.get(cid)
        return p.request.response_model if p is not None else _Raw

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


class BatchTransport:
    """Step-3 calls through a provider batch API (see the module docstring).

    Args:
        api: The provider's batch API (:func:`~panelsynth.llm.batch.make_batch_api`).
        id_prefix: Prefix of every ``custom_id`` (default ``w{wave}-c``: ``w3-c00012`` is call
            12 of wave 3); the same in every process that works on the wave.
        expected: How many calls the first round holds (:meth:`expect` for later rounds).
        jobs: Jobs already submitted for this wave (from its checkpoint).
        consumed: ``(batch id, call index)`` already written to the checkpoint
            (:func:`consumed_answers`): never served again.
        on_submitted: Called with each new job right after the provider accepted it, before
            any poll; the run appends ``job.to_record()`` to the checkpoint there.
        progress: Receives ``batch-submitted``, ``batch-poll`` and ``batch-ended`` events.
        pricing: Batch prices (``BatchPricing.from_price``) for expected and actual cost.
        wave: Wave id, for events and messages.
        poll_interval: Seconds between polls; with ``max_poll_interval`` the wait doubles while
            the counts stand still.
        linger: Submit what is queued after this many seconds without a new call (``None``:
            only when ``expected`` calls are queued or on :meth:`flush`).
        max_resubmits: How often a request an expired batch did not run is submitted again.
        default_max_tokens: Reply budget of a call that gives none.
        books_of: ``books_of(batch)``: what to record with a call when it is submitted (in the
            job's ``books``; :meth:`recorded_books` gives it back in a later process).
    """

    def __init__(
        self,
        api: BatchApi,
        *,
        id_prefix: str | None = None,
        expected: int = 0,
        jobs: Iterable[BatchJob] = (),
        consumed: Iterable[tuple[str, int]] = (),
        on_submitted: Callable[[BatchJob], None] | None = None,
        progress: Progress | None = None,
        pricing: BatchPricing | None = None,
        wave: str | None = None,
        poll_interval: float = 30.0,
        max_poll_interval: float | None = 300.0,
        linger: float | None = 5.0,
        max_resubmits: int = 3,
        default_max_tokens: int = 4096,
        books_of: Callable[[int], Mapping[str, Any] | None] | None = None,
    ) -> None:
        if id_prefix is None:
            id_prefix = id_prefix_for(wave)
        if not re.fullmatch(rf"[A-Za-z0-9_-]{{0,{MAX_ID_PREFIX}}}", id_prefix):
            raise ValueError(
                f"id_prefix {id_prefix!r}: at most {MAX_ID_PREFIX} letters, digits, '_' or '-'"
            )
        self.api = api
        self.id_prefix = id_prefix
        self.on_submitted = on_submitted
        self.progress = progress
        self.pricing = pricing
        self.wave = wave
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.linger = linger
        self.max_resubmits = max_resubmits
        self.default_max_tokens = default_max_tokens
        self.books_of = books_of
        self.jobs: dict[str, BatchJob] = {}
        self._latest: dict[int, str] = {}  # call index -> the last job that holds it
        self._consumed = set(consumed)
        self._waiting: dict[str, dict[str, _Pending]] = {}  # batch id -> custom_id -> call
        self._results: dict[str, dict[str, BatchResult]] = {}  # batch id -> custom_id -> result
        self._estimate: dict[str, float] = {}  # batch id -> expected cost (USD), own jobs
        self._actual: dict[str, float] = {}  # batch id -> cost of its results, own jobs
        self._queue: list[_Pending] = []
        self._expected = expected
        self._arrived = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._collectors: dict[str, asyncio.Task[Any]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._lock: asyncio.Lock | None = None
        self._cancelling = False
        self._restored: set[str] = set()  # jobs of the checkpoint (submitted by another process)
        self._stale: set[str] = set()  # restored jobs already cancelled when first polled
        #: Counts of this process: requests submitted and resubmitted, results by kind.
        self.counts: dict[str, int] = {"submitted": 0, "resubmitted": 0}
        self.cost_usd = 0.0
        self.cache_write_tokens = 0
        for job in jobs:
            self._register(job)
            self._restored.add(job.batch_id)

    @classmethod
    def from_records(
        cls, api: BatchApi, records: Iterable[Mapping[str, Any]], **kwargs: Any
    ) -> tuple[BatchTransport, list[Mapping[str, Any]]]:
        """A transport that knows the jobs of a checkpoint's records, and the other records
        (the call records, for ``restore``): ``(transport, call_records)``."""
        jobs, others = split_job_records(records)
        jobs = [j for j in jobs if j.provider == api.provider]
        return cls(api, jobs=jobs, consumed=consumed_answers(others), **kwargs), others

    # -- ids ---------------------------------------------------------------------------------
    def custom_id(self, batch: int) -> str:
        """The ``custom_id`` of call ``batch``."""
        return f"{self.id_prefix}{batch:05d}"

    def call_index(self, custom_id: str) -> int | None:
        """The call index of a ``custom_id`` of this transport (``None``: not one of them)."""
        return call_index_of(custom_id, self.id_prefix)

    def _register(self, job: BatchJob) -> None:
        self.jobs[job.batch_id] = job
        self._waiting.setdefault(job.batch_id, {})
        for cid in job.custom_ids:
            b = self.call_index(cid)
            if b is not None:
                self._latest[b] = job.batch_id

    # -- the seam ----------------------------------------------------------------------------
    def expect(self, n: int) -> None:
        """The next ``n`` calls form one round: they are submitted as soon as all arrived."""
        self._expected, self._arrived = max(0, n), 0

    async def call(
        self,
        batch: int,
        messages: Sequence[Message],
        response_model: type[BaseModel],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.7,
        seed: int | None = None,
        **_: Any,
    ) -> Completion[Any]:
        """Queue call ``batch`` and wait for its answer.

        Raises:
            LLMCallError: The provider answered the request with a fault (its ``kind``), or the
                batch could not be submitted (nothing was billed).
            BatchCancelledError: The batch was cancelled before it ran the request.
            BatchError: The batch could not be polled or collected for good (it keeps running;
                its id is in the checkpoint).
        """
        loop = asyncio.get_running_loop()
        request = BatchRequest(
            self.custom_id(batch),
            messages,
            response_model,
            max_tokens or self.default_max_tokens,
            temperature,
            seed,
        )
        books = self.books_of(batch) if self.books_of is not None else None
        pending = _Pending(batch, request, loop.create_future(), books=books)
        self._arrived += 1
        job_id = self._latest.get(batch)
        if job_id is not None and (job_id, batch) not in self._consumed:
            self._consumed.add((job_id, batch))  # one answer serves one call
            self._attach(job_id, pending)
        else:
            self._queue.append(pending)
        self._schedule()
        return await pending.future

    async def flush(self) -> None:
        """Submit what is queued now (and wait for the submission, not for the results)."""
        self._stop_timer()
        await self._submit_queued()

    async def cancel(self) -> list[BatchStatus]:
        """Cancel every job of this transport that has not ended, at the provider. Results done
        before the cancel are still delivered; calls it did not run raise
        :class:`BatchCancelledError`."""
        self._cancelling = True
        out = []
        for job in list(self.jobs.values()):
            if not job.terminal:
                out.append(await asyncio.to_thread(self.api.cancel, job))
        return out

    def recorded_books(self, batch: int) -> Mapping[str, Any] | None:
        """The books recorded with call ``batch`` by the last job that holds it (``None``:
        none, e.g. a job of an earlier version)."""
        job_id = self._latest.get(batch)
        if job_id is None:
            return None
        return self.jobs[job_id].books.get(self.custom_id(batch))

    def pending_calls(self) -> list[int]:
        """Call indexes a recorded job holds whose answer is not booked yet: a resumed loop
        makes these calls (also top-up indexes beyond its first round) before new ones."""
        return sorted(b for b, job_id in self._latest.items() if (job_id, b) not in self._consumed)

    def running(self) -> list[BatchJob]:
        """Jobs that had not ended when last seen (left running by an interruption)."""
        return [j for j in self.jobs.values() if not j.terminal]

    async def aclose(self) -> None:
        """Stop polling (jobs keep running at the provider) and close the connections."""
        self._stop_timer()
        tasks = [*self._tasks, *self._collectors.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._collectors.clear()
        self._lock = None  # bound to this event loop
        left = self.running()
        if left:
            logger.warning(
                "%s batch %s keeps running at the provider (%d requests); its id is in the "
                "wave's checkpoint: --resume or `panelsynth batch collect` takes its results "
                "over, `panelsynth batch cancel` stops it",
                self.api.provider,
                ", ".join(j.batch_id for j in left),
                sum(len(j.custom_ids) for j in left),
            )
        self.api.close()

    def summary(self) -> dict[str, Any]:
        """What this process did through the batch API (for the manifest)."""
        return {
            "transport": "batch",
            "provider": self.api.provider,
            "batch_ids": list(self.jobs),
            **self.counts,
            "cost_usd": round(self.cost_usd, 6),
            "cache_write_tokens": self.cache_write_tokens,
        }

    # -- queueing and submission -------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        if self._expected and self._arrived >= self._expected:
            self._expected = self._arrived = 0
            self._stop_timer()
            self._spawn(self._submit_queued())
        elif self._queue and self.linger is not None:
            self._stop_timer()
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.linger, self._linger_ended)

    def _linger_ended(self) -> None:
        self._timer = None
        self._spawn(self._submit_queued())

    async def _submit_queued(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            items = [p for p in self._queue if not p.future.done()]
            self._queue.clear()
            if not items:
                return
            try:
                self._admit([p.request for p in items])
                chunks = self.api.split([p.request for p in items])
            except BatchError as err:
                self._fail_all(items, err)
                return
            except PanelsynthError as err:  # refused before submission (e.g. --max-cost)
                for p in items:
                    if not p.future.done():
                        p.future.set_exception(err)
                return
            by_id = {p.request.custom_id: p for p in items}
            for chunk in chunks:
                await self._submit([by_id[r.custom_id] for r in chunk])

    async def _submit(self, items: list[_Pending]) -> None:
        requests = [p.request for p in items]
        # shielded: an interrupt (Ctrl-C cancels the tasks) while the provider may be accepting
        # the batch waits for its answer and records the batch before it stops
        submitting = asyncio.ensure_future(asyncio.to_thread(self.api.submit, requests))
        try:
            job = await asyncio.shield(submitting)
        except asyncio.CancelledError as cancelled:
            try:
                job = await submitting
            except BatchError:
                raise cancelled from None
            self._record(job, items)
            raise
        except BatchError as err:
            self._fail_all(items, err)
            return
        if not self._record(job, items):
            return
        self.counts["submitted"] += len(items)
        self.counts["resubmitted"] += sum(1 for p in items if p.resubmits)
        self._estimate[job.batch_id] = self._expected_cost(requests)
        emit(self.progress, {**self._event("batch-submitted", job), "requests": len(items)})
        self._start_collector(job)

    def _record(self, job: BatchJob, items: list[_Pending]) -> bool:
        """Hand a new job to ``on_submitted``; one that cannot be recorded is cancelled."""
        job.books = {p.request.custom_id: dict(p.books) for p in items if p.books}
        try:
            if self.on_submitted is not None:
                self.on_submitted(job)
        except Exception as err:  # not recorded: stop it before it is billed
            logger.error(
                "%s batch %s could not be recorded (%s); cancelling it",
                self.api.provider,
                job.batch_id,
                err,
            )
            try:
                self.api.cancel(job)
            except BatchError as cancel_err:
                logger.error("cancelling batch %s failed: %s", job.batch_id, cancel_err)
            for p in items:
                if not p.future.done():
                    p.future.set_exception(err)
            return False
        self._register(job)
        for p in items:
            self._consumed.add((job.batch_id, p.batch))
            self._waiting[job.batch_id][p.request.custom_id] = p
        return True

    def _admit(self, requests: Sequence[BatchRequest]) -> None:
        """Called with the requests about to be submitted (all chunks); raise a
        :class:`~panelsynth.errors.PanelsynthError` to fail their calls instead. Accepts all."""

    @property
    def spent_usd(self) -> float:
        """What the batches this process submitted cost: the batch price of the results of
        those that ended, the ceiling of those still running (restored jobs: not counted)."""
        return sum(self._actual.get(j, ceiling) for j, ceiling in self._estimate.items())

    def _expected_cost(self, requests: Sequence[BatchRequest]) -> float:
        """Batch price of the prompts (characters / 4) and the reply budgets: a ceiling."""
        if self.pricing is None:
            return 0.0
        prompts = ("".join(m["content"] for m in r.messages) for r in requests)
        tokens_in = sum(estimate_tokens(text) for text in prompts)
        return self.pricing.cost(tokens_in, sum(r.max_tokens for r in requests))

    def _fail_all(self, items: list[_Pending], err: BatchError) -> None:
        for p in items:
            if not p.future.done():
                usage = Usage(attempts=0, faults={err.kind: 1})
                p.future.set_exception(LLMCallError(err.kind, str(err), usage))

    # -- polling and results -----------------------------------------------------------------
    def _attach(self, job_id: str, pending: _Pending) -> None:
        cid = pending.request.custom_id
        done = self._results.get(job_id)
        if done is not None and cid in done:
            self._deliver(self.jobs[job_id], pending, done[cid])
            if pending in self._queue:  # it did not run: submitted again at once
                self._spawn(self._submit_queued())
            return
        self._waiting[job_id][cid] = pending
        self._start_collector(self.jobs[job_id])

    def _start_collector(self, job: BatchJob) -> None:
        if job.batch_id not in self._collectors and job.batch_id not in self._results:
            self._collectors[job.batch_id] = asyncio.ensure_future(self._collect(job))

    def _event(self, name: str, job: BatchJob) -> dict[str, Any]:
        return {
            "event": name,
            "wave": self.wave,
            "provider": job.provider,
            "batch_id": job.batch_id,
        }

    async def _collect(self, job: BatchJob) -> None:
        started = time.monotonic()
        wait = self.poll_interval
        last = None
        try:
            while True:
                status = await asyncio.to_thread(self.api.poll, job)
                if last is None and job.batch_id in self._restored and status.terminal:
                    self._stale.add(job.batch_id)  # ended before this process: rerun the rest
                c = status.counts
                emit(
                    self.progress,
                    {
                        **self._event("batch-poll", job),
                        "state": status.state,
                        "requests": c.total,
                        "succeeded": c.succeeded,
                        "failed": c.failed,
                        "unfinished": c.unfinished,
                        "processing": c.processing,
                        "elapsed_seconds": round(time.monotonic() - started, 1),
                        "expected_cost_usd": round(self._estimate.get(job.batch_id, 0.0), 6),
                    },
                )
                if status.terminal:
                    break
                wait = next_poll_wait(wait, self.poll_interval, self.max_poll_interval, last, c)
                last = c
                await asyncio.sleep(wait)
            waiting = self._waiting[job.batch_id]
            results = await asyncio.to_thread(self.api.collect, job, _Models(job, waiting))
        except BatchError as err:  # the job keeps running; its calls are not recorded
            self._collectors.pop(job.batch_id, None)
            for p in self._waiting[job.batch_id].values():
                if not p.future.done():
                    p.future.set_exception(err)
            return
        self._results[job.batch_id] = {r.custom_id: r for r in results}
        self._collectors.pop(job.batch_id, None)
        self._book(job, results)
        for cid, p in list(self._waiting[job.batch_id].items()):
            self._deliver(job, p, self._results[job.batch_id][cid])
        self._waiting[job.batch_id].clear()
        if self._queue:  # requests the batch did not run, resubmitted at once
            self._spawn(self._submit_queued())

    def _book(self, job: BatchJob, results: list[BatchResult]) -> None:
        kinds: dict[str, int] = {}
        for r in results:
            key = "succeeded" if r.ok else str(r.kind)
            kinds[key] = kinds.get(key, 0) + 1
            self.counts[key] = self.counts.get(key, 0) + 1
            self.cache_write_tokens += r.cache_write_tokens
        cost = self.pricing.cost_of(results) if self.pricing is not None else 0.0
        self.cost_usd += cost
        if job.batch_id in self._estimate:  # submitted by this process
            self._actual[job.batch_id] = cost
        emit(
            self.progress,
            {**self._event("batch-ended", job), "state": job.status, **kinds, "cost_usd": cost},
        )

    def _deliver(self, job: BatchJob, p: _Pending, r: BatchResult) -> None:
        if p.future.done():
            return
        if r.ok:
            value = r.value
            model = p.request.response_model
            if not isinstance(value, model):  # collected before the call came: validate now
                assert value is not None
                r = validate_reply(
                    r.custom_id,
                    value.model_dump(),
                    model,
                    r.usage,
                    finish_reason=r.finish_reason,
                    cache_write_tokens=r.cache_write_tokens,
                )
        if r.ok:
            p.future.set_result(BatchCompletion(r.value, r.usage, r.finish_reason, job.batch_id))
            return
        if r.kind == UNFINISHED:
            if (job.status == "cancelled" or self._cancelling) and job.batch_id not in self._stale:
                p.future.set_exception(
                    BatchCancelledError(
                        f"{job.provider} batch {job.batch_id} was cancelled before it ran call "
                        f"{p.batch + 1} — rerun with --resume to submit what did not run"
                    )
                )
            elif p.resubmits >= self.max_resubmits:
                usage = Usage(attempts=0, faults={"timeout": 1})
                p.future.set_exception(
                    LLMCallError(
                        "timeout",
                        f"{job.provider} batch: call {p.batch + 1} was not run by "
                        f"{p.resubmits + 1} batches in a row ({r.message})",
                        usage,
                    )
                )
            else:
                p.resubmits += 1
                self._queue.append(p)
            return
        message = f"{job.provider} batch {job.batch_id}: {r.kind}: {r.message}"
        p.future.set_exception(BatchCallError(str(r.kind), message, r.usage, job.batch_id))
