"""`panelsynth run --batch`: step 3 through the provider batch stub on 127.0.0.1 (issue 17).

Steps 1-2 are answered online by a fake client labelled ``openai/stub-model`` or
``anthropic/stub-model``; step 3 goes to :class:`tests.servers.batch_stub.BatchStub`.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # so that `tests.servers.batch_stub` imports from any cwd
    sys.path.insert(0, str(_REPO))

from fakes import fake_answer, write_tiny_workspace  # noqa: E402

from panelsynth.checkpoint import Checkpoint  # noqa: E402
from panelsynth.cli import app  # noqa: E402
from panelsynth.errors import GenerationExhaustedError  # noqa: E402
from panelsynth.llm.base import FakeClient  # noqa: E402
from panelsynth.llm.batch import (  # noqa: E402
    BatchCancelledError,
    BatchPricing,
    make_batch_api,
    split_job_records,
)
from panelsynth.llm.batch.core import CUSTOM_ID_PATTERN  # noqa: E402
from panelsynth.llm.batch.ids import call_index_of, id_prefix_for  # noqa: E402
from panelsynth.run import batch as run_batch  # noqa: E402
from panelsynth.run.wave import RunOptions, run_wave  # noqa: E402
from panelsynth.workspace import Workspace  # noqa: E402
from tests.servers.batch_stub import BatchStub  # noqa: E402

KEY = "sk-stub-key-0123456789abcdef"
PROVIDERS = ["openai", "anthropic"]


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setattr(run_batch, "POLL_INTERVAL", 0.02)
    monkeypatch.setattr(run_batch, "MAX_POLL_INTERVAL", 0.05)


@pytest.fixture
def stub() -> Iterator[BatchStub]:
    with BatchStub(polls_in_progress=1, lifetime=90) as s:
        yield s


def is_step3(call: dict[str, Any]) -> bool:
    return "rows" in call["response_model"].model_fields


def batch_run(
    ws: Path, wave: str, stub: BatchStub, provider: str, client: FakeClient | None = None, **opts
) -> Any:
    label = f"{provider}/stub-model"
    client = client or FakeClient(default=fake_answer, label=label)
    progress = opts.pop("progress", None)
    options = RunOptions(**{"n_outputs": 3, "n_batches": 10, "batch": True, **opts})
    return run_wave(
        ws,
        wave,
        client,
        "stub",
        options,
        progress=progress,
        batch_api=lambda: make_batch_api(label, base_url=stub.base_url),
    )


def checkpoint(ws: Path, wave: str) -> tuple[list[Any], list[dict[str, Any]]]:
    _, records = Checkpoint(Workspace(ws).checkpoint("stub", wave)).load()
    jobs, calls = split_job_records(records)
    return jobs, [dict(c) for c in calls]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_three_waves_end_to_end_at_batch_prices(
    provider: str, tmp_path: Path, stub: BatchStub
) -> None:
    ws = write_tiny_workspace(tmp_path / "ws", waves=("1", "2", "3"))
    with open(Workspace(ws).config_path, "a") as f:  # a price, so the cost is computed
        f.write(
            f'\n[prices."{provider}/stub-model"]\ninput_per_mtok = 2.0\noutput_per_mtok = 8.0\n'
        )
    client = FakeClient(default=fake_answer, label=f"{provider}/stub-model")
    events: list[dict[str, Any]] = []
    for wave in ("1", "2", "3"):
        label = f"{provider}/stub-model"
        res = run_wave(
            ws,
            wave,
            client,
            "stub",
            RunOptions(n_outputs=3, n_batches=4, batch=True),
            progress=events.append,
            batch_api=lambda label=label: make_batch_api(label, base_url=stub.base_url),
        )
        m = res.manifest_data
        assert res.rows == 12 and m["status"] == "complete" and m["failed_calls"] == 0
        jobs, calls = checkpoint(ws, wave)
        assert len(jobs) == 1 and m["batch"]["batch_ids"] == [jobs[0].batch_id]
        assert sorted(c["batch"] for c in calls) == [0, 1, 2, 3]
        assert all(c["via"] == jobs[0].batch_id for c in calls)
        assert m["batch"]["submitted"] == 4 and m["batch"]["succeeded"] == 4
        step3 = m["tokens"]["per_stage"]["step3"]
        batch_price = BatchPricing(2.0, 8.0, 0.5, 1.0, 1.0)
        # billed at half the online price (cache reads/writes priced by the provider's rates)
        assert (
            m["cost"]["per_stage"]["step3"]
            <= batch_price.cost(step3["input_tokens"], step3["output_tokens"]) * 1.25 + 1e-12
        )
        assert (
            m["cost"]["per_stage"]["step3"]
            < 0.75 * (2.0 * step3["input_tokens"] + 8.0 * step3["output_tokens"]) / 1e6
        )
        assert m["cost"]["batch"]["step3_online_usd"] == 0.0
        assert (Workspace(ws).root / m["output"]).is_file()
    assert stub.creations() == 3  # one provider batch per wave
    for f in Path(ws).rglob("*"):  # the key is in no file the run wrote
        assert not f.is_file() or KEY.encode() not in f.read_bytes(), f
    assert not [c for c in client.calls if is_step3(c)]  # step 3 never went online
    polls = [e for e in events if e.get("event") == "batch-poll"]
    assert polls and {"state", "requests", "succeeded", "expected_cost_usd"} <= set(polls[0])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_twenty_percent_failing_or_invalid_topped_up_by_a_follow_up_batch(
    provider: str, tiny_workspace: Path, stub: BatchStub
) -> None:
    stub.fail_share, stub.invalid_share = 0.1, 0.1
    res = batch_run(tiny_workspace, "1", stub, provider)
    m = res.manifest_data
    assert res.rows == 30 and len(open(res.output).read().strip().splitlines()) == 31
    assert m["failed_calls"] == 2 and m["faults"]["invalid_output"] == 1
    assert sum(v for k, v in m["faults"].items() if k != "invalid_output") == 1
    assert stub.creations() == 2 and m["batch"]["submitted"] == 12
    jobs, calls = checkpoint(tiny_workspace, "1")
    assert len(jobs) == 2 and len(jobs[1].custom_ids) == 2  # only the two missing calls
    assert sum(len(c.get("rows", [])) for c in calls) == 30


def test_twenty_percent_failing_topped_up_online(tiny_workspace: Path, stub: BatchStub) -> None:
    stub.fail_share, stub.invalid_share = 0.1, 0.1
    client = FakeClient(default=fake_answer, label="openai/stub-model")
    res = batch_run(tiny_workspace, "1", stub, "openai", client, top_up="online")
    m = res.manifest_data
    assert res.rows == 30 and m["failed_calls"] == 2
    assert stub.creations() == 1 and m["batch"]["online_top_up_calls"] == 2
    assert len([c for c in client.calls if is_step3(c)]) == 2
    _, calls = checkpoint(tiny_workspace, "1")
    assert len([c for c in calls if "via" not in c]) == 2  # the online calls


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_expired_batch_is_resubmitted_only_for_what_it_did_not_run(
    provider: str, tiny_workspace: Path, stub: BatchStub
) -> None:
    stub.expire_share = 0.3

    def first_ended(ev: dict[str, Any]) -> None:  # the follow-up batch runs every request
        if ev.get("event") == "batch-ended":
            stub.expire_share = 0.0

    res = batch_run(tiny_workspace, "1", stub, provider, progress=first_ended)
    m = res.manifest_data
    assert res.rows == 30 and m["failed_calls"] == 0
    jobs, calls = checkpoint(tiny_workspace, "1")
    assert stub.creations() == 2 and len(jobs[1].custom_ids) == 3
    assert m["batch"]["submitted"] == 13 and m["batch"]["resubmitted"] == 3
    assert sorted(c["batch"] for c in calls) == list(range(10))


_KILLED_RUN = """
import sys
sys.path[:0] = [{tests!r}, {repo!r}]
from fakes import fake_answer
from panelsynth.llm.base import FakeClient
from panelsynth.llm.batch import make_batch_api
from panelsynth.run import batch as rb
from panelsynth.run.wave import RunOptions, run_wave
rb.POLL_INTERVAL = rb.MAX_POLL_INTERVAL = 0.02
label = sys.argv[2] + "/stub-model"
run_wave(sys.argv[1], sys.argv[4], FakeClient(default=fake_answer, label=label), "stub",
         RunOptions(n_outputs=3, n_batches=10, batch=True),
         batch_api=lambda: make_batch_api(label, base_url=sys.argv[3]))
"""


#: The longest wave id a workspace accepts (100 characters): too long for a plain custom_id.
LONG_WAVE = "w" + "x" * 60 + "-" + "9" * 38


@pytest.mark.parametrize(
    ("provider", "collect_first", "wave"),
    [
        ("openai", False, "1"),
        ("anthropic", True, "1"),
        ("openai", True, LONG_WAVE),
        ("anthropic", False, LONG_WAVE),
    ],
    ids=["openai", "anthropic-collect", "openai-long-wave-collect", "anthropic-long-wave"],
)
def test_kill_after_submission_then_resume_collects_the_same_batch(
    provider: str, collect_first: bool, wave: str, tmp_path: Path, stub: BatchStub
) -> None:
    ws = write_tiny_workspace(tmp_path / "ws", waves=(wave,))
    add_price(ws, provider)
    kill_after_submission(ws, provider, stub, wave)
    jobs, calls = checkpoint(ws, wave)
    assert len(jobs) == 1 and calls == [] and stub.creations() == 1
    ids = jobs[0].custom_ids
    assert len(set(ids)) == 10 and all(CUSTOM_ID_PATTERN.match(c) for c in ids)
    ckpt = Checkpoint(Workspace(ws).checkpoint("stub", wave))
    assert run_batch.unfinished_jobs(ckpt, wave) == jobs  # its own calls, recognised
    if collect_first:  # `panelsynth batch collect` takes the results over first
        args = ["-w", str(ws), "--model-dir", "stub", "--base-url", stub.base_url]
        r = CliRunner().invoke(app, ["batch", "collect", *args])
        assert r.exit_code == 0 and "not yet" in r.output, r.output  # one poll: in progress
        r = CliRunner().invoke(app, ["batch", "collect", *args])
        assert r.exit_code == 0 and "10 calls with 30 rows" in r.output, r.output
    client = FakeClient(default=fake_answer, label=f"{provider}/stub-model")
    res = batch_run(ws, wave, stub, provider, client, resume=True)
    assert res.rows == 30 and res.manifest_data["status"] == "complete"
    assert stub.creations() == 1  # no second submission: the same batch was collected
    assert not [c for c in client.calls if is_step3(c)]
    _, calls = checkpoint(ws, wave)
    assert sorted(c["batch"] for c in calls) == list(range(10))  # each answer booked once
    assert {c["via"] for c in calls} == {jobs[0].batch_id}
    # the cache writes of the restored calls are in the books (tokens and cost)
    writes, cost = billed(stub, jobs[0].batch_id, res.manifest_data["cost"]["prices"])
    assert (writes > 0) == (provider == "anthropic")
    step3 = res.manifest_data["tokens"]["per_stage"]["step3"]
    assert step3.get("cache_write_tokens", 0) == writes
    assert sum(c["usage"].get("cache_write_tokens", 0) for c in calls) == writes
    assert res.manifest_data["cost"]["batch"]["cache_write_tokens"] == writes
    assert res.manifest_data["cost"]["per_stage"]["step3"] == pytest.approx(cost, rel=1e-9)


def add_price(ws: Path, provider: str) -> None:
    """A price for the stub model, so that the manifest computes the cost."""
    with open(Workspace(ws).config_path, "a") as f:
        f.write(
            f'\n[prices."{provider}/stub-model"]\ninput_per_mtok = 3.0\noutput_per_mtok = 15.0\n'
        )


def billed(stub: BatchStub, batch_id: str, prices: dict[str, Any]) -> tuple[int, float]:
    """Cache-write tokens and batch-price USD of a stub batch, from its own result usage."""
    from panelsynth.prices import ModelPrice

    batch = stub.batches[batch_id]
    pricing = BatchPricing.from_price(ModelPrice(**prices))
    writes, cost = 0, 0.0
    if batch.provider == "anthropic":
        for line in stub._anthropic_results(batch).decode().splitlines():
            u = json.loads(line)["result"]["message"]["usage"]
            w, r = u["cache_creation_input_tokens"], u["cache_read_input_tokens"]
            writes += w
            cost += pricing.cost(u["input_tokens"] + w + r, u["output_tokens"], r, w)
    else:
        for line in stub.files[batch.output_file_id or ""].decode().splitlines():
            u = json.loads(line)["response"]["body"]["usage"]
            cached = u["prompt_tokens_details"]["cached_tokens"]
            cost += pricing.cost(u["prompt_tokens"], u["completion_tokens"], cached)
    return writes, cost


_KILLED_CALIBRATED_RUN = """
import os
import sys
sys.path[:0] = [{tests!r}, {repo!r}]
from fakes import fake_answer
from panelsynth.llm.base import FakeClient
from panelsynth.llm.batch import make_batch_api
from panelsynth.run import batch as rb
from panelsynth.run.wave import RunOptions, run_wave
rb.POLL_INTERVAL = rb.MAX_POLL_INTERVAL = 0.02
label = sys.argv[2] + "/stub-model"
submitted = []


def progress(ev):  # killed the moment the third batch (the resubmitted top-up) is recorded
    if isinstance(ev, dict) and ev.get("event") == "batch-submitted":
        submitted.append(ev)
        if len(submitted) == 2:
            os.environ["PANELSYNTH_FAULT_AT"] = "after-batch-submitted"


run_wave(sys.argv[1], "2", FakeClient(default=fake_answer, label=label), "stub",
         RunOptions(n_outputs=3, n_batches=10, batch=True, calibrate=True), progress=progress,
         batch_api=lambda: make_batch_api(label, base_url=sys.argv[3]))
"""


def profile_answer(spoil_batch: int | None = None) -> Any:
    """Stub answer: a row completing each profile the request lists; in the batch with ordinal
    ``spoil_batch``, each request's first row is given a profile of no row of the call."""
    from test_calibrate_pipeline import _from_schema, parse_profiles

    def answer(prompt: str, schema: dict[str, Any] | None, k: int) -> Any:
        items = (schema or {})["properties"]["rows"]["items"]
        rng = random.Random(prompt[-400:])
        rows = []
        for prof in parse_profiles(prompt):
            row = _from_schema(items, rng)
            for name, v in prof.items():
                row[name] = rng.randint(*v) if isinstance(v, tuple) else v
            rows.append(row)
        if k == spoil_batch and rows:
            rows[0].update(cluster=3 - rows[0]["cluster"], sex=3 - rows[0]["sex"], age=90)
        return {"rows": rows}

    return answer


@pytest.mark.parametrize("provider", PROVIDERS)
def test_calibrated_resume_keeps_the_profiles_a_pending_top_up_was_asked_for(
    provider: str, tiny_workspace: Path, stub: BatchStub
) -> None:
    # batch 0: 40% of the calls fail -> a top-up batch (1) whose answers each miss a profile and
    # half of whose calls expire -> those are resubmitted (batch 2) and the run is killed
    stub.answer = profile_answer(spoil_batch=1)
    stub.per_batch = {0: {"fail_share": 0.4}, 1: {"expire_share": 0.5}, 2: {"delay": 1.0}}
    script = _KILLED_CALIBRATED_RUN.format(tests=str(_REPO / "tests"), repo=str(_REPO))
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tiny_workspace), provider, stub.base_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    jobs, calls = checkpoint(tiny_workspace, "2")
    assert len(jobs) == 3 and stub.creations() == 3
    top_up = [c for c in calls if c.get("via") == jobs[1].batch_id]
    assert top_up and all(c["off_profile"] == 1 for c in top_up)  # booked before the kill
    pending = jobs[2]
    assert pending.custom_ids and not [c for c in calls if c.get("via") == pending.batch_id]
    stub.answer, stub.per_batch = profile_answer(), {}
    res = batch_run(tiny_workspace, "2", stub, provider, resume=True, calibrate=True)
    assert res.manifest_data["status"] == "complete"
    jobs, calls = checkpoint(tiny_workspace, "2")
    held = {c["batch"]: c for c in calls if c.get("via") == pending.batch_id}
    assert len(held) == len(pending.custom_ids)  # collected, not submitted again
    assert not any(set(j.custom_ids) & set(pending.custom_ids) for j in jobs[3:])
    for cid in pending.custom_ids:
        record = held[call_index_of(cid, id_prefix_for("2"))]
        # checked against the profiles the request listed: every row keeps its profile
        assert record["off_profile"] == 0 and len(record["rows"]) == 3, record
        assert record["profiles"] == pending.books[cid]["profiles"]


def test_custom_id_prefixes_fit_the_providers_limit_for_every_wave_id() -> None:
    assert id_prefix_for("3") == "w3-c"  # short ids: as before (older checkpoints still read)
    waves = [LONG_WAVE, LONG_WAVE[:-1] + "8", "a" * 55, "a" * 56, "a" * 57, "b" * 100]
    prefixes = [id_prefix_for(w) for w in waves]
    assert len(set(prefixes)) == len(waves)  # distinct waves, distinct prefixes
    for w, p in zip(waves, prefixes, strict=True):
        assert p == id_prefix_for(w)  # the same in every process
        cid = p + f"{999_999:05d}"
        assert CUSTOM_ID_PATTERN.match(cid), (w, cid)
        assert call_index_of(cid, p) == 999_999 and call_index_of(p + "00007", p) == 7


def test_a_cancelled_batch_then_resume_submits_only_what_did_not_run(
    tiny_workspace: Path, stub: BatchStub
) -> None:
    stub.polls_in_progress = 10**6  # it runs until cancelled
    stub.done_before_cancel = 0.5

    def cancel_after_submit(ev: dict[str, Any]) -> None:
        if ev.get("event") == "batch-poll":
            with make_batch_api("anthropic/stub-model", base_url=stub.base_url) as api:
                api.cancel(checkpoint(tiny_workspace, "1")[0][0])

    label = "anthropic/stub-model"
    with pytest.raises(BatchCancelledError, match="--resume"):
        run_wave(
            tiny_workspace,
            "1",
            FakeClient(default=fake_answer, label=label),
            "stub",
            RunOptions(n_outputs=3, n_batches=10, batch=True),
            progress=cancel_after_submit,
            batch_api=lambda: make_batch_api(label, base_url=stub.base_url),
        )
    jobs, calls = checkpoint(tiny_workspace, "1")
    assert len(jobs) == 1 and len(calls) == 5  # what ran before the cancel is booked
    stub.polls_in_progress = 1
    res = batch_run(tiny_workspace, "1", stub, "anthropic", resume=True)
    assert res.rows == 30
    jobs, _ = checkpoint(tiny_workspace, "1")
    assert stub.creations() == 2 and len(jobs[1].custom_ids) == 5


def test_max_cost_stops_before_a_batch_is_submitted(tiny_workspace: Path, stub: BatchStub) -> None:
    with open(Workspace(tiny_workspace).config_path, "a") as f:
        f.write('\n[prices."openai/stub-model"]\ninput_per_mtok = 2.0\noutput_per_mtok = 8.0\n')
    with pytest.raises(GenerationExhaustedError, match="batch prices"):
        batch_run(tiny_workspace, "1", stub, "openai", max_cost_usd=0.035, n_batches=40)
    assert stub.creations() == 0
    m = json.loads(Workspace(tiny_workspace).manifest("stub", "1").read_text())
    assert m["status"] == "incomplete" and m["batch"]["submitted"] == 0


def kill_after_submission(ws: Path, provider: str, stub: BatchStub, wave: str = "1") -> None:
    """A ``--batch`` run of ``wave`` killed the moment its first batch is recorded."""
    script = _KILLED_RUN.format(tests=str(_REPO / "tests"), repo=str(_REPO))
    env = {**os.environ, "PANELSYNTH_FAULT_AT": "after-batch-submitted"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(ws), provider, stub.base_url, wave],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_max_cost_counts_only_what_this_invocation_submits(
    provider: str, tiny_workspace: Path, stub: BatchStub
) -> None:
    add_price(tiny_workspace, provider)
    stub.fail_share = 0.2  # two of the ten calls fail: a top-up of two calls follows
    kill_after_submission(tiny_workspace, provider, stub)
    stub.fail_share = 0.0
    # the recorded batch was paid by the killed run: a tiny limit does not stop its collection,
    # only the top-up batch this invocation would submit
    with pytest.raises(GenerationExhaustedError, match="batch prices") as info:
        batch_run(tiny_workspace, "1", stub, provider, resume=True, max_cost_usd=1e-6)
    assert "batch of 2 calls" in str(info.value)
    assert stub.creations() == 1
    jobs, calls = checkpoint(tiny_workspace, "1")
    assert len(calls) == 10 and len([c for c in calls if "rows" in c]) == 8
    ceiling = float(re.search(r"could cost up to \$([0-9.]+)", str(info.value)).group(1))
    # enough for the two calls of the top-up, far from enough for the ten already paid for
    res = batch_run(tiny_workspace, "1", stub, provider, resume=True, max_cost_usd=1.5 * ceiling)
    assert res.rows == 30 and stub.creations() == 2
    jobs, _ = checkpoint(tiny_workspace, "1")
    assert len(jobs[1].custom_ids) == 2 and res.manifest_data["batch"]["submitted"] == 2


def test_max_cost_of_an_online_top_up_counts_this_invocations_batches(stub: BatchStub) -> None:
    import asyncio

    from pydantic import BaseModel

    from panelsynth.errors import BudgetExceededError
    from panelsynth.generate import OnlineTransport
    from panelsynth.pydantic_models.rows import batch_model

    class Row(BaseModel):
        a: int

    model = batch_model(Row, 1)
    label = "openai/stub-model"
    online = FakeClient(default=lambda messages, m: {"rows": [{"a": 1}]}, label=label)
    budget = {"left": 10.0}  # what the client has not spent (steps 1-2 and online calls)
    transport = run_batch.RunBatchTransport(
        make_batch_api(label, base_url=stub.base_url),
        online=OnlineTransport(online),
        top_up="online",
        budget_left=lambda: budget["left"],
        pricing=BatchPricing(2.0, 8.0, 0.5, 1.0, 1.0),
        poll_interval=0.01,
        max_poll_interval=0.02,
    )
    messages = [{"role": "user", "content": "x" * 4000}]
    online_ceiling = BatchPricing(2.0, 8.0, 1.0, 1.0, 1.0).cost(1000, 100)

    async def run() -> None:
        assert transport.queues_next_round()  # the first round: a provider batch
        transport.expect(2)
        await asyncio.gather(*(transport.call(b, messages, model, max_tokens=100) for b in (0, 1)))
        spent = transport.spent_usd
        assert 0 < spent < online_ceiling  # two results at half price, below their ceiling
        assert not transport.queues_next_round()  # --top-up online
        budget["left"] = online_ceiling + spent / 2  # enough online, not with the batch
        with pytest.raises(BudgetExceededError, match="after this run's provider batches"):
            await transport.call(2, messages, model, max_tokens=100)
        assert online.calls == []
        budget["left"] = online_ceiling + spent * 1.01
        done = await transport.call(2, messages, model, max_tokens=100)
        assert done.value.rows == [{"a": 1}] and len(online.calls) == 1
        await transport.aclose()

    asyncio.run(run())


def run_cli(ws: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["run", "-w", str(ws), "--wave", "1", "--yes", *args])


def test_batch_is_refused_for_local_models_and_servers(tiny_workspace: Path) -> None:
    for extra in ([], ["--dry-run"]):
        r = run_cli(tiny_workspace, "--model", "local/smollm2", "--batch", *extra)
        assert r.exit_code == 2, r.output
        assert "--batch" in r.output and "runs on this machine" in r.output
        assert len(r.output.strip().splitlines()) == 1
    r = run_cli(
        tiny_workspace, "--model", "openai/m", "--base-url", "http://127.0.0.1:9/v1", "--batch"
    )
    assert r.exit_code == 2 and "--base-url" in r.output, r.output
    r = run_cli(tiny_workspace, "--model", "google/gemini-2.5-flash", "--batch", "--dry-run")
    assert r.exit_code == 2 and "batch works with anthropic, openai" in r.output, r.output
    r = run_cli(tiny_workspace, "--model", "openai/gpt-4o-mini", "--top-up", "online")
    assert r.exit_code == 2 and "--top-up applies to --batch" in r.output, r.output


def test_dry_run_projects_batch_and_cached_cost(tiny_workspace: Path) -> None:
    from panelsynth.api import dry_run
    from panelsynth.llm.batch import project_batch
    from panelsynth.prices import price_for

    args = ("openai/gpt-4o-mini", "m", RunOptions(mode="dense", n_outputs=3, n_batches=10))
    online = dry_run(tiny_workspace, "1", *args[:2], args[2])
    batch = dry_run(
        tiny_workspace, "1", *args[:2], RunOptions(**{**args[2].__dict__, "batch": True})
    )
    st3, on3 = batch.stages[-1], online.stages[-1]
    assert (st3.calls, st3.input_tokens) == (on3.calls, on3.input_tokens)
    price = price_for("openai/gpt-4o-mini", None)
    assert price is not None
    assert st3.cost_usd == pytest.approx(0.5 * price.cost(st3.input_tokens, st3.output_tokens))
    assert batch.stages[0].cost_usd == online.stages[0].cost_usd  # steps 1-2 stay online
    note = next(n for n in batch.notes if n.startswith("--batch:"))
    proj = project_batch(price, st3.calls, st3.input_tokens, st3.output_tokens)
    assert f"online ${proj.online_usd:.4f}" in note and "prompt caching as low as $" in note
    r = run_cli(tiny_workspace, "--model", "openai/gpt-4o-mini", "--batch", "--dry-run")
    assert r.exit_code == 0 and "--batch: step 3 at batch prices" in r.output, r.output


def test_interrupt_message_names_the_running_batch_and_the_commands(
    tiny_workspace: Path, stub: BatchStub
) -> None:
    ckpt = Checkpoint(Workspace(tiny_workspace).checkpoint("stub", "1"))
    ckpt.start({"wave": "1"})
    with make_batch_api("openai/stub-model", base_url=stub.base_url) as api:
        from pydantic import BaseModel

        from panelsynth.llm.batch import BatchRequest
        from panelsynth.pydantic_models.rows import batch_model

        class Row(BaseModel):
            a: int

        req = [
            BatchRequest(
                f"w1-c{b:05d}", [{"role": "user", "content": "x"}], batch_model(Row, 1), 50
            )
            for b in range(2)
        ]
        job = api.submit(req)
    ckpt.append(job.to_record())
    text = run_batch.interrupt_message(ckpt, str(tiny_workspace), "stub", "1", "panelsynth run ...")
    assert job.batch_id in text and "keeps running" in text
    assert "panelsynth batch collect --workspace" in text and "panelsynth batch cancel" in text
    ckpt.append({"batch": 0, "rows": [], "via": job.batch_id, "usage": {}})
    ckpt.append({"batch": 1, "failed": "server_error", "via": job.batch_id, "usage": {}})
    assert run_batch.interrupt_message(ckpt, str(tiny_workspace), "stub", "1", "x") == ""
