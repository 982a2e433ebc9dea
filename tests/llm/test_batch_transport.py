"""BatchTransport, the step-3 call seam over provider batches, against the local batch stub."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from panelsynth.checkpoint import Checkpoint
from panelsynth.llm.base import Completion, LLMCallError, PromptMessages
from panelsynth.llm.batch import (
    BatchCallError,
    BatchCancelledError,
    BatchCompletion,
    BatchJob,
    BatchPricing,
    BatchTransport,
    make_batch_api,
)
from panelsynth.llm.retry import RetryPolicy
from panelsynth.pydantic_models.rows import RowSpec, batch_model, build_row_model
from tests.servers.batch_stub import BatchStub

KEY = "sk-stub-key-0123456789abcdef"
PROVIDERS = ("openai", "anthropic")
CREATE = {"openai": ("POST", "/v1/batches"), "anthropic": ("POST", "/v1/messages/batches")}
SPECS = [
    RowSpec("vaccimportant", "an ordinal", codes=(1, 2, 3, 4)),
    RowSpec("age", "a continuous", low=18, high=90, integer=True),
    RowSpec("cluster", "cluster", codes=(1, 2)),
]
ROW_MODEL = build_row_model(SPECS, name="Wave1Row")
RESPONSE = batch_model(ROW_MODEL, 3)
SHARED = "You generate synthetic survey respondents. Context of the wave. " * 4
PRICING = BatchPricing(3.0, 15.0, 0.5)


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


def make(provider: str, stub: BatchStub, **kw: Any) -> BatchTransport:
    api = make_batch_api(
        f"{provider}/stub-model",
        base_url=stub.base_url,
        retry_policy=RetryPolicy(max_retries=2, initial_wait=0.001, max_wait=0.01, jitter=0.0),
        sleep=lambda s: None,
    )
    kw.setdefault("wave", "1")
    kw.setdefault("poll_interval", 0.001)
    kw.setdefault("max_poll_interval", 0.002)
    kw.setdefault("linger", 0.05)
    kw.setdefault("pricing", PRICING)
    return BatchTransport(api, **kw)


def messages(b: int) -> PromptMessages:
    return PromptMessages(
        [
            {"role": "system", "content": "Answer with JSON only."},
            {"role": "user", "content": f"{SHARED}Request {b + 1}: generate exactly 3 rows."},
        ],
        len(SHARED),
    )


async def _drive(
    t: BatchTransport, batches: Sequence[int], limit: int | None = None
) -> dict[int, Any]:
    """What the step-3 loop does: every call a task (bounded by a limiter), results by index."""
    gate = asyncio.Semaphore(limit or len(batches) or 1)

    async def one(b: int) -> Any:
        async with gate:
            try:
                return await t.call(
                    b, messages(b), RESPONSE, max_tokens=300, temperature=0.7, seed=42 + b
                )
            except LLMCallError as err:
                return err

    try:
        out = await asyncio.gather(*(one(b) for b in batches))
    finally:
        await t.aclose()
    return dict(zip(batches, out, strict=True))


def drive(t: BatchTransport, batches: Sequence[int], limit: int | None = None) -> dict[int, Any]:
    return asyncio.run(_drive(t, batches, limit))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_n_calls_travel_as_one_batch_end_to_end(provider: str) -> None:
    jobs: list[BatchJob] = []
    events: list[dict[str, Any]] = []
    with BatchStub(polls_in_progress=2, cache_min_tokens=16) as stub:
        t = make(provider, stub, expected=12, on_submitted=jobs.append, progress=events.append)
        out = drive(t, range(12))
        assert stub.calls.count(CREATE[provider]) == 1
        batch = stub.batches[jobs[0].batch_id]
    assert len(jobs) == 1 and jobs[0].custom_ids == [f"w1-c{b:05d}" for b in range(12)]
    for comp in out.values():
        assert isinstance(comp, BatchCompletion) and isinstance(comp, Completion)
        assert type(comp.value) is RESPONSE and len(comp.value.rows) == 3
        assert all(ROW_MODEL.model_validate(r) for r in comp.value.rows)
        assert comp.via == jobs[0].batch_id and comp.usage.attempts == 1
        assert comp.usage.input_tokens > 0 and comp.usage.output_tokens > 0
    # the wire: our structured-output schema, seed, budget and temperature per request
    body = batch.requests[5]["body"]
    if provider == "openai":
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
        assert fmt["json_schema"]["schema"]["properties"]["rows"]["maxItems"] == 3
        assert body["seed"] == 47 and body["max_completion_tokens"] == 300
    else:
        assert body["tool_choice"] == {"type": "tool", "name": "SyntheticRespondents"}
        assert body["tools"][0]["input_schema"]["properties"]["rows"]["minItems"] == 3
        assert body["max_tokens"] == 300 and "seed" not in body
        assert body["messages"][-1]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["temperature"] == 0.7
    names = [e["event"] for e in events]
    assert names[0] == "batch-submitted" and names[-1] == "batch-ended"
    polls = [e for e in events if e["event"] == "batch-poll"]
    assert [p["state"] for p in polls] == ["in_progress", "in_progress", "completed"]
    assert polls[-1]["succeeded"] == 12 and polls[-1]["failed"] == 0
    assert all(p["expected_cost_usd"] > 0 and p["elapsed_seconds"] >= 0 for p in polls)
    assert events[-1]["succeeded"] == 12 and events[-1]["cost_usd"] == pytest.approx(t.cost_usd)
    usage = [c.usage for c in out.values()]
    cached = sum(u.cached_input_tokens for u in usage)
    assert cached > 0  # cache reads reported by the provider
    summary = t.summary()
    assert summary["submitted"] == 12 and summary["succeeded"] == 12
    assert summary["batch_ids"] == [jobs[0].batch_id] and summary["cost_usd"] > 0


def test_calls_held_by_a_limiter_are_sent_after_the_linger() -> None:
    """The loop's limiter lets only 2 calls in at a time: no deadlock, every call answered."""
    with BatchStub() as stub:
        out = drive(make("openai", stub, linger=0.02), range(6), limit=2)
        assert stub.creations() == 3
    assert all(isinstance(c, BatchCompletion) for c in out.values())


def _record(ckpt: Checkpoint) -> Any:
    return lambda job: ckpt.append(job.to_record())


@pytest.mark.parametrize("provider", PROVIDERS)
def test_kill_after_submission_then_a_new_transport_collects_the_same_batch(
    provider: str, tmp_path: Path
) -> None:
    ckpt = Checkpoint(tmp_path / "wave1.jsonl")
    ckpt.start({"fingerprint": "x"})
    with BatchStub(polls_in_progress=4) as stub:
        first = make(provider, stub, expected=6, on_submitted=_record(ckpt))

        async def killed() -> None:  # the process dies once the batch id is on disk
            tasks = [
                asyncio.ensure_future(first.call(b, messages(b), RESPONSE, max_tokens=300))
                for b in range(6)
            ]
            while not first.jobs:
                await asyncio.sleep(0.005)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await first.aclose()

        asyncio.run(killed())
        assert first.running() and stub.creations() == 1
        _, records = ckpt.load()
        assert [list(r) for r in records] == [["batch_job"]]
        second, calls = BatchTransport.from_records(
            make(provider, stub).api,
            records,
            wave="1",
            poll_interval=0.001,
            max_poll_interval=None,
            linger=0.05,
        )
        assert calls == [] and second.pending_calls() == list(range(6))
        out = drive(second, range(6), limit=2)  # results served to calls that come late too
        assert stub.calls.count(CREATE[provider]) == 1  # no second submission
    job_id = json.loads(ckpt.path.read_text().splitlines()[1])["batch_job"]["batch_id"]
    assert all(isinstance(c, BatchCompletion) and c.via == job_id for c in out.values())
    assert all(type(c.value) is RESPONSE for c in out.values())


def test_an_answer_already_in_the_checkpoint_is_not_served_again(tmp_path: Path) -> None:
    with BatchStub(fail_share=0.5, seed=1) as stub:
        jobs: list[BatchJob] = []
        out = drive(make("anthropic", stub, expected=4, on_submitted=jobs.append), range(4))
        failed = [b for b, c in out.items() if isinstance(c, BatchCallError)]
        assert len(failed) == 2 and all(out[b].via == jobs[0].batch_id for b in failed)
        records: list[dict[str, Any]] = [jobs[0].to_record()]
        for b, c in out.items():  # what the loop writes: successes and failures, with "via"
            if isinstance(c, BatchCallError):
                records.append({"batch": b, "failed": c.kind, "usage": {}, "via": c.via})
            else:
                records.append({"batch": b, "rows": c.value.rows, "via": c.via})
        stub.fail_share = 0.0
        again, _ = BatchTransport.from_records(
            make("anthropic", stub).api, records, wave="1", poll_interval=0.001, linger=0.02
        )
        assert again.pending_calls() == []  # every answer of the job is booked
        retry = drive(again, failed)  # the failed calls go to a new batch, not the old answer
        assert stub.creations() == 2
    assert all(isinstance(c, BatchCompletion) and c.via != jobs[0].batch_id for c in retry.values())


@pytest.mark.parametrize("provider", PROVIDERS)
def test_twenty_percent_failing_or_invalid_surface_per_call_and_are_topped_up(
    provider: str,
) -> None:
    with BatchStub(fail_share=0.1, invalid_share=0.1, seed=7) as stub:
        t = make(provider, stub, expected=20)
        out = drive(t, range(20))
        bad = {b: c for b, c in out.items() if isinstance(c, LLMCallError)}
        assert len(bad) == 4  # exactly 20 %
        kinds = sorted(c.kind for c in bad.values())
        assert kinds == ["invalid_output", "invalid_output", "rate_limit", "server_error"]
        for c in bad.values():  # counted like online faults: one fault of its kind
            assert c.usage.faults == {c.kind: 1} and str(c)
        for c in bad.values():  # invalid replies were billed, errored requests were not
            assert (c.usage.output_tokens > 0) == (c.kind == "invalid_output")
        # the loop tops up with new calls: one follow-up batch of exactly the missing count
        stub.fail_share = stub.invalid_share = 0.0
        top = make(provider, stub, expected=len(bad))
        more = drive(top, range(20, 20 + len(bad)))
        assert stub.creations() == 2
    valid = [c for c in [*out.values(), *more.values()] if isinstance(c, BatchCompletion)]
    assert len(valid) == 20 and sum(len(c.value.rows) for c in valid) == 60
    assert t.counts["succeeded"] == 16 and t.counts["invalid_output"] == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_expired_batch_is_resubmitted_only_for_what_it_did_not_run(provider: str) -> None:
    jobs: list[BatchJob] = []
    with BatchStub(expire_share=0.25, seed=2) as stub:

        def submitted(job: BatchJob) -> None:
            jobs.append(job)
            stub.expire_share = 0.0  # the follow-up batch runs everything

        out = drive(make(provider, stub, expected=8, on_submitted=submitted), range(8))
        unfinished = {c for c, o in stub.outcomes(jobs[0].batch_id).items() if o == "unfinished"}
        second = stub.batches[jobs[1].batch_id]
    assert len(jobs) == 2 and len(unfinished) == 2
    assert sorted(jobs[1].custom_ids) == sorted(unfinished)
    assert sorted(r["custom_id"] for r in second.requests) == sorted(unfinished)
    assert all(isinstance(c, BatchCompletion) for c in out.values())
    vias = {f"w1-c{b:05d}": c.via for b, c in out.items()}
    assert {vias[c] for c in unfinished} == {jobs[1].batch_id}


def test_a_call_expired_too_often_fails_as_a_timeout() -> None:
    with BatchStub(expire_share=1.0) as stub:
        out = drive(make("openai", stub, expected=2, max_resubmits=1), range(2))
        assert stub.creations() == 2
    assert all(isinstance(c, LLMCallError) and c.kind == "timeout" for c in out.values())


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cancel_delivers_what_ran_and_stops_the_rest(provider: str) -> None:
    with BatchStub(polls_in_progress=10**6, done_before_cancel=0.5) as stub:
        t = make(provider, stub, expected=6)

        async def run() -> dict[int, Any]:
            calls = [
                asyncio.ensure_future(t.call(b, messages(b), RESPONSE, max_tokens=300))
                for b in range(6)
            ]
            while not t.jobs:
                await asyncio.sleep(0.005)
            statuses = await t.cancel()
            # the poll after the cancel: "cancelling", or "cancelled" when a poll came between
            assert [s.state for s in statuses] in (["cancelling"], ["cancelled"])
            out = await asyncio.gather(*calls, return_exceptions=True)
            await t.aclose()
            return dict(enumerate(out))

        out = asyncio.run(run())
        assert stub.creations() == 1
    assert sum(isinstance(c, BatchCompletion) for c in out.values()) == 3
    stopped = [c for c in out.values() if isinstance(c, BatchCancelledError)]
    assert len(stopped) == 3 and "--resume" in str(stopped[0])
    assert not t.running()


def test_a_refused_submission_fails_every_call_with_its_kind() -> None:
    with BatchStub(api_key="sk-other-key-00000000000000") as stub:
        out = drive(make("openai", stub, expected=3), range(3))
    assert all(isinstance(c, LLMCallError) and c.kind == "auth" for c in out.values())
    assert all(c.usage.attempts == 0 and KEY not in str(c) for c in out.values())


def test_a_batch_that_cannot_be_recorded_is_cancelled() -> None:
    def disk_full(job: BatchJob) -> None:
        raise OSError(28, "No space left on device")

    with BatchStub(polls_in_progress=10**6) as stub:
        t = make("anthropic", stub, expected=2, on_submitted=disk_full)

        async def run() -> list[Any]:
            calls = [t.call(b, messages(b), RESPONSE, max_tokens=300) for b in range(2)]
            out = await asyncio.gather(*calls, return_exceptions=True)
            await t.aclose()
            return out

        out = asyncio.run(run())
        (batch,) = stub.batches.values()
        assert batch.cancel_requested
    assert all(isinstance(c, OSError) for c in out)


def test_project_batch_prices_online_batch_and_cached_from_the_table() -> None:
    from panelsynth.llm.batch import project_batch
    from panelsynth.prices import ModelPrice

    sonnet = ModelPrice(
        "anthropic/claude-x",
        3.0,
        15.0,
        0.3,
        3.75,
        batch_input_per_mtok=1.5,
        batch_output_per_mtok=7.5,
    )
    p = project_batch(sonnet, 10, 20_000, 5_000, prefix_tokens=1_500)
    online = (20_000 * 3.0 + 5_000 * 15.0) / 1e6
    assert p.online_usd == pytest.approx(online) and p.batch_usd == pytest.approx(online / 2)
    reads, write = 9 * 1_500, 1_500
    plain = 20_000 - reads - write
    cached = 0.5 * (3.0 * (plain + 0.1 * reads + 1.25 * write) + 15.0 * 5_000) / 1e6
    assert p.batch_cached_usd == pytest.approx(cached) and p.batch_cached_usd < p.batch_usd
    # a prefix shorter than the provider caches gets no discount
    short = project_batch(sonnet, 10, 20_000, 5_000, prefix_tokens=500)
    assert short.batch_cached_usd == pytest.approx(short.batch_usd)
    # no batch or cache price in the table: the documented multipliers (OpenAI: 0.5 and 0.5)
    mini = ModelPrice("openai/gpt-x", 0.4, 1.6)
    q = project_batch(mini, 4, 8_000, 2_000, prefix_tokens=1_800)
    assert q.batch_usd == pytest.approx(q.online_usd / 2)
    expected = 0.5 * (0.4 * (8_000 - 4 * 1_800 + 0.5 * 3 * 1_800 + 1_800) + 1.6 * 2_000) / 1e6
    assert q.batch_cached_usd == pytest.approx(expected)
    assert project_batch(mini, 0, 0, 0).online_usd == 0.0


def test_ctrl_c_leaves_the_batch_running_and_says_how_to_collect_or_cancel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with BatchStub(polls_in_progress=10**6) as stub:
        t = make("openai", stub, expected=3)

        async def interrupted() -> None:
            calls = [
                asyncio.ensure_future(t.call(b, messages(b), RESPONSE, max_tokens=300))
                for b in range(3)
            ]
            while not t.jobs:
                await asyncio.sleep(0.005)
            for c in calls:  # what asyncio.run does to the tasks on Ctrl-C
                c.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            await t.aclose()

        with caplog.at_level(logging.WARNING, logger="panelsynth"):
            asyncio.run(interrupted())
        (job,) = t.running()
        assert not stub.batches[job.batch_id].cancel_requested  # left running, not cancelled
    text = caplog.text
    assert job.batch_id in text and "batch collect" in text and "batch cancel" in text


def test_an_interrupt_during_submission_still_records_the_batch() -> None:
    recorded: list[BatchJob] = []
    with BatchStub(polls_in_progress=10**6) as stub:
        t = make("anthropic", stub, expected=2, on_submitted=recorded.append)
        submit = t.api.submit

        def slow_submit(requests: Any) -> BatchJob:
            time.sleep(0.3)  # the provider is still answering when Ctrl-C comes
            return submit(requests)

        t.api.submit = slow_submit  # type: ignore[method-assign]

        async def interrupted() -> None:
            calls = [
                asyncio.ensure_future(t.call(b, messages(b), RESPONSE, max_tokens=300))
                for b in range(2)
            ]
            await asyncio.sleep(0.1)  # submission under way
            for c in calls:
                c.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            await t.aclose()  # cancels the submission task: it waits for the answer first

        asyncio.run(interrupted())
        assert stub.creations() == 1
    assert [j.batch_id for j in recorded] == [j.batch_id for j in t.running()]
    assert len(recorded) == 1
