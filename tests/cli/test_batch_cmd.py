"""`panelsynth batch status|collect|cancel` against the local batch stub on 127.0.0.1."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # so that `tests.servers.batch_stub` imports from any cwd
    sys.path.insert(0, str(_REPO))

from panelsynth.batch_ops import WaveJobs, row_context  # noqa: E402
from panelsynth.checkpoint import Checkpoint  # noqa: E402
from panelsynth.cli import app  # noqa: E402
from panelsynth.config import load_config  # noqa: E402
from panelsynth.generate import GenerationPrompt, GenerationSettings  # noqa: E402
from panelsynth.generate.loop import _Runner  # noqa: E402
from panelsynth.llm.base import FakeClient  # noqa: E402
from panelsynth.llm.batch import BatchRequest, make_batch_api, split_job_records  # noqa: E402
from panelsynth.pydantic_models.rows import batch_model  # noqa: E402
from panelsynth.workspace import Workspace  # noqa: E402
from tests.servers.batch_stub import BatchStub  # noqa: E402

KEY = "sk-stub-key-0123456789abcdef"
HEADER = {
    "wave": "2",
    "mode": "dense",
    "model": "openai/stub-model",
    "n_outputs": 3,
    "n_batches": 4,
    "seed": 42,
    "fingerprint": "f" * 16,
}


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


@pytest.fixture
def stub() -> Iterator[BatchStub]:
    with BatchStub(polls_in_progress=1, lifetime=60) as s:
        yield s


def submit(ws: Path, stub: BatchStub, provider: str, header: dict[str, Any] = HEADER) -> Any:
    """What a run with --batch leaves after a kill: the header and the recorded batch job."""
    w = Workspace(ws)
    ckpt = Checkpoint(w.checkpoint("stub", "2"))
    ckpt.start({**header, "model": f"{provider}/stub-model"})
    header_, _ = ckpt.load()
    ctx = row_context(w, load_config(w.config_path), WaveJobs("stub", "2", ckpt, header_, [], []))
    model = batch_model(ctx.row_model, 3)
    requests = [
        BatchRequest(f"w2-c{b:05d}", [{"role": "user", "content": f"call {b}"}], model, 500)
        for b in range(4)
    ]
    with make_batch_api(f"{provider}/stub-model", base_url=stub.base_url) as api:
        job = api.submit(requests)
    ckpt.append(job.to_record())
    return ckpt, job, ctx


def cli(ws: Path, stub: BatchStub, *args: str) -> Any:
    return CliRunner().invoke(
        app, ["batch", *args, "-w", str(ws), "--model-dir", "stub", "--base-url", stub.base_url]
    )


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_status_then_collect_into_records_a_resume_takes_over(
    provider: str, tiny_workspace: Path, stub: BatchStub
) -> None:
    stub.fail_share = 0.25  # one of the four calls errors at the provider
    ckpt, job, ctx = submit(tiny_workspace, stub, provider)
    r = cli(tiny_workspace, stub, "status")
    assert r.exit_code == 0, r.output
    assert job.batch_id in r.output and "in_progress: 2 of 4 requests done (50%)" in r.output
    assert "batch collect" in r.output
    r = cli(tiny_workspace, stub, "collect", "--wave", "2")
    assert r.exit_code == 0, r.output
    assert "3 calls with 9 rows" in r.output and "1 failed (" in r.output
    assert "at batch prices" not in r.output  # the stub model has no price
    _, records = ckpt.load()
    jobs, calls = split_job_records(records)
    assert [j.batch_id for j in jobs] == [job.batch_id]
    assert sorted(c["batch"] for c in calls) == [0, 1, 2, 3]
    assert all(c["via"] == job.batch_id for c in calls)
    ok = [c for c in calls if not c.get("failed")]
    assert len(ok) == 3 and all(len(c["rows"]) == 3 and c["invalid"] == 0 for c in ok)
    assert all(ctx.row_model.model_validate(row) for c in ok for row in c["rows"])
    assert all(c["usage"]["input_tokens"] > 0 for c in ok)
    # collecting again writes nothing twice
    r = cli(tiny_workspace, stub, "collect")
    assert r.exit_code == 0 and "4 already in the checkpoint" in r.output
    assert len(ckpt.load()[1]) == len(records)
    # the step-3 loop takes the records over as its own (no call is made: the client has none)
    runner = _Runner(
        FakeClient(),
        GenerationPrompt([{"role": "user", "content": "x"}], 1),
        ctx.row_model,
        ctx.columns,
        GenerationSettings(n_outputs=3, n_batches=4),
        ckpt,
        None,
        "2",
    )
    assert runner.restore(calls) == 3 and runner.accepted == 9 and runner.failed == 1
    assert stub.creations() == 1


def test_cancel_then_collect_what_ran(tiny_workspace: Path, stub: BatchStub) -> None:
    stub.polls_in_progress = 10**6
    stub.done_before_cancel = 0.5
    ckpt, job, _ = submit(tiny_workspace, stub, "anthropic")
    r = cli(tiny_workspace, stub, "cancel")
    assert r.exit_code == 0, r.output
    assert job.batch_id in r.output and "cancelling" in r.output
    assert stub.batches[job.batch_id].cancel_requested
    r = cli(tiny_workspace, stub, "collect")
    assert r.exit_code == 0, r.output
    assert "2 calls with 6 rows" in r.output and "2 not run" in r.output
    calls = split_job_records(ckpt.load()[1])[1]
    assert sorted(c["batch"] for c in calls) == [0, 1]  # what did not run is not recorded


def test_running_batch_is_not_collected_yet(tiny_workspace: Path, stub: BatchStub) -> None:
    stub.polls_in_progress = 10**6
    ckpt, job, _ = submit(tiny_workspace, stub, "openai")
    r = cli(tiny_workspace, stub, "collect")
    assert r.exit_code == 0, r.output
    assert f"batch {job.batch_id} is in_progress" in r.output and "not yet" in r.output
    assert split_job_records(ckpt.load()[1])[1] == []


def test_calibrated_wave_is_left_to_the_resume(tiny_workspace: Path, stub: BatchStub) -> None:
    header = {**HEADER, "calibrate": {"enabled": True}}
    ckpt = Checkpoint(Workspace(tiny_workspace).checkpoint("stub", "2"))
    ckpt.start(header)
    job = {
        "batch_job": {
            "v": 1,
            "provider": "openai",
            "model": "stub-model",
            "batch_id": "batch_x",
            "custom_ids": ["w2-c00000"],
            "submitted_at": "2026-11-27T00:00:00Z",
            "status": "in_progress",
        }
    }
    ckpt.append(job)
    r = cli(tiny_workspace, stub, "collect")
    assert r.exit_code == 2
    assert "calibrated" in r.output and "--resume" in r.output and "Traceback" not in r.output


def test_no_recorded_batch_is_one_line(tiny_workspace: Path, stub: BatchStub) -> None:
    r = cli(tiny_workspace, stub, "status")
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1
    assert lines[0].startswith("Error: no provider batch is recorded") and "--batch" in lines[0]


def test_missing_key_is_one_line(
    tiny_workspace: Path, stub: BatchStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    submit(tiny_workspace, stub, "openai")
    monkeypatch.delenv("OPENAI_API_KEY")
    r = cli(tiny_workspace, stub, "status")
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "OPENAI_API_KEY" in lines[0]


def test_a_wrong_key_never_shows(tiny_workspace: Path, stub: BatchStub) -> None:
    submit(tiny_workspace, stub, "openai")
    wrong = "sk-wrong-key-abcdefabcdef0123"
    r = CliRunner().invoke(
        app,
        ["batch", "status", "-w", str(tiny_workspace), "--base-url", stub.base_url]
        + ["--api-key", wrong],
    )
    assert r.exit_code == 2 and "could not be polled" in r.output and "auth" in r.output
    assert wrong not in r.output
    assert json.dumps(wrong) not in Workspace(tiny_workspace).checkpoint("stub", "2").read_text()
