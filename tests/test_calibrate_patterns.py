"""Full-mode item non-response: calibrated rows take real missingness patterns (issue 12, 11)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from battery import write_battery_workspace
from fakes import fake_answer
from test_calibrate_pipeline import PROFILE_LINE, _from_schema, profile_keeper

from panelsynth.calibrate import Profile, ProfileDesign, profiled_batch_model
from panelsynth.config import load_config
from panelsynth.llm.base import FakeClient
from panelsynth.pydantic_models.rows import batch_model, row_model_for_wave, wave_row_specs
from panelsynth.run.wave import RunOptions, load_wave_for_run, run_wave
from panelsynth.workspace import Workspace


def _wave(ws: Path):  # type: ignore[no-untyped-def]
    w = Workspace(ws)
    return load_wave_for_run(w, "1", load_config(w.config_path), "full")


def answering_everything(messages: list[dict], model: type) -> Any:
    """A hosted-style model that keeps the profile's anchors but answers every question."""
    out = profile_keeper()(messages, model)
    if model.__name__ == "SyntheticRespondents" and PROFILE_LINE.search(messages[-1]["content"]):
        items = model.model_json_schema()["properties"]["rows"]["items"]
        import random

        rng = random.Random(1)
        for row in out["rows"]:
            for k, v in _from_schema(items, rng).items():
                if row.get(k) is None and k not in ("cluster",):
                    row[k] = v
    return out


def test_profiles_carry_the_missingness_pattern_of_a_real_respondent(tmp_path: Path) -> None:
    wd = _wave(write_battery_workspace(tmp_path / "ws"))
    specs = wave_row_specs(wd)
    items = [s.name for s in specs if s.nullable and s.vtype != "cluster"
             and s.name not in ("age", "sex")]
    design = ProfileDesign.from_frame(wd.frame, specs, ["age", "sex"], cluster_column="cluster",
                                      seed=1, pattern_columns=items)
    real_patterns = {
        c: {tuple(v for v in items if pd.isna(r[v])) for _, r in wd.frame[wd.frame.cluster == c]
            .iterrows()}
        for c in (1, 2)
    }
    profiles = design.draw(200)
    assert any(p.missing for p in profiles)
    for p in profiles:
        assert p.missing in real_patterns[p.cluster]
    assert "null (no answer)" in next(p for p in profiles if p.missing).text()
    # a cluster with more non-response gives more missing answers
    share = {c: np.mean([len(p.missing) for p in profiles if p.cluster == c]) for c in (1, 2)}
    assert share[2] > share[1]


def test_profiled_schema_fixes_na_cells_and_requires_the_answered_ones(tmp_path: Path) -> None:
    wd = _wave(write_battery_workspace(tmp_path / "ws"))
    specs = wave_row_specs(wd)
    row_model, _ = row_model_for_wave(specs, None, "1")
    prof = Profile(2, (("sex", 1),), missing=("spend03", "party"))
    model = profiled_batch_model(row_model, [prof], "cluster", ["spend01", "spend03", "party"])
    props = model.model_json_schema()["properties"]["respondent_1"]["properties"]
    assert props["spend03"] == {"type": "null"} and props["party"] == {"type": "null"}
    assert "anyOf" not in props["spend01"] and props["spend01"]["enum"] == [1, 2, 3, 4, 5]
    assert "anyOf" in props["spend02"]  # not a pattern column: left as it was
    assert batch_model(row_model, 1)  # the shared model is unchanged


def test_calibrated_full_run_gives_each_row_its_profiles_pattern(tmp_path: Path) -> None:
    ws = write_battery_workspace(tmp_path / "ws", n=120)
    client = FakeClient(default=answering_everything)
    res = run_wave(ws, "1", client, "fake", RunOptions(
        mode="full", calibrate=True, n_outputs=5, n_batches=8, n_examples=3))
    df = pd.read_csv(res.output)
    cal = res.manifest_data["calibration"]
    pat = cal["missingness_patterns"]
    assert cal["missingness_patterns"] and "spend01" in pat["items"]
    assert pat["answers_set_to_na"] > 0  # the model answered everything; the pattern decided
    items = pat["items"]
    syn_na = df[items].isna().to_numpy().mean()
    real_na = _wave(ws).frame[items].isna().to_numpy().mean()
    assert syn_na > 0.5 * real_na  # not the ~0 a model left alone writes
    step3 = [c for c in client.calls if c["response_model"].__name__ == "SyntheticRespondents"]
    assert "skipped them" in step3[0]["messages"][-1]["content"]
    na = res.manifest_data["item_nonresponse"]
    assert na["method"].startswith("calibrated")


def test_plain_full_run_reports_the_item_nonresponse_gap(tmp_path: Path) -> None:
    ws = write_battery_workspace(tmp_path / "ws")
    res = run_wave(ws, "1", FakeClient(default=fake_answer), "fake",
                   RunOptions(mode="full", n_outputs=4, n_batches=2, n_examples=3))
    m = json.loads(res.manifest.read_text())
    na = m["item_nonresponse"]
    assert na["method"].startswith("plain")
    assert na["real_mean_na_share"] > 0.03
    assert set(na["per_variable"]) >= {"spend01", "party"}
    assert na["gap"] == round(na["synthetic_mean_na_share"] - na["real_mean_na_share"], 4)
    assert na["synthetic_mean_na_share"] == 0  # the fake, like the small model, writes no null
    assert any("item non-response gap" in w for w in m["warnings"])
