"""End to end with the real embedded model (SmolLM2-135M through llama.cpp): slow, run in CI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from panelsynth.config import load_config
from panelsynth.pydantic_models.rows import wave_row_specs
from panelsynth.run.wave import RunOptions, load_wave_for_run, run_wave
from panelsynth.runner import open_client
from panelsynth.workspace import Workspace

pytestmark = pytest.mark.slow


def _check_against_codebook(ws: Workspace, wave: str, model_dir: str, mode: str) -> pd.DataFrame:
    cfg = load_config(ws.config_path)
    wd = load_wave_for_run(ws, wave, cfg, mode)  # type: ignore[arg-type]
    specs = wave_row_specs(wd)
    df = pd.read_csv(ws.output_csv(model_dir, wave))
    assert list(df.columns) == [s.name for s in specs]
    for s in specs:
        bad = [v for v in df[s.name].tolist() if not s.allows(None if pd.isna(v) else v)]
        assert not bad, f"{s.name}: values {bad[:5]} not allowed"
    return df


def test_tiny_run_with_embedded_model(tiny_workspace: Path) -> None:
    client = open_client("local/smollm2")
    assert client.is_local
    res = run_wave(tiny_workspace, "2", client, "smollm2", RunOptions(n_outputs=3, n_batches=2))
    ws = Workspace(tiny_workspace)
    df = _check_against_codebook(ws, "2", "smollm2", "dense")
    assert len(df) == 6
    m = json.loads(res.manifest.read_text())
    assert m["cost"]["usd"] == 0.0
    assert m["tokens"]["output"] > 0 and m["tokens"]["input"] > m["tokens"]["output"]
    for p in (ws.cluster_descriptions_log("smollm2", "2"), ws.examples_log("smollm2", "2"),
              ws.gen_metadata_log("smollm2", "2")):
        assert p.exists() and p.stat().st_size > 0


def test_tiny_demo_with_embedded_model(tmp_path: Path) -> None:
    from panelsynth.demo.pipeline import DemoRun, run_demo

    plan = (DemoRun("3", "dense", "smollm2", n_outputs=3, n_batches=2),
            DemoRun("1", "full", "smollm2-full", n_outputs=2, n_batches=2, n_examples=3))
    out = run_demo(tmp_path / "demo", n_respondents=300, plan=plan, panel=None)
    ws = out.demo.workspace
    df = _check_against_codebook(ws, "3", "smollm2", "dense")
    assert len(df) == 6 and {"already_vaccinated", "prev_cluster"} <= set(df.columns)
    _check_against_codebook(ws, "1", "smollm2-full", "full")
