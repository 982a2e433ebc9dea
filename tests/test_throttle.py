"""Flow control of step 3: AIMD concurrency under 429s, RPM/TPM pacing (no timed assertions)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fakes import fake_answer, varied_rows, write_tiny_workspace
from servers.openai_stub import OpenAIStub

from panelsynth.generate import loop as generate  # the step-3 loop, where it is patched
from panelsynth.generate.throttle import AdaptiveConcurrency, RatePacer, Slot, call_slot, observe
from panelsynth.llm.base import FakeClient, LLMCallError, Usage
from panelsynth.llm.registry import make_client
from panelsynth.llm.retry import RetryPolicy
from panelsynth.run.wave import RunOptions, run_wave


class FakeClock:
    """A clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


# -- the limiter on its own -----------------------------------------------------------------
def test_decrease_is_multiplicative_once_per_epoch_and_increase_additive() -> None:
    lim = AdaptiveConcurrency(8)

    async def scenario() -> None:
        slots = [await lim.acquire() for _ in range(8)]
        assert lim.in_flight == 8 and lim.limit == 8
        for s in slots:  # eight 429s of one round: one decrease
            lim.rate_limited(s)
        assert lim.limit == 4 and lim.decreases == 1
        lim.rate_limited(slots[0])  # the same call, again under the new limit: halves again
        assert lim.limit == 2
        for s in slots:
            s.ok = True
            await lim.release(s, ok=True)
        # one more place per round of `limit` fresh successes: 2 -> 8 takes 2+3+...+7 of them;
        # slots[0] already made one (its last attempt ran under the current limit)
        n = 1
        while lim.limit < 8:
            s = await lim.acquire()
            await lim.release(s, ok=True)
            n += 1
        assert n == 2 + 3 + 4 + 5 + 6 + 7
        assert lim.increases == 6
        assert lim.summary()["final_limit"] == 8 and lim.summary()["min_limit"] == 2

    asyncio.run(scenario())


def test_acquire_waits_while_in_flight_is_at_the_limit() -> None:
    lim = AdaptiveConcurrency(2)
    order: list[str] = []

    async def call(name: str, hold: asyncio.Event) -> None:
        s = await lim.acquire()
        order.append(f"start {name} ({lim.in_flight})")
        await hold.wait()
        await lim.release(s, ok=True)

    async def scenario() -> None:
        gates = [asyncio.Event() for _ in range(3)]
        tasks = [asyncio.create_task(call(str(i), gates[i])) for i in range(3)]
        for _ in range(5):
            await asyncio.sleep(0)
        assert order == ["start 0 (1)", "start 1 (2)"]  # the third waits
        gates[0].set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert order[-1] == "start 2 (2)"
        gates[1].set()
        gates[2].set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())


def test_retry_after_pauses_new_starts() -> None:
    clock = FakeClock()
    lim = AdaptiveConcurrency(4, clock=clock, sleep=clock.sleep)

    async def scenario() -> None:
        s = await lim.acquire()
        lim.rate_limited(s, wait=3.0)
        await lim.acquire()  # must wait out the pause

    asyncio.run(scenario())
    assert sum(clock.slept) == pytest.approx(3.0)


def test_fixed_concurrency_never_moves() -> None:
    lim = AdaptiveConcurrency(4, adaptive=False)
    s = Slot(0)
    lim.rate_limited(s)
    assert lim.limit == 4 and lim.decreases == 0


def test_observe_counts_unhooked_429s_once() -> None:
    lim = AdaptiveConcurrency(8)
    s = Slot(lim.epoch)
    observe(lim, s, kind=None, faults={"rate_limit": 2})  # success after retries, no hook
    assert lim.limit == 4 and s.ok
    s2 = Slot(lim.epoch, rate_limited=True)
    observe(lim, s2, kind=None, faults={"rate_limit": 1})  # the hook already reported it
    assert lim.limit == 4


def test_call_slot_routes_the_clients_retry_hook() -> None:
    from panelsynth.llm.retry import RETRY_LISTENER

    lim = AdaptiveConcurrency(6)

    async def scenario() -> None:
        async with call_slot(lim) as slot:
            listener = RETRY_LISTENER.get()
            assert listener is not None
            await asyncio.to_thread(listener, "rate_limit", 0.0)  # as a sync client would
            listener("server_error", 0.0)  # other faults do not lower the limit
            assert slot.rate_limited
        assert RETRY_LISTENER.get() is None

    asyncio.run(scenario())
    assert lim.limit == 3


# -- pacing -----------------------------------------------------------------------------------
def test_tokens_per_minute_bucket() -> None:
    clock = FakeClock()
    pacer = RatePacer(tokens_per_minute=600, clock=clock, sleep=clock.sleep)

    async def scenario() -> list[int]:
        got = [await pacer.wait(300), await pacer.wait(300)]  # the full bucket: no wait
        assert clock.slept == []
        got.append(await pacer.wait(300))  # empty: 300 tokens take 30 s to refill
        pacer.settle(got[-1], 100)  # the call used only 100: 200 come back
        got.append(await pacer.wait(200))
        return got

    got = asyncio.run(scenario())
    assert got == [300, 300, 300, 200]
    assert clock.slept == [pytest.approx(30.0)]


def test_requests_per_minute_spacing() -> None:
    clock = FakeClock()
    pacer = RatePacer(requests_per_minute=120, clock=clock, sleep=clock.sleep)

    async def scenario() -> None:
        for _ in range(4):
            await pacer.wait()

    asyncio.run(scenario())
    assert clock.slept == [pytest.approx(0.5)] * 3


# -- through step 3 ---------------------------------------------------------------------------
class _Recording(AdaptiveConcurrency):
    made: list[AdaptiveConcurrency] = []

    def __post_init__(self) -> None:
        super().__post_init__()
        _Recording.made.append(self)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[AdaptiveConcurrency]:
    _Recording.made = []
    monkeypatch.setattr(generate, "AdaptiveConcurrency", _Recording)
    return _Recording.made


def test_429s_lower_concurrency_which_recovers_and_csv_is_unchanged(
    tmp_path: Path, recorded: list[AdaptiveConcurrency]
) -> None:
    policy = RetryPolicy(max_retries=4, initial_wait=0.001, max_wait=0.01, jitter=0.001)
    opts: dict[str, Any] = {"n_outputs": 2, "n_batches": 36}

    # the reference: the same answers, one call at a time, no fault (the stub's responder
    # called in-process, as the server would with these messages and this schema)
    def same_answers(messages: list[dict], model: type) -> Any:
        fmt = {"json_schema": {"schema": model.model_json_schema()}}
        return varied_rows({"messages": messages, "response_format": fmt})

    res = run_wave(
        write_tiny_workspace(tmp_path / "seq"),
        "2",
        FakeClient(default=same_answers),
        "m",
        RunOptions(concurrency=1, **opts),
    )
    csv = [res.output.read_bytes()]
    assert recorded[0].decreases == 0 and recorded[0].max_in_flight == 1

    with OpenAIStub(responder=varied_rows, latency=0.03) as stub:
        # steps 1-2, then 10 answers, then three 429s while 6 calls are in flight
        stub.script(*[None] * 12, *["rate_limit"] * 3)
        ws = write_tiny_workspace(tmp_path / "conc")
        client = make_client("openai/stub-model", base_url=stub.base_url, retry_policy=policy)
        res = run_wave(ws, "2", client, "m", RunOptions(concurrency=6, **opts))
        csv.append(res.output.read_bytes())
        assert stub.fault_counts()["rate_limit"] == 3
    lim = recorded[1]
    trace = [(e.event, e.in_flight, e.limit) for e in lim.trace]
    first_drop = next(i for i, e in enumerate(trace) if e[0] == "decrease")
    before, after = trace[:first_drop], trace[first_drop:]
    assert max(n for ev, n, _ in before if ev == "start") == 6  # full concurrency at first
    assert lim.min_limit_seen <= 3
    # after the drop, no call starts above the (lowered) limit ...
    assert all(n <= limit for ev, n, limit in after if ev == "start")
    assert any(ev == "start" and limit <= 3 for ev, _, limit in after)
    # ... and the limit climbs back, one step at a time, to 6 with 6 calls in flight again
    ups = [limit for ev, _, limit in after if ev == "increase"]
    assert ups == sorted(ups) and ups[-1] == 6
    last_up = max(i for i, e in enumerate(after) if e[0] == "increase")
    assert any(ev == "start" and n == 6 for ev, n, _ in after[last_up:])
    assert res.manifest_data["throttle"]["decreases"] >= 1
    assert res.manifest_data["throttle"]["final_limit"] == 6
    assert csv[0] == csv[1]  # ordered by batch index: timing and faults change nothing


def test_final_rate_limit_failure_lowers_concurrency(
    tiny_workspace: Path, recorded: list[AdaptiveConcurrency]
) -> None:
    err = LLMCallError("rate_limit", "429 after retries", Usage(attempts=3, retries=2))

    def respond(messages: list[dict], model: type) -> Any:
        if model.__name__ == "SyntheticRespondents" and "Request 2:" in messages[-1]["content"]:
            return err
        return fake_answer(messages, model)

    res = run_wave(
        tiny_workspace,
        "2",
        FakeClient(default=respond),
        "fake",
        RunOptions(n_outputs=2, n_batches=6, concurrency=4),
    )
    assert res.rows == 12
    assert recorded[0].decreases == 1 and recorded[0].min_limit_seen == 2
    assert res.manifest_data["throttle"]["max_concurrency"] == 4


def test_tokens_per_minute_limit_paces_step3(
    tiny_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    made: list[RatePacer] = []

    class Paced(RatePacer):
        def __post_init__(self) -> None:
            self.clock, self.sleep = clock, clock.sleep
            super().__post_init__()
            made.append(self)

    monkeypatch.setattr(generate, "RatePacer", Paced)
    res = run_wave(
        tiny_workspace,
        "2",
        FakeClient(default=fake_answer),
        "fake",
        RunOptions(n_outputs=2, n_batches=4, concurrency=4, tokens_per_minute=2000),
    )
    pacer = made[0]
    assert pacer.tokens_per_minute == 2000 and res.rows == 8
    # each call reserves its prompt + max_tokens (> 500 tokens): 4 calls cannot all start at once
    assert clock.slept and pacer.waited == pytest.approx(sum(clock.slept))
    assert res.manifest_data["throttle"]["rate_wait_seconds"] == pytest.approx(
        pacer.waited, abs=1e-3
    )
    assert res.manifest_data["settings"]["tokens_per_minute"] == 2000
