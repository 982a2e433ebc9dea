"""The step-3 loop: concurrent, throttled calls through a transport, each finished call
checkpointed at once, invalid rows topped up, the books kept."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd
from pydantic import BaseModel

from panelsynth.checkpoint import Checkpoint
from panelsynth.errors import (
    BlockedCallError,
    BudgetExceededError,
    PanelsynthError,
)
from panelsynth.generate.prompt import GenerationPrompt, estimate_output_tokens
from panelsynth.generate.rows import row_key
from panelsynth.generate.settings import GenerationSettings
from panelsynth.generate.throttle import AdaptiveConcurrency, RatePacer, Slot, call_slot, observe
from panelsynth.llm.base import (
    Completion,
    LLMCallError,
    LLMClient,
    Message,
    Usage,
)
from panelsynth.progress import Progress
from panelsynth.pydantic_models.rows import batch_model, validate_rows

log = logging.getLogger("panelsynth")


@dataclass
class CallRecord:
    stage: str
    batch: int | None
    usage: Usage
    ok: bool
    kind: str | None = None
    #: The provider batch that answered the call (``None``: an online call).
    via: str | None = None


@dataclass
class GenerationResult:
    rows: pd.DataFrame
    calls: list[CallRecord]
    invalid_rows: int
    returned_rows: int
    failed_calls: int
    faults: dict[str, int]
    resumed_batches: int
    wall_seconds: float
    batches_used: int
    copies_dropped: int = 0
    throttle: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Finished:
    """A made call: its checkpoint record, its usage and, for a failed call, the failure kind."""

    record: dict[str, Any]
    usage: Usage
    error: str | None


class _Breaker(Exception):
    pass


class Transport(Protocol):
    """How the step-3 loop sends one call (see :mod:`panelsynth.generate.strategy`).

    A transport that queues calls (a provider batch) may also have ``adopt(records) ->
    call_records`` (take over the checkpoint's lines before the loop restores its calls),
    ``pending_calls() -> [batch]`` (calls it already holds answers for: made first),
    ``queues_next_round() -> bool`` (the next round is queued: no concurrency cap, no RPM/TPM
    pacing) and ``expect(n)`` (the next ``n`` calls form one round); ``aclose()`` ends it.
    """

    async def call(
        self,
        batch: int,
        messages: list[Message],
        response_model: type[BaseModel],
        **kwargs: Any,
    ) -> Completion[Any]:
        """The completion of one call (raises :class:`LLMCallError` when it failed for good)."""
        ...


class OnlineTransport:
    """Each call sent at once through the client (its retries and back-off included)."""

    def __init__(self, client: LLMClient) -> None:
        self.client = client

    async def call(
        self,
        batch: int,
        messages: list[Message],
        response_model: type[BaseModel],
        **kwargs: Any,
    ) -> Completion[Any]:
        return await self.client.acreate(messages, response_model, **kwargs)

    async def aclose(self) -> None:
        closer = getattr(self.client, "aclose", None)  # the SDK's pool, before the loop ends
        if closer is not None:
            await closer()


def shared_throttle(settings: GenerationSettings) -> tuple[AdaptiveConcurrency, RatePacer]:
    """A limit on calls in flight and a rate pacer: one loop's, or shared by loops run together."""
    return (
        AdaptiveConcurrency(settings.concurrency, adaptive=settings.adaptive_concurrency),
        RatePacer(settings.requests_per_minute, settings.tokens_per_minute),
    )


class _Runner:
    """Runs the batches of one wave concurrently and keeps the books."""

    def __init__(
        self,
        client: LLMClient,
        prompt: GenerationPrompt,
        row_model: type[BaseModel],
        columns: Sequence[str],
        settings: GenerationSettings,
        checkpoint: Checkpoint,
        progress: Progress | None,
        wave: str,
        transport: Transport | None = None,
        throttle: tuple[AdaptiveConcurrency, RatePacer] | None = None,
    ) -> None:
        self.client = client
        self.transport = transport or OnlineTransport(client)
        self.prompt = prompt
        self.row_model = row_model
        self.columns = list(columns)
        self.s = settings
        self.ckpt = checkpoint
        self.progress = progress
        self.wave = wave
        self.response_model = batch_model(row_model, settings.n_outputs)
        self.max_tokens = settings.max_tokens or estimate_output_tokens(
            client, pd.DataFrame(columns=self.columns), settings.n_outputs
        )
        self.done: dict[int, list[dict[str, Any]]] = {}
        self.calls: list[CallRecord] = []
        self.invalid = 0
        self.returned = 0
        self.failed = 0
        self.faults: dict[str, int] = {}
        self.consecutive_failures = 0
        self.next_batch = 0
        self.exclude: set[tuple[Any, ...]] = set()  # keys of rows a synthetic row must not copy
        self.exclude_columns = self.columns  # ... over these columns
        self.copies = 0
        #: Why no more calls start: the spending limit, or the rows a request needs never came.
        self.stopped: PanelsynthError | None = None
        self.calls_before = 0  # calls restored from the checkpoint (the budget is per invocation)
        # shared by several waves' loops run together (a panel): one limit on calls in flight
        self.limiter, self.pacer = throttle or shared_throttle(settings)
        #: The current round is queued by the transport (a provider batch): no cap, no pacing.
        self.queued = False
        self._open: AdaptiveConcurrency | None = None  # no cap: made for the first such round
        #: Close the transport when the loop ends (not when loops sharing it run together).
        self.close_transport = True
        self._call_tokens: int | None = None
        # checkpoint lines are fsync'ed in one worker thread, in order, off the event loop
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="panelsynth-checkpoint")

    # -- books -------------------------------------------------------------------------------
    def restore(self, records: list[dict[str, Any]]) -> int:
        restored = 0
        for r in records:
            usage = Usage(
                **{k: v for k, v in r.get("usage", {}).items() if k in Usage.__dataclass_fields__}
            )
            b = int(r["batch"])
            self.next_batch = max(self.next_batch, b + 1)
            via = r.get("via")
            if r.get("failed"):
                self.failed += 1
                self._count_faults(usage.faults or {r["failed"]: 1})
                self.calls.append(CallRecord("generate", b, usage, False, r["failed"], via))
                continue
            self.done[b] = r["rows"]
            self.prompt.restore(r)
            self.invalid += int(r.get("invalid", 0))
            self.copies += int(r.get("copies", 0))
            self.returned += int(r.get("returned", len(r["rows"])))
            self.calls.append(CallRecord("generate", b, usage, True, via=via))
            restored += 1
            self._count_faults(usage.faults)
            if r.get("copies"):
                self._count_faults({"copied_rows": int(r["copies"])})
            if r.get("off_profile"):
                self._count_faults({"off_profile_rows": int(r["off_profile"])})
        self.calls_before = len(self.calls)
        return restored

    def _count_faults(self, faults: dict[str, int]) -> None:
        for k, v in faults.items():
            self.faults[k] = self.faults.get(k, 0) + v

    @property
    def accepted(self) -> int:
        return sum(len(v) for v in self.done.values())

    def _emit(self) -> None:
        if self.progress:
            self.progress(
                {
                    "rows": min(self.accepted, self.s.wanted),
                    "wanted": self.s.wanted,
                    "calls": len(self.calls),
                    "input_tokens": sum(c.usage.input_tokens for c in self.calls),
                    "output_tokens": sum(c.usage.output_tokens for c in self.calls),
                    "invalid_rows": self.invalid,
                }
            )

    # -- calls -------------------------------------------------------------------------------
    async def _pace(self) -> int:
        """Wait for the RPM/TPM limits; returns the tokens reserved for this call."""
        if not self.pacer.active or self.queued:
            return 0
        if self._call_tokens is None:
            probe = self.prompt.for_batch(0, self.s.n_outputs)
            text = "\n".join(m["content"] for m in probe)
            self._call_tokens = self.client.count_tokens(text) + self.max_tokens
        return await self.pacer.wait(self._call_tokens)

    async def _one(self, batch: int) -> None:
        try:  # before taking a place: a call waiting for its inputs holds none
            await self.prompt.ready(batch)
        except BlockedCallError as err:
            self.stopped = self.stopped or err
            return
        limiter = self._open if self.queued and self._open is not None else self.limiter
        async with call_slot(limiter) as slot:
            finished = await self._call(batch, slot)
        if finished is None:
            return
        # The checkpoint write (fsync, in order in one thread) happens after the call's slot is
        # released: the next call need not wait for the disk.
        await self._save(finished.record)
        via = finished.record.get("via")
        if finished.error is not None:
            call = CallRecord("generate", batch, finished.usage, False, finished.error, via)
            self.calls.append(call)
        else:
            self.done[batch] = finished.record["rows"]
            self.invalid += finished.record["invalid"]
            self.returned += finished.record["returned"]
            self.calls.append(CallRecord("generate", batch, finished.usage, True, via=via))
            self.prompt.saved(finished.record)
        self._emit()

    async def _call(self, batch: int, slot: Slot) -> _Finished | None:
        """One step-3 call and the validation of its rows, holding ``slot``.

        Returns the checkpoint record to save, or ``None`` when the call was not made.
        """
        if self.stopped or self.consecutive_failures >= self.s.breaker_threshold:
            return None
        reserved = await self._pace()
        messages = self.prompt.for_batch(batch, self.s.n_outputs)
        try:
            comp = await self.transport.call(
                batch,
                messages,
                self.prompt.response_model(batch, self.response_model),
                max_tokens=self.max_tokens,
                temperature=self.s.temperature,
                seed=self.s.seed + batch,
            )
        except BudgetExceededError as err:  # nothing was sent; stop starting calls
            self.stopped = self.stopped or err
            return None
        except LLMCallError as err:
            observe(self.limiter, slot, kind=err.kind, faults=err.usage.faults)
            self.pacer.settle(reserved, err.usage.input_tokens + err.usage.output_tokens)
            self.failed += 1
            self.consecutive_failures += 1
            # every attempt's fault, as for calls that succeed after retries
            self._count_faults(err.usage.faults or {err.kind: 1})
            log.warning("wave %s: call %d failed (%s): %s", self.wave, batch + 1, err.kind, err)
            record = {"batch": batch, "failed": err.kind, "usage": err.usage.to_dict()}
            _add_via(record, err)
            return _Finished(record, err.usage, err.kind)
        observe(self.limiter, slot, kind=None, faults=comp.usage.faults)
        self.pacer.settle(reserved, comp.usage.input_tokens + comp.usage.output_tokens)
        rows = list(getattr(comp.value, "rows", []) or [])
        good, errors = validate_rows(rows, self.row_model, self.columns)
        for k, v in comp.usage.faults.items():
            self.faults[k] = self.faults.get(k, 0) + v
        if len(rows) != self.s.n_outputs:
            key = "too_few_rows" if len(rows) < self.s.n_outputs else "too_many_rows"
            self.faults[key] = self.faults.get(key, 0) + 1
        if errors:
            self.faults["invalid_rows"] = self.faults.get("invalid_rows", 0) + len(errors)
            log.debug("wave %s: call %d: %s", self.wave, batch + 1, "; ".join(errors[:3]))
        copies = 0
        if self.exclude:
            cols = self.exclude_columns
            kept = [r for r in good if row_key(r[c] for c in cols) not in self.exclude]
            copies = len(good) - len(kept)
            good = kept
            if copies:
                self._count_faults({"copied_rows": copies})
                self.copies += copies
        good = good[: self.s.n_outputs]
        good, off_rows, book = self.prompt.check_rows(batch, good)
        if off_rows:
            self._count_faults({"off_profile_rows": len(off_rows)})
        self.consecutive_failures = 0 if good else self.consecutive_failures + 1
        record = {
            "batch": batch,
            "rows": good,
            "returned": len(rows),
            "invalid": len(errors),
            "copies": copies,
            "errors": errors[:5],
            "usage": comp.usage.to_dict(),
            "finish_reason": comp.finish_reason,
            **book,
        }
        _add_via(record, comp)
        return _Finished(record, comp.usage, None)

    async def _save(self, record: dict[str, Any]) -> None:
        """Append a finished call to the checkpoint (write + fsync) without blocking the loop.

        Shielded: an interrupt (Ctrl-C cancels the tasks) never drops a line already handed over;
        :meth:`run` waits for every such line before it returns.
        """
        fut = asyncio.get_running_loop().run_in_executor(self._io, self.ckpt.append, record)
        await asyncio.shield(fut)

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self._io.shutdown(wait=True)  # every submitted checkpoint line is on disk
            closer = getattr(self.transport, "aclose", None)  # e.g. the SDK's pool
            if closer is not None and self.close_transport:
                await closer()

    def _round(self, n: int | None = None) -> int:
        """Start a round: whether the transport queues it, and its size (``n``: given)."""
        queues = getattr(self.transport, "queues_next_round", None)
        self.queued = bool(queues()) if queues is not None else False
        if self.queued and self._open is None:
            self._open = AdaptiveConcurrency(1 << 30, adaptive=False)
        if n is None:
            deficit = math.ceil((self.s.wanted - self.accepted) / self.s.n_outputs)
            remaining = self.s.max_calls - (len(self.calls) - self.calls_before)
            n = (
                min(remaining, deficit)
                if self.queued
                else min(remaining, deficit, self.s.concurrency)
            )
            n = max(0, n)
        expect = getattr(self.transport, "expect", None)
        if expect is not None and n:
            expect(n)
        return n

    async def _run(self) -> None:
        planned = [b for b in range(self.s.n_batches) if b not in self.done]
        # calls a resumed provider batch already holds (top-ups of an earlier process too)
        pending = getattr(self.transport, "pending_calls", None)
        held = [b for b in (pending() if pending is not None else []) if b not in self.done]
        later = sorted(b for b in held if b >= self.s.n_batches)
        if later:
            self.prompt.plan(later)
        planned = sorted(set(planned) | set(held))
        self._round(len(planned))
        await self._gather([self._one(b) for b in planned])
        self.next_batch = max(self.next_batch, self.s.n_batches, *(b + 1 for b in planned))
        while self.accepted < self.s.wanted and not self.stopped:
            if self.consecutive_failures >= self.s.breaker_threshold:
                raise _Breaker()
            n = self._round()
            if n <= 0:
                return
            batches = list(range(self.next_batch, self.next_batch + n))
            self.prompt.plan(batches)
            self.next_batch += n
            await self._gather([self._one(b) for b in batches])
        if self.consecutive_failures >= self.s.breaker_threshold and self.accepted < self.s.wanted:
            raise _Breaker()

    @staticmethod
    async def _gather(coros: list) -> None:
        tasks = [asyncio.ensure_future(c) for c in coros]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            # every call task ends here (Ctrl-C included), so none hands a line to the
            # checkpoint writer after :meth:`run` has shut it down
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


def _add_via(record: dict[str, Any], answer: object) -> None:
    """The provider batch that answered (a resume never takes the same answer twice)."""
    via = getattr(answer, "via", None)
    if via:
        record["via"] = via
