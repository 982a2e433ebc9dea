"""The messy survey (tests/messy.py) from raw files to the evaluation, through the CLI, with the
real embedded model (SmolLM2-135M): slow, run in CI. A few rows only."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from messy import BATTERY, CATEGORICAL, ELLIPSIS, LIKERT, TRINARY, write_messy_survey
from typer.testing import CliRunner

from panelsynth.cli import app
from panelsynth.workspace import Workspace

pytestmark = pytest.mark.slow

MODEL_DIR = "smollm2"


def _cli(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, (args, res.output)
    return res.stdout


def _raw_to_evaluation(root: Path, *, n_examples: int) -> tuple[pd.DataFrame, dict, dict]:
    """prepare -> run wave 1 in the full mode (2 rows) -> evaluate; returns the synthetic rows,
    the wave's full metadata and the manifest."""
    _cli("prepare", "--workspace", str(root))
    _cli(
        "run", "--workspace", str(root), "--wave", "1", "--mode", "full",
        "--model", "local/smollm2", "--model-dir", MODEL_DIR,
        "--n-outputs", "2", "--n-batches", "1", "--n-examples", str(n_examples), "--yes",
    )
    ws = Workspace(root)
    _cli("evaluate", "--workspace", str(root), "--model-dir", MODEL_DIR, "--wave", "1")
    assert ws.eval_table("density_overall").exists()
    synth = pd.read_csv(ws.output_csv(MODEL_DIR, "1"), dtype=str, keep_default_na=False)
    meta = json.loads(
        (root / "Dictionaries/json_metadata/full/metadata_wave1.json").read_text("utf-8")
    )
    manifest = json.loads(ws.manifest(MODEL_DIR, "1").read_text("utf-8"))
    return synth, meta, manifest


def _assert_valid(synth: pd.DataFrame, meta: dict, variables: list[str]) -> None:
    """Every cell is empty (NA, the full mode) or one of the codebook's codes / in its range."""
    assert len(synth) == 2
    assert set(variables) <= set(synth.columns)
    for var in variables:
        entry = meta[var]
        for cell in synth[var]:
            if cell == "":
                continue
            if "responses" in entry:
                code = cell[:-2] if cell.endswith(".0") else cell
                assert code in entry["responses"], (var, cell)
            else:
                lo, hi = entry["range"]
                assert lo <= float(cell) <= hi, (var, cell)


def test_messy_survey_full_mode_with_28_items(tmp_path: Path) -> None:
    """The 28-item battery (plus age and gender) in the full mode, as the original study's full
    datasets had 20-30 items. Needs step 1 to split its request on the embedded model."""
    others = [*CATEGORICAL, "days_active", "comment"]
    survey = write_messy_survey(
        tmp_path / "ws", waves=("1", "2"), n=240,
        config=f"[prepare]\nexclude = {json.dumps(others)}\n",
    )
    synth, meta, manifest = _raw_to_evaluation(survey.root, n_examples=2)
    types = json.loads(
        (survey.root / "Dictionaries/var_types/full/types_wave1.json").read_text("utf-8")
    )
    assert [v for v in types if v in BATTERY] == BATTERY  # all 28 items
    _assert_valid(synth, meta, [*BATTERY, "age", "gender"])
    assert manifest["cost"]["usd"] == 0.0 and manifest["tokens"]["output"] > 0


def test_messy_survey_text_categories_and_scales(tmp_path: Path) -> None:
    """Text categories with spaces and slashes, a -1/0/1 item, an ellipsis scale, a Likert item
    with a listed "Don't know", a count 0-7, and gender as a demographic, in the full mode."""
    items = [TRINARY[0], ELLIPSIS[0], LIKERT[1], *CATEGORICAL, "days_active"]
    survey = write_messy_survey(
        tmp_path / "ws", waves=("1", "2"), n=240,
        config=f"[prepare]\ninclude = {json.dumps(items)}\n",
    )
    synth, meta, _ = _raw_to_evaluation(survey.root, n_examples=3)
    _assert_valid(synth, meta, [*items, "age", "gender"])
    assert meta["party"]["responses"]["Green/Left Alliance"] == "Green/Left Alliance"
    assert meta[TRINARY[0]]["responses"]["-1"] == "Disagree"
