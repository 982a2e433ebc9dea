"""``panelsynth run --batch``: step 3 of every wave through the provider's batch API.

Steps 1-2 stay online (two calls, cached). Step 3's calls go through a
:class:`RunBatchTransport` (the :class:`~panelsynth.llm.batch.BatchTransport` seam plus what a
run adds: the jobs of the wave's checkpoint taken over on ``--resume``, the ``--max-cost`` check
of each batch before it is submitted and of each online top-up call, counting what this
invocation spends, and ``--top-up online``). Every job is appended to the
wave's checkpoint the moment the provider accepts it, so a resume collects the same batch
instead of paying twice. See ``docs/batch.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from panelsynth import faultpoint
from panelsynth.checkpoint import Checkpoint
from panelsynth.config import PanelsynthConfig
from panelsynth.errors import BudgetExceededError, ProviderError
from panelsynth.generate import OnlineTransport
from panelsynth.llm.base import Completion, LLMClient, Message
from panelsynth.llm.batch import (
    BatchApi,
    BatchJob,
    BatchPricing,
    BatchRequest,
    BatchTransport,
    consumed_answers,
    make_batch_api,
    split_job_records,
    supports_batch,
)
from panelsynth.llm.batch.ids import call_index_of, id_prefix_for
from panelsynth.llm.structured import estimate_tokens
from panelsynth.progress import Progress
from panelsynth.run.plan import RunPlan

log = logging.getLogger("panelsynth")

#: Builds the run's batch API (the CLI passes one with the key it resolved).
BatchApiFactory = Callable[[], BatchApi]

TOP_UP_MODES = ("batch", "online")
#: Seconds between the polls of a provider batch (doubling up to ``MAX_POLL_INTERVAL`` while its
#: counts stand still): batches take minutes to hours.
POLL_INTERVAL = 30.0
MAX_POLL_INTERVAL = 300.0


def check_batch(client: LLMClient) -> None:
    """Refuse ``--batch`` (one line, before any call) where no provider batch API serves it.

    Raises:
        ProviderError: a model on this machine, an OpenAI-compatible server (``--base-url``), or
            a provider without a batch API here.
    """
    label = client.label
    if client.is_local:
        raise ProviderError(
            f"--batch sends step 3 to a provider's batch API (openai, anthropic); {label} runs "
            f"on this machine — run without --batch"
        )
    host = getattr(client, "endpoint_host", None)
    if host:
        raise ProviderError(
            f"--batch sends step 3 to the provider's own batch API, but {label} is served by "
            f"{host} (--base-url or OPENAI_BASE_URL) — run without --batch, or without that "
            f"address"
        )
    if not supports_batch(label):
        make_batch_api(label)  # raises the one line naming the providers that have one


class RunBatchTransport(BatchTransport):
    """:class:`BatchTransport` as a wave run uses it (see the module docstring).

    Args:
        online: The online transport (steps 1-2's client): ``--top-up online`` rounds.
        top_up: ``"batch"`` (top-up rounds are follow-up provider batches) or ``"online"``.
        budget_left: USD the run may still spend on step 3 (``--max-cost``), ``None``: no limit.
        hooks: The loop's per-batch hooks (its prompt). Where they keep books per call (a
            calibrated prompt's ``call_books``/``restore_call_books``: the profiles a call asks
            for), the books go into the job record at submission and come back on ``--resume``
            for the calls whose answers are still pending.
        **kwargs: :class:`BatchTransport` arguments.
    """

    def __init__(
        self,
        api: BatchApi,
        *,
        online: OnlineTransport,
        top_up: str = "batch",
        budget_left: Callable[[], float] | None = None,
        hooks: object | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("books_of", getattr(hooks, "call_books", None))
        super().__init__(api, **kwargs)
        self.hooks = hooks
        self.online = online
        self.top_up = top_up
        self.budget_left = budget_left
        self.online_calls = 0
        self._online_held = 0.0  # the ceilings of the online top-up calls in flight
        self._rounds = 0
        self._queued = True

    def adopt(self, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Take over the jobs of the wave's checkpoint; return its call records (for the loop)."""
        jobs, calls = split_job_records(records)
        for job in jobs:
            if job.provider == self.api.provider:
                self._register(job)
                self._restored.add(job.batch_id)
        self._consumed |= consumed_answers(calls)
        restore = getattr(self.hooks, "restore_call_books", None)
        for b in self.pending_calls() if restore is not None else []:
            books = self.recorded_books(b)
            if books:
                restore(b, books)  # a call asked before the resume keeps what it asked for
        return [dict(c) for c in calls]

    def queues_next_round(self) -> bool:
        """The first round goes to the batch API; top-ups too unless ``--top-up online``."""
        self._queued = self.top_up == "batch" or self._rounds == 0
        self._rounds += 1
        return self._queued

    def expect(self, n: int) -> None:
        if self._queued:
            super().expect(n)

    async def call(
        self,
        batch: int,
        messages: Sequence[Message],
        response_model: type[BaseModel],
        **kwargs: Any,
    ) -> Completion[Any]:
        if self._queued:
            return await super().call(batch, messages, response_model, **kwargs)
        # --top-up online: the client's own limit knows only the online calls; this one also
        # counts the batches this invocation submitted
        ceiling = self._online_ceiling(messages, kwargs.get("max_tokens"))
        self._fit(ceiling, "an online top-up call", after=" after this run's provider batches")
        self.online_calls += 1
        self._online_held += ceiling
        try:
            return await self.online.call(batch, list(messages), response_model, **kwargs)
        finally:
            self._online_held -= ceiling

    def _left(self) -> float:
        """USD of ``--max-cost`` this invocation has not spent (its steps 1-2 and online calls,
        the batches it submitted); infinite without a limit. Batches recorded by an earlier
        invocation (and their calls, collected now) were paid by it and do not count."""
        if self.budget_left is None or self.pricing is None:
            return float("inf")
        return self.budget_left() - self.spent_usd

    def _online_ceiling(self, messages: Sequence[Message], max_tokens: int | None) -> float:
        """The most one online call may cost: its prompt (characters / 4) and its whole reply
        budget at online prices."""
        if self.pricing is None:
            return 0.0
        prompt = estimate_tokens("".join(m["content"] for m in messages))
        usd = self.pricing.cost(prompt, max_tokens or self.default_max_tokens)
        return usd / self.pricing.batch_multiplier

    def _admit(self, requests: Sequence[BatchRequest]) -> None:
        """``--max-cost``: the ceiling of a batch at batch prices must fit what this invocation
        has left, before it is submitted (only the requests submitted now count)."""
        what = f"the next provider batch of {len(requests)} calls"
        self._fit(self._expected_cost(requests), what, at=" at batch prices")

    def _fit(self, ceiling: float, what: str, *, at: str = "", after: str = "") -> None:
        """Raise :class:`BudgetExceededError` when ``ceiling`` exceeds what is left."""
        left = self._left() - self._online_held
        if ceiling > left:
            raise BudgetExceededError(
                f"{what} could cost up to ${ceiling:.4f}{at}, more than the "
                f"${max(0.0, left):.4f} left of --max-cost{after}; nothing was sent to the "
                f"provider — raise --max-cost and rerun with --resume"
            )

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.online.aclose()

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "top_up": self.top_up,
            "online_top_up_calls": self.online_calls,
        }


def open_transport(
    client: LLMClient,
    ckpt: Checkpoint,
    wave: str,
    config: PanelsynthConfig,
    *,
    top_up: str,
    max_cost_usd: float | None,
    progress: Progress | None,
    factory: BatchApiFactory | None = None,
    hooks: object | None = None,
) -> RunBatchTransport:
    """The step-3 transport of one wave of a ``--batch`` run (jobs go to ``ckpt`` at once;
    ``hooks``: the loop's prompt, whose books per call are recorded with them)."""
    from panelsynth.prices import price_for

    check_batch(client)
    api = factory() if factory is not None else make_batch_api(client.label)
    price = price_for(client.label, config)
    pricing = BatchPricing.from_price(price) if price is not None else None

    def record(job: BatchJob) -> None:
        ckpt.append(job.to_record())  # at once: this line makes the batch resumable
        log.info("wave %s: %s batch %s submitted", wave, job.provider, job.batch_id)
        faultpoint.reach("after-batch-submitted")

    def left() -> float:
        spent = float(getattr(client, "spent_usd", 0.0))  # steps 1-2 and online top-ups
        return float(max_cost_usd or 0.0) - spent

    return RunBatchTransport(
        api,
        online=OnlineTransport(client),
        top_up=top_up,
        budget_left=left if max_cost_usd is not None else None,
        hooks=hooks,
        wave=wave,
        on_submitted=record,
        progress=progress,
        pricing=pricing,
        poll_interval=POLL_INTERVAL,
        max_poll_interval=max(POLL_INTERVAL, MAX_POLL_INTERVAL),
    )


def step3_batch(
    plan: RunPlan,
    client: LLMClient,
    ckpt: Checkpoint,
    wave: str,
    progress: Progress | None,
    factory: BatchApiFactory | None,
    hooks: object | None = None,
) -> tuple[RunBatchTransport | None, BatchBooks | None]:
    """The step-3 transport and books of a wave of ``plan`` ((None, None): online); ``hooks``:
    the loop's prompt (see :class:`RunBatchTransport`)."""
    if not plan.batch:
        return None, None
    transport = open_transport(
        client,
        ckpt,
        wave,
        plan.config,
        top_up=plan.top_up,
        max_cost_usd=plan.max_cost_usd,
        progress=progress,
        factory=factory,
        hooks=hooks,
    )
    return transport, BatchBooks(transport)


@dataclass
class BatchBooks:
    """What the manifest says about a ``--batch`` wave: the transport's summary and step 3's
    cost at batch prices (online prices for ``--top-up online`` calls)."""

    transport: RunBatchTransport

    def section(self) -> dict[str, Any]:
        return self.transport.summary()

    def apply(self, cost: dict[str, Any], calls: Iterable[Any]) -> dict[str, Any]:
        """``cost`` (the manifest's, at online prices) with step 3 priced as it was billed."""
        pricing = self.transport.pricing
        if pricing is None or cost.get("usd") is None or "per_stage" not in cost:
            return {**cost, "batch": "no price known: batch cost not computed"}
        from panelsynth.prices import ModelPrice

        online = ModelPrice(**cost["prices"]) if cost.get("prices") else None
        via_batch = via_online = 0.0
        writes = 0
        for c in calls:
            u = c.usage
            if getattr(c, "via", None):  # cache writes (Anthropic) priced as written, restored
                writes += u.cache_write_tokens  # calls included (their records carry them)
                via_batch += pricing.cost(
                    u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cache_write_tokens
                )
            elif online is not None:
                via_online += online.cost(
                    u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cache_write_tokens
                )
        step3 = via_batch + via_online
        per_stage = {**cost["per_stage"], "step3": step3}
        return {
            **cost,
            "usd": sum(per_stage.values()),
            "per_stage": per_stage,
            "batch": {
                "step3_batch_usd": via_batch,
                "cache_write_tokens": writes,
                "step3_online_usd": via_online,
                "batch_multiplier": pricing.batch_multiplier,
                "note": "step-3 calls from provider batches at batch prices, online top-ups "
                "and steps 1-2 at online prices",
            },
        }


def unfinished_jobs(ckpt: Checkpoint, wave: str) -> list[BatchJob]:
    """Jobs of a wave's checkpoint with calls whose answers are not booked (may still run)."""
    try:
        _, records = ckpt.load()
    except Exception:  # noqa: BLE001 - an unreadable checkpoint: nothing to say
        return []
    jobs, calls = split_job_records(records)
    booked = consumed_answers(calls)
    out = []
    prefix = id_prefix_for(wave)
    for job in jobs:
        idx = [call_index_of(c, prefix) for c in job.custom_ids]
        if any(b is not None and (job.batch_id, b) not in booked for b in idx):
            out.append(job)
    return out


def interrupt_message(
    ckpt: Checkpoint, workspace: str, model_dir: str, wave: str, resume_hint: str
) -> str:
    """What Ctrl-C prints about the wave's provider batches ('' when there are none left)."""
    import shlex

    jobs = unfinished_jobs(ckpt, wave)
    if not jobs:
        return ""
    where = ["--workspace", workspace, "--model-dir", model_dir, "--wave", wave]
    collect = shlex.join(["panelsynth", "batch", "collect", *where])
    cancel = shlex.join(["panelsynth", "batch", "cancel", *where])
    ids = ", ".join(f"{j.batch_id}" for j in jobs)
    return (
        f"{jobs[0].provider} batch {ids} keeps running at the provider (billed for what it "
        f"finishes): `{resume_hint}` or `{collect}` takes its results over, `{cancel}` stops it."
    )


def batch_factory(label: str, api_key: str | None) -> BatchApiFactory:
    """A factory of ``label``'s batch API with the key the run resolved."""
    return lambda: make_batch_api(label, api_key=api_key)
