"""Held-out respondents (issue 16): never in steps 1-3, recorded, and scored against."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fakes import write_tiny_workspace
from test_calibrate_pipeline import profile_keeper
from typer.testing import CliRunner

import panelsynth.calibrate.strategy as calibrate_strategy
import panelsynth.run.wave as pipeline
from panelsynth.cli import app
from panelsynth.demo.build import build_demo
from panelsynth.errors import ConfigError, PanelsynthError
from panelsynth.evaluate import evaluate_workspace
from panelsynth.holdout import held_out_mask
from panelsynth.llm.base import FakeClient
from panelsynth.run.wave import RunOptions, run_wave
from panelsynth.workspace import Workspace


def _ids_of(ws: Workspace, wave: str, frame: pd.DataFrame) -> set[str]:
    """The respondent ids of rows of a wave frame (its index is the wave file's row)."""
    raw = pd.read_csv(ws.original_data(wave))
    return {str(v) for v in raw.loc[frame.index, "respondent_id"]}


@pytest.fixture(scope="module")
def held_out_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A calibrated --holdout 0.3 run of demo wave 3 with every step-1-3 input recorded."""
    root = tmp_path_factory.mktemp("holdout") / "demo"
    build_demo(root, n_respondents=300)
    seen: dict[str, Any] = {}
    describe, setup = pipeline.describe_wave, calibrate_strategy.setup_calibration

    def spy_describe(client: Any, wd: Any, **kw: Any) -> Any:
        seen["statistics"] = wd.frame.copy()
        seen["shares"] = wd.cluster_shares()
        out = describe(client, wd, **kw)
        seen["examples"] = out.examples.copy()
        return out

    def spy_setup(real: pd.DataFrame, *args: Any, **kw: Any) -> Any:
        seen["calibration_target"] = real.copy()
        return setup(real, *args, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(pipeline, "describe_wave", spy_describe)
    mp.setattr(calibrate_strategy, "setup_calibration", spy_setup)
    try:
        res = run_wave(
            root, "3", FakeClient(default=profile_keeper()), "fake",
            RunOptions(n_outputs=5, n_batches=4, calibrate=True, holdout=0.3, seed=11),
        )
    finally:
        mp.undo()
    return {"root": root, "res": res, "seen": seen}


def test_held_out_ids_reach_no_step(held_out_run: dict[str, Any]) -> None:
    ws = Workspace(held_out_run["root"])
    seen = held_out_run["seen"]
    ids = pd.read_csv(ws.holdout_ids(), dtype=str)
    held = set(ids.loc[ids["wave"] == "3", "respondent_id"])
    raw = pd.read_csv(ws.original_data("3"))
    assert 0.2 < len(held) / len(raw) < 0.4  # about the share asked
    # the step-1 statistics input, the examples and the calibrated selection's target
    for name in ("statistics", "examples", "calibration_target"):
        used = _ids_of(ws, "3", seen[name])
        assert used and not used & held, name
    # every training respondent is available to the calibrated selection's target
    everyone = {str(v) for v in raw["respondent_id"]}
    assert _ids_of(ws, "3", seen["calibration_target"]) == everyone - held
    # the examples log and CSV hold exactly the recorded examples, all training rows
    logged = pd.read_csv(ws.examples_csv("fake", "3"))
    assert len(logged) == len(seen["examples"])
    training = raw[~raw["respondent_id"].astype(str).isin(held)]
    cols = list(logged.columns)
    keys = set(map(tuple, training[cols].astype("Float64").astype(str).to_numpy()))
    assert all(tuple(r) in keys for r in logged.astype("Float64").astype(str).to_numpy())
    assert f"Cluster 1 ({(seen['examples']['cluster'] == 1).sum()} examples)" in (
        ws.examples_log("fake", "3").read_text()
    )
    # cluster shares stated in the prompt are the training respondents'
    train_shares = training["cluster"].value_counts(normalize=True)
    assert seen["shares"][1] == pytest.approx(train_shares[1])


def test_split_is_recorded_in_manifest_and_fingerprint(held_out_run: dict[str, Any]) -> None:
    ws = Workspace(held_out_run["root"])
    man = json.loads(ws.manifest("fake", "3").read_text())
    h = man["holdout"]
    assert h["enabled"] and h["share"] == 0.3 and h["seed"] == 11
    assert h["id_column"] == "respondent_id" and h["ids_file"] == "Evaluation/holdout_ids.csv"
    ids = pd.read_csv(ws.holdout_ids(), dtype=str)
    assert h["held_out_respondents"] == (ids["wave"] == "3").sum()
    assert man["real_rows_used"] <= h["training_respondents"]
    header = json.loads(ws.checkpoint("fake", "3").read_text().splitlines()[0])["header"]
    assert header["holdout"] == {"share": 0.3, "seed": 11, "id_column": "respondent_id"}


def test_resume_with_other_holdout_settings_is_refused(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws", n=80)
    opts = {"n_outputs": 4, "n_batches": 2, "calibrate": False}
    client = FakeClient(default=profile_keeper())
    run_wave(root, "1", client, "m", RunOptions(**opts, holdout=0.3))
    Workspace(root).output_csv("m", "1").unlink()
    with pytest.raises(PanelsynthError, match="other settings"):
        run_wave(root, "1", client, "m", RunOptions(**opts, holdout=0.2, resume=True))


def test_same_person_is_held_out_of_every_wave() -> None:
    ids = pd.Series([str(i) for i in range(5000)])
    a = held_out_mask(ids, 0.3, seed=5)
    shuffled = ids.sample(frac=1.0, random_state=1).reset_index(drop=True)
    b = held_out_mask(shuffled, 0.3, seed=5)
    assert set(ids[a]) == set(shuffled[b])  # by id, not by row position
    assert 0.27 < a.mean() < 0.33
    assert set(ids[held_out_mask(ids, 0.3, seed=6)]) != set(ids[a])  # seeded


def test_holdout_share_out_of_range_is_one_line(tiny_workspace: Path) -> None:
    with pytest.raises(ConfigError, match="between 0 and 1"):
        run_wave(tiny_workspace, "1", FakeClient(default=profile_keeper()), "m",
                 RunOptions(holdout=1.5))


def test_wave_without_id_column_and_holdout_exits_2_with_one_line(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    df = pd.read_csv(ws.original_data("1")).drop(columns="respondent_id")
    df.to_csv(ws.original_data("1"), index=False)
    res = CliRunner().invoke(
        app,
        ["run", "--workspace", str(tiny_workspace), "--wave", "1", "--model", "openai/gpt-4o",
         "--dry-run", "--holdout", "0.3"],
    )
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "id column 'respondent_id'" in lines[0], res.output
    assert "Traceback" not in res.output


def test_evaluation_scores_a_held_out_run_against_the_held_out_respondents(
    held_out_run: dict[str, Any],
) -> None:
    root = held_out_run["root"]
    ws = Workspace(root)
    evaluate_workspace(root, model_dirs=["fake"], waves=["3"])
    doc = json.loads(ws.eval_metrics_json("fake", "3").read_text())
    man = json.loads(ws.manifest("fake", "3").read_text())
    assert doc["reference"]["label"] == "held-out respondents"
    assert doc["reference"]["holdout"] == {"share": 0.3, "seed": 11, "id_column": "respondent_id"}
    assert doc["rows"]["held_out"] == man["holdout"]["held_out_respondents"]
    assert doc["rows"]["training"] == man["holdout"]["training_respondents"]
    n = doc["rows"]["synthetic"]
    # the floor and the baselines are size-matched, the baselines fitted on training respondents
    assert doc["candidates"]["_real_holdout"]["rows"] == n
    assert doc["candidates"]["_baseline_cart"]["rows"] == n
    mia = doc["candidates"]["_baseline_cart"]["membership_inference"]
    assert mia["members"] == doc["rows"]["training"]
    assert mia["non_members"] == doc["rows"]["held_out"]
    syn = doc["candidates"]["synthetic"]["membership_inference"]
    assert syn["non_members_are"] == "held-out respondents"
    assert "for training respondents scored against the held-out respondents" in doc["reading"][0]
    report = ws.report_html().read_text()
    assert "LLM synthetic vs held-out respondents" in report
    assert "Reference: <b>held-out respondents</b>" in report


def test_no_row_of_a_training_respondent_is_scored_as_held_out(
    held_out_run: dict[str, Any],
) -> None:
    from panelsynth.evaluate.runner import held_out_frames

    ws = Workspace(held_out_run["root"])
    raw = pd.read_csv(ws.original_data("3"))
    man = json.loads(ws.manifest("fake", "3").read_text())
    held = held_out_frames(ws, "3", raw, man)
    ids = pd.read_csv(ws.holdout_ids(), dtype=str)
    assert set(held.held_out["respondent_id"].astype(str)) == set(
        ids.loc[ids["wave"] == "3", "respondent_id"]
    )
    assert not set(held.training["respondent_id"]) & set(held.held_out["respondent_id"])
    assert len(held.training) + len(held.held_out) == len(raw)
    assert np.isin(held.held_out.index, raw.index).all()


def test_holdout_0_on_the_command_line_turns_the_configs_holdout_off(tiny_workspace: Path) -> None:
    from panelsynth.config import load_config
    from panelsynth.run.wave import with_run_holdout

    config = load_config(None)
    config.generation.holdout = 0.3
    assert with_run_holdout(config, RunOptions(holdout=0), 42).generation.holdout == 0.0
    on = with_run_holdout(config, RunOptions(), 7)
    assert on.generation.holdout == 0.3 and on.generation.seed == 7
    assert config.generation.seed == 42  # the caller's config is not changed


def test_capped_training_and_held_out_rows_are_recorded(
    held_out_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import panelsynth.evaluate.suite as suite

    monkeypatch.setattr(suite, "REFERENCE_MAX_ROWS", 40)
    root = held_out_run["root"]
    evaluate_workspace(root, model_dirs=["fake"], waves=["3"], seed=7)
    ws = Workspace(root)
    doc = json.loads(ws.eval_metrics_json("fake", "3").read_text())
    s = doc["rows"]["reference_sampling"]
    assert s["sampled"] and s["training_rows_used"] == 40 and s["rows_used_per_half"] == 40
    assert s["training_rows"] == doc["rows"]["training"]
    assert s["rows_per_half"] == doc["rows"]["held_out"]
    assert f"40 of the {s['training_rows']:,} training respondents" in ws.report_html().read_text()
