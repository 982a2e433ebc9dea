"""run_wave end to end with a fake client: seed paths, refusal to overwrite, lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import fake_answer

from panelsynth.checkpoint import RunLock
from panelsynth.errors import PanelsynthError, RunLockedError
from panelsynth.llm.base import FakeClient
from panelsynth.run.wave import RunOptions, run_wave
from panelsynth.workspace import Workspace


def test_logs_at_seed_paths_and_manifest(tiny_workspace: Path) -> None:
    res = run_wave(
        tiny_workspace,
        "1",
        FakeClient(default=fake_answer),
        "m1",
        RunOptions(n_outputs=3, n_batches=2),
    )
    ws = Workspace(tiny_workspace)
    assert (
        tiny_workspace / "Dictionaries/cluster_descriptions/m1/Wave 1 cluster descriptions.txt"
    ).exists()
    assert (tiny_workspace / "Examples/m1/Wave 1 examples.txt").exists()
    assert (tiny_workspace / "Gen_metadata/m1/Wave 1 generated metadata.txt").exists()
    assert (tiny_workspace / "Final_gen_data/m1/gen_data_wave1.csv") == res.output
    m = json.loads(ws.manifest("m1", "1").read_text())
    assert m["status"] == "complete" and m["rows"] == 6 and m["target_variable"] == "vaccimportant"
    assert m["settings"]["n_examples"] == 4  # dense default
    examples_log = ws.examples_log("m1", "1").read_text()
    assert "Cluster 1 (4 examples)" in examples_log and "vaccimportant,vaccsafe" in examples_log


def test_existing_output_is_not_overwritten(tiny_workspace: Path) -> None:
    opts = RunOptions(n_outputs=2, n_batches=1)
    res = run_wave(tiny_workspace, "1", FakeClient(default=fake_answer), "m1", opts)
    before = res.output.read_bytes()
    with pytest.raises(PanelsynthError, match="already exists"):
        run_wave(tiny_workspace, "1", FakeClient(default=fake_answer), "m1", opts)
    assert res.output.read_bytes() == before
    run_wave(
        tiny_workspace,
        "1",
        FakeClient(default=fake_answer),
        "m1",
        RunOptions(n_outputs=2, n_batches=1, restart=True),
    )
    kept = list(res.output.parent.glob(".checkpoints/wave1.*.jsonl"))
    assert len(kept) == 1  # the old checkpoint is set aside, not deleted


def test_second_run_is_refused_while_locked(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    lock = ws.lock("m1", "1")
    hold = (
        "import sys; from pathlib import Path; from panelsynth.checkpoint import RunLock; "
        "RunLock(Path(sys.argv[1]), 'x').acquire(); print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert json.loads(lock.read_text())["host"] == os.uname().nodename
        with pytest.raises(RunLockedError, match=f"process {holder.pid}"):
            run_wave(
                tiny_workspace,
                "1",
                FakeClient(default=fake_answer),
                "m1",
                RunOptions(n_outputs=2, n_batches=1),
            )
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead now: the kernel released its lock
    res = run_wave(
        tiny_workspace,
        "1",
        FakeClient(default=fake_answer),
        "m1",
        RunOptions(n_outputs=2, n_batches=1),
    )
    assert res.rows == 2 and not ws.lock("m1", "1").exists()


def test_lock_released_after_failure(tmp_path: Path) -> None:
    lock = RunLock(tmp_path / "x.lock", "test")
    with pytest.raises(ValueError):
        with lock:
            raise ValueError("boom")
    assert not (tmp_path / "x.lock").exists()


@pytest.mark.parametrize(
    ("is_local", "opts", "config", "expected"),
    [
        (True, {}, {}, (10, 70)),  # the in-process model: the original's 10 rows x 70 calls
        (False, {}, {}, (20, 35)),  # hosted: 20 rows per call, same 700 rows
        (False, {"n_outputs": 25}, {}, (25, 28)),  # calls follow the rows per call
        (False, {"n_outputs": 10}, {}, (10, 70)),  # the original's batches on request
        (False, {}, {"n_outputs": 15}, (15, 47)),
        (False, {"n_batches": 5}, {"n_outputs": 12}, (12, 5)),
        (True, {"n_outputs": 4, "n_batches": 3}, {"n_outputs": 15, "n_batches": 9}, (4, 3)),
    ],
)
def test_rows_per_call_and_calls_per_wave_defaults(
    is_local: bool, opts: dict, config: dict, expected: tuple[int, int]
) -> None:
    from panelsynth.config import parse_config
    from panelsynth.run.wave import resolve_settings

    cfg = parse_config({"generation": config})
    client = FakeClient(is_local=is_local)
    _, _, s = resolve_settings(cfg, RunOptions(**opts), client)
    assert (s.n_outputs, s.n_batches) == expected


def test_dense_prompt_states_the_cluster_shares_of_every_respondent(tiny_workspace: Path) -> None:
    """Complete cases under-represent the cluster that skips items; the prompt must not."""
    import re

    import pandas as pd

    client = FakeClient(default=fake_answer)
    res = run_wave(tiny_workspace, "1", client, "fake", RunOptions(n_outputs=3, n_batches=1))
    real = pd.read_csv(Workspace(tiny_workspace).original_data("1"))
    complete = real[real["worryflu"] != -99]
    every = real["cluster"].value_counts(normalize=True)
    assert abs(complete["cluster"].value_counts(normalize=True)[1] - every[1]) > 0.01
    step3 = [c for c in client.calls if c["response_model"].__name__ == "SyntheticRespondents"]
    text = step3[0]["messages"][-1]["content"]
    stated = dict(re.findall(r"cluster (\d): (\d+)%", text.split("Share of respondents")[1]))
    assert stated == {"1": f"{every[1]:.0%}".rstrip("%"), "2": f"{every[2]:.0%}".rstrip("%")}
    assert any("complete cases" in w for w in res.manifest_data["warnings"])


def test_temporaries_of_a_killed_write_are_removed_on_resume(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    opts = RunOptions(n_outputs=3, n_batches=2)
    run_wave(tiny_workspace, "2", FakeClient(default=fake_answer), "fake", opts)
    manifest = ws.manifest("fake", "2")
    stale = manifest.parent / f".{manifest.name}.abc123.tmp"  # a SIGKILL between write and rename
    stale.write_text('{"half": ')
    other = manifest.parent / ".someone_elses_file.tmp"
    other.write_text("x")
    res = run_wave(
        tiny_workspace,
        "2",
        FakeClient(default=fake_answer),
        "fake",
        RunOptions(n_outputs=3, n_batches=2, resume=True),
    )
    assert res.rows == 6
    assert not stale.exists() and other.exists()  # only this wave's own temporaries
