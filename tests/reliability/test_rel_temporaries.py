"""Every command removes the temporary files its killed predecessors left (they hold real rows),
and the evaluation says when a CSV and its manifest disagree."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from fakes import fake_answer
from test_prepare import write_raw_panel

from panelsynth.evaluate import evaluate_workspace
from panelsynth.llm.base import FakeClient
from panelsynth.prepare import prepare_workspace
from panelsynth.run.wave import RunOptions, run_wave
from panelsynth.workspace import Workspace


def _plant(path: Path, age_seconds: float = 0.0) -> Path:
    """A temporary file as ``atomic_write_text`` names it, ``age_seconds`` old."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.k1ll3d.tmp"
    tmp.write_text("respondent_id,vaccimportant\n1,5\n")
    if age_seconds:
        old = time.time() - age_seconds
        os.utime(tmp, (old, old))
    return tmp


def test_prepare_removes_the_temporaries_a_killed_prepare_left(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write_raw_panel(root, n=200, waves=("1", "2"))
    ws = Workspace(root)
    planted = [
        _plant(ws.original_data("1")),
        _plant(ws.original_data("2")),
        _plant(ws.var_types_for_write("1")),
        _plant(ws.metadata_json_for_write("2", "full")),
        _plant(ws.prepare_dir() / "item_ranking.csv"),
    ]
    keep = root / "Original data" / ".notes.txt"  # not a temporary: left alone
    keep.write_text("mine")
    prepare_workspace(root)
    assert [p for p in planted if p.exists()] == []
    assert keep.read_text() == "mine"


def _generated(root: Path) -> None:
    opts = RunOptions(n_outputs=4, n_batches=6)
    run_wave(root, "2", FakeClient(default=fake_answer), "fake", opts)


def test_evaluate_removes_the_temporaries_a_killed_evaluation_left(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    _generated(tiny_workspace)
    planted = [
        _plant(ws.report_html()),
        _plant(ws.eval_table("c2st")),
        _plant(ws.eval_table("density_trend_unthresholded")),
        _plant(ws.eval_metrics_json("fake", "2")),
        _plant(ws.eval_plot("fake", "2")),
        _plant(ws.eval_meta("2")),
        _plant(ws.cache_dir() / "eval-reference-abc.json", age_seconds=3600),
    ]
    young = _plant(ws.cache_dir() / "step1-other.json")  # may be another run's live write
    evaluate_workspace(tiny_workspace, waves=["2"])
    assert [p for p in planted if p.exists()] == []
    assert young.exists()


def test_run_removes_stale_cache_and_checkpoint_temporaries(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    _generated(tiny_workspace)
    step1 = next(ws.cache_dir().glob("step1-*.json"))
    planted = [
        _plant(ws.checkpoint("fake", "2")),
        _plant(ws.output_csv("fake", "2")),
        _plant(step1),  # the entry this run writes again: its own stale temporaries go at once
        _plant(ws.cache_dir() / "step2-from-another-wave.json", age_seconds=3600),
    ]
    young = _plant(ws.cache_dir() / "step2-live-elsewhere.json")
    step1.unlink()  # recomputed and written again
    run_wave(tiny_workspace, "2", FakeClient(default=fake_answer), "fake",
             RunOptions(n_outputs=4, n_batches=6, restart=True))
    assert [p for p in planted if p.exists()] == []
    assert young.exists()


def _write_manifest(ws: Workspace, md: str, **fields: object) -> None:
    ws.manifest(md, "2").write_text(json.dumps({"wave": "2", "mode": "dense", **fields}))


@pytest.mark.parametrize(
    "case, expected",
    [
        ("agrees", None),
        ("missing", "is missing"),
        ("incomplete", "the run is incomplete"),
        ("rows", "has 24 rows but its manifest records 700"),
    ],
)
def test_evaluate_says_when_a_csv_and_its_manifest_disagree(
    tiny_workspace: Path, case: str, expected: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    ws = Workspace(tiny_workspace)
    _generated(tiny_workspace)
    manifest = ws.manifest("fake", "2")
    if case == "missing":
        manifest.unlink()
    elif case == "incomplete":
        _write_manifest(ws, "fake", status="incomplete", rows=0, error="wave 2: only 0 of 24")
    elif case == "rows":
        _write_manifest(ws, "fake", status="complete", rows=700)
    assert len(pd.read_csv(ws.output_csv("fake", "2"))) == 24
    evaluate_workspace(tiny_workspace, waves=["2"])
    doc = json.loads(ws.eval_metrics_json("fake", "2").read_text())
    check = doc["manifest_check"]
    report = ws.report_html().read_text()
    if expected is None:
        assert check == {"agrees": True, "warnings": []}
        assert "disagree" not in report
        return
    assert check["agrees"] is False and expected in check["warnings"][0]
    assert expected in caplog.text
    assert "The CSV and its run manifest disagree" in report and expected in report
