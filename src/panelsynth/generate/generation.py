"""Running the step-3 loop: one wave (:func:`generate_rows`), or several waves' loops together
in one event loop (:func:`run_together`, a panel's waves), and the books of a finished loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
from pydantic import BaseModel

from panelsynth.checkpoint import Checkpoint
from panelsynth.errors import GenerationExhaustedError
from panelsynth.generate.loop import GenerationResult, Transport, _Breaker, _Runner
from panelsynth.generate.prompt import GenerationPrompt
from panelsynth.generate.resume import load_for_resume
from panelsynth.generate.settings import GenerationSettings
from panelsynth.generate.throttle import AdaptiveConcurrency, RatePacer
from panelsynth.llm.base import LLMClient
from panelsynth.progress import Progress

log = logging.getLogger("panelsynth")


def generate_rows(*args: Any, **kwargs: Any) -> GenerationResult:
    """Collect ``n_outputs * n_batches`` valid rows, checkpointing every finished call: one
    :class:`Generation` (same arguments), run at once.

    Raises:
        GenerationExhaustedError: the call budget or the spending limit ran out, or failures
            persisted (circuit breaker); the checkpoint keeps every finished call and
            ``--resume`` continues.
    """
    gen = Generation(*args, **kwargs)
    _run_loop(gen.run())
    return gen.result()


class Generation:
    """One wave's loop of calls, set up (checkpoint started or taken over) but not yet run.

    :func:`generate_rows` runs one; :func:`run_together` runs several in one event loop (a
    panel's waves: a later wave's calls start as soon as their inputs exist), sharing one
    ``throttle`` (limit on calls in flight, rate pacer) when they were given the same one.

    Every call goes through ``transport`` (default: :class:`OnlineTransport` over ``client``).
    With ``resume``, the checkpoint's readable calls are taken over (:func:`load_for_resume`);
    ``accept_headerless`` resumes a checkpoint whose header is missing or unreadable.
    ``exclude_rows`` holds :func:`row_key` keys (over ``exclude_columns``, default ``columns``)
    of rows that must not be copied (real respondents, few-shot examples): a synthetic row equal
    to one is dropped, counted as ``copied_rows``, and topped up like an invalid row.
    """

    def __init__(
        self,
        client: LLMClient,
        prompt: GenerationPrompt,
        row_model: type[BaseModel],
        columns: Sequence[str],
        settings: GenerationSettings,
        checkpoint: Checkpoint,
        *,
        header: dict[str, Any],
        resume: bool,
        wave: str,
        progress: Progress | None = None,
        max_tokens: int | None = None,
        exclude_rows: set[tuple[Any, ...]] | None = None,
        accept_headerless: bool = False,
        transport: Transport | None = None,
        throttle: tuple[AdaptiveConcurrency, RatePacer] | None = None,
        exclude_columns: Sequence[str] | None = None,
    ) -> None:
        self.started = time.monotonic()
        self.settings, self.wave = settings, wave
        runner = _Runner(
            client, prompt, row_model, columns, settings, checkpoint, progress, wave, transport,
            throttle,
        )  # fmt: skip
        if max_tokens:
            runner.max_tokens = max_tokens
        runner.exclude = set(exclude_rows or ())
        if exclude_columns is not None:  # the keys of ``exclude_rows`` are over these columns
            runner.exclude_columns = list(exclude_columns)
        self.runner = runner
        self.resumed = 0
        self.broke = False
        if resume and checkpoint.exists():
            records = load_for_resume(checkpoint, header, accept_headerless=accept_headerless)
            adopt = getattr(runner.transport, "adopt", None)
            records = adopt(records) if adopt is not None else _calls_only(records, wave)
            self.resumed = runner.restore(records)
            log.info(
                "wave %s: resuming with %d finished calls (%d rows)",
                wave,
                self.resumed,
                runner.accepted,
            )
        else:
            checkpoint.start(header)
        runner._emit()

    async def run(self) -> None:
        """Make the calls (every finished one checkpointed); failures are kept for
        :meth:`result`."""
        try:
            await self.runner.run()
        except _Breaker:
            self.broke = True

    def result(self) -> GenerationResult:
        """The books of the run.

        Raises:
            GenerationExhaustedError: fewer rows than wanted (see :func:`generate_rows`), with the
                books so far as its ``result``.
        """
        runner, settings, wave = self.runner, self.settings, self.wave
        accepted = min(runner.accepted, settings.wanted)
        hint: str | None = None
        if self.broke:
            hint = _persistent_cause(runner) or (
                f"{runner.consecutive_failures} calls in a row failed or gave no valid row "
                f"(faults: {_faults_text(runner.faults)}); stopped early — fix the cause and "
                f"rerun with --resume"
            )
        elif runner.accepted < settings.wanted and runner.stopped is not None:
            hint = str(runner.stopped)
        elif runner.accepted < settings.wanted:
            hint = _persistent_cause(runner) or (
                f"the call budget ({settings.max_calls} calls) is used up (faults: "
                f"{_faults_text(runner.faults)}); rerun with --resume, or raise "
                f"generation.max_attempts_factor"
            )
        ordered = [row for b in sorted(runner.done) for row in runner.done[b]][: settings.wanted]
        result = GenerationResult(
            rows=pd.DataFrame(ordered, columns=runner.columns),
            calls=runner.calls,
            invalid_rows=runner.invalid,
            returned_rows=runner.returned,
            failed_calls=runner.failed,
            faults=runner.faults,
            resumed_batches=self.resumed,
            wall_seconds=time.monotonic() - self.started,
            batches_used=len(runner.done),
            copies_dropped=runner.copies,
            throttle={
                **runner.limiter.summary(),
                "rate_wait_seconds": round(runner.pacer.waited, 3),
            },
        )
        if hint is not None:
            error = GenerationExhaustedError(
                wave=wave,
                wanted=settings.wanted,
                accepted=accepted,
                attempts=len(runner.calls),
                hint=hint,
            )
            error.result = result  # the books so far, for the manifest of an incomplete run
            raise error
        return result


def run_together(
    generations: Sequence[Generation],
    *,
    finished: Callable[[int], None] | None = None,
    client: LLMClient | None = None,
) -> None:
    """Run several loops in one event loop; ``finished(i)`` is called when the ``i``-th ends.

    Their transports are not closed by each loop (they share ``client``'s connection pool); the
    client's pool is closed once, after the last. An interrupt cancels every loop (each keeps the
    checkpoint lines already handed over).
    """

    async def one(i: int, gen: Generation) -> None:
        await gen.run()
        if finished is not None:
            finished(i)

    async def main() -> None:
        for gen in generations:
            gen.runner.close_transport = False
        try:
            await _Runner._gather([one(i, g) for i, g in enumerate(generations)])
        finally:
            closer = getattr(client, "aclose", None)
            if closer is not None:
                await closer()

    _run_loop(main())


def _run_loop(coro: Any) -> None:
    """``asyncio.run`` with the objects that exist already frozen out of the garbage collector.

    They (pandas, the SDKs, the loaded model) live for the whole run; a full collection walking
    them takes ~0.1 s and stalls every call in flight. New garbage is still collected.
    """
    gc.freeze()
    try:
        asyncio.run(coro)
    finally:
        gc.unfreeze()


def _calls_only(records: list[dict[str, Any]], wave: str) -> list[dict[str, Any]]:
    """The call records, without the provider batches a ``--batch`` run recorded."""
    calls = [r for r in records if "batch_job" not in r]
    if len(calls) < len(records):
        log.warning(
            "wave %s: the checkpoint holds provider batches of a --batch run; this run is online "
            "and does not collect them (rerun with --batch --resume to take their results over)",
            wave,
        )
    return calls


def _persistent_cause(runner: _Runner) -> str | None:
    """The fix for failures that more calls cannot cure, whatever the call budget: a rejected
    key (401/403), or a server that never answers in time. ``None`` for anything else."""
    mine = runner.calls[runner.calls_before :]  # this invocation's calls, in finishing order
    last_ok = max((i for i, c in enumerate(mine) if c.ok), default=-1)
    failed = [c.kind for c in mine[last_ok + 1 :] if not c.ok]
    if not failed:
        return None
    faults = _faults_text(runner.faults)
    if "auth" in failed:
        return (
            f"the provider refused the request (401/403: auth; faults: {faults}) — check the key "
            f"/ permissions (that this key may use this model), then rerun with --resume"
        )
    if last_ok < 0 and set(failed) == {"timeout"}:
        return (
            f"no call was answered in time (faults: {faults}) — check the server, or raise "
            f"generation.timeout in panelsynth.toml, then rerun with --resume"
        )
    return None


def _faults_text(faults: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none"
