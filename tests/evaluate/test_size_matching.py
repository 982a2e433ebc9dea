"""The floor and the baselines are scored at the synthetic set's size, the floor over several
seeded splits with its spread (issue 12 item 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evalhelpers import synthetic_like, write_synthetic, write_workspace

from panelsynth.evaluate import evaluate_workspace
from panelsynth.evaluate.suite import FLOOR_REPEATS
from panelsynth.workspace import Workspace


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_workspace(tmp_path_factory.mktemp("size") / "ws", n=600)
    write_synthetic(root, "small", 2, synthetic_like(root, 2, 60, seed=5))
    write_synthetic(root, "large", 2, synthetic_like(root, 2, 250, seed=6))
    evaluate_workspace(root, waves=["2"])
    return root


@pytest.mark.parametrize(("md", "n"), [("small", 60), ("large", 250)])
def test_floor_and_baselines_have_the_synthetic_sets_size(evaluated: Path, md: str, n: int) -> None:
    doc = json.loads(Workspace(evaluated).eval_metrics_json(md, "2").read_text())
    assert doc["rows"]["synthetic"] == n
    for cand in ("_real_holdout", "_baseline_marginal", "_baseline_cart"):
        assert doc["candidates"][cand]["rows"] == n, cand
    sm = doc["rows"]["size_matched"]
    assert sm["candidate_rows"] == n and sm["floor_rows"] == n
    assert sm["baseline_rows"] == {"_baseline_marginal": n, "_baseline_cart": n}
    assert sm["floor_repeats"] == FLOOR_REPEATS


def test_floor_spread_over_seeded_splits(evaluated: Path) -> None:
    doc = json.loads(Workspace(evaluated).eval_metrics_json("small", "2").read_text())
    spread = doc["floor_spread"]
    for key in ("density_shape", "c2st_gb", "na_share_similarity"):
        sp = spread[key]
        assert len(sp["values"]) == FLOOR_REPEATS
        assert sp["min"] <= doc["summary"][key]["_real_holdout"] <= sp["max"]
        assert sp["values"][0] == pytest.approx(doc["summary"][key]["_real_holdout"], abs=1e-6)
        assert sp["sd"] >= 0 and sp["min"] < sp["max"]  # 60-row samples do vary
    assert "floor_repeats" in doc["protocol"]["caps"]
    report = Workspace(evaluated).report_html().read_text()
    sp = spread["density_shape"]
    assert f"{sp['min']:.2f}–{sp['max']:.2f}" in report
    assert "size-matched to the synthetic set" in report


def test_a_smaller_synthetic_set_has_a_noisier_floor(evaluated: Path) -> None:
    ws = Workspace(evaluated)
    small = json.loads(ws.eval_metrics_json("small", "2").read_text())["floor_spread"]
    large = json.loads(ws.eval_metrics_json("large", "2").read_text())["floor_spread"]
    assert small["density_shape"]["mean"] < large["density_shape"]["mean"]


def test_model_by_wave_tables_show_the_floors_range(evaluated: Path) -> None:
    doc = json.loads(Workspace(evaluated).eval_metrics_json("large", "2").read_text())
    sp = doc["floor_spread"]["c2st_gb"]
    report = Workspace(evaluated).report_html().read_text()
    assert (
        f"_real_holdout over {FLOOR_REPEATS} seeded splits: wave 2 {sp['min']:.2f}–{sp['max']:.2f}"
        in report
    )
