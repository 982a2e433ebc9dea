"""evaluate_workspace end to end on small workspaces built in tmp_path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evalhelpers import real_clean, synthetic_like, write_synthetic, write_workspace

from panelsynth.errors import WorkspaceError
from panelsynth.evaluate import evaluate_workspace
from panelsynth.evaluate.runner import extra_table_path
from panelsynth.workspace import EVAL_TABLES, Workspace

REFS = ["_real_holdout", "_baseline_marginal", "_baseline_cart"]


def _nulls(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nulls(v, f"{path}.{k}" if path else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _nulls(v, f"{path}[{i}]")
    elif obj is None:
        yield path


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory):
    root = write_workspace(tmp_path_factory.mktemp("eval") / "ws", n=500)
    for w in (1, 2):
        write_synthetic(root, "good", w, synthetic_like(root, w, 200, seed=20 + w))
    # "copycat" copies its few-shot examples (4 per cluster of the real wave)
    real2 = real_clean(root, 2)
    examples = real2.groupby("cluster").sample(4, random_state=0)
    ex_path = Workspace(root).examples_csv("copycat", "2")
    ex_path.parent.mkdir(parents=True, exist_ok=True)
    examples.to_csv(ex_path, index=False)
    copy = examples.drop(columns="respondent_id").sample(120, replace=True, random_state=1)
    write_synthetic(root, "copycat", 2, copy)
    Workspace(root).manifest("copycat", "2").write_text(
        json.dumps({"mode": "dense", "target_variable": "vaccinated"})
    )
    calls = []
    summary = evaluate_workspace(root, progress=lambda d, i, n: calls.append((d, i, n)))
    return root, summary, calls


def test_tables_have_a_row_per_wave_and_model_dir_holdout_and_baseline_columns(evaluated) -> None:
    root, summary, _ = evaluated
    ws = Workspace(root)
    paths = [ws.eval_table(n) for n in EVAL_TABLES] + [
        extra_table_path(ws, n) for n in ("density_trend_unthresholded", "c2st_gb")
    ]
    for p in paths:
        t = pd.read_csv(p, dtype={"wave": str}).set_index("wave")
        assert list(t.index) == ["1", "2"], p.name
        assert list(t.columns) == ["copycat", "good", *REFS], p.name
        assert t.loc[["1", "2"], ["good", *REFS]].notna().all().all(), p.name
        assert not math.isnan(t.loc["2", "copycat"]), p.name
        assert math.isnan(t.loc["1", "copycat"])  # copycat has no wave 1
        assert ((t.fillna(0) >= 0) & (t.fillna(0) <= 1)).all().all()
    assert set(summary.tables) == {*EVAL_TABLES, "density_trend_unthresholded", "c2st_gb"}


def test_every_null_in_the_metrics_json_is_explained(evaluated) -> None:
    root, _, _ = evaluated
    ws = Workspace(root)
    for md, w in (("good", "1"), ("good", "2"), ("copycat", "2")):
        doc = json.loads(ws.eval_metrics_json(md, w).read_text())
        explained = {e["path"] for e in doc["nan_explanations"]}
        assert all(e["reason"] and e["reason"] != "unexplained" for e in doc["nan_explanations"])
        for path in _nulls(doc):
            assert path in explained or path.rsplit(".", 1)[0] in explained, (md, w, path)


def test_metrics_json_has_every_figure_of_the_issue(evaluated) -> None:
    root, _, _ = evaluated
    doc = json.loads(Workspace(root).eval_metrics_json("good", "2").read_text())
    s = doc["summary"]
    for key in (
        "density_shape",
        "density_trend",
        "density_overall",
        "density_trend_unthresholded",
        "c2st",
        "c2st_gb",
        "cluster_shares",
        "transition_similarity",
        "na_share_similarity",
        "na_mean_abs_diff",
        "duplicate_share",
        "exact_copy_share",
        "exact_copy_share_half",
        "dcr_mean",
        "dcr_ratio",
        "tstr_auc",
        "cluster_1_shape",
        "cluster_2_trend",
    ):
        assert key in s, key
        assert set(s[key]) == {"synthetic", *REFS}
    syn = doc["candidates"]["synthetic"]
    assert {d["prev_cluster"] for d in syn["transition_similarity"]["details"]} >= {"1", "2"}
    assert set(syn["na_share_similarity"]["per_cluster"]) == {"1", "2"}
    assert set(syn["per_cluster"]) == {"1", "2"}
    assert doc["target"] == {"variable": "vaccinated", "source": "panelsynth.toml study.outcome"}
    assert (
        "categorical" in doc["sdtype_choice"]
        and doc["columns"]["vacc_imp"]["sdtype"] == "categorical"
    )
    assert doc["mode"] == "dense" and doc["mode_source"].startswith("inferred")
    assert doc["reading"] and "for a real half" in doc["reading"][0]
    # a fresh sample of the same population sits near the real-vs-real floor
    assert s["density_shape"]["synthetic"] > s["density_shape"]["_real_holdout"] - 0.05
    # the real half has no TSTR gap by construction: TRTR is its own reference
    assert s["tstr_auc"]["_real_holdout"] > 0.6


def test_copying_examples_shows_up_as_example_and_exact_copies(evaluated) -> None:
    root, _, _ = evaluated
    doc = json.loads(Workspace(root).eval_metrics_json("copycat", "2").read_text())
    assert doc["mode_source"] == "manifest"
    assert doc["summary"]["example_copy_share"]["synthetic"] == pytest.approx(1.0)
    assert doc["summary"]["exact_copy_share"]["synthetic"] == pytest.approx(1.0)
    assert doc["summary"]["duplicate_share"]["synthetic"] > 0.8
    assert doc["summary"]["dcr_ratio"]["synthetic"] == pytest.approx(0.0)
    assert any("verbatim" in r for r in doc["reading"])
    good = json.loads(Workspace(root).eval_metrics_json("good", "2").read_text())
    assert good["summary"]["example_copy_share"]["synthetic"] is None
    assert any("no few-shot examples file" in e["reason"] for e in good["nan_explanations"])


def test_eval_meta_plot_and_report_are_written(evaluated) -> None:
    root, summary, calls = evaluated
    ws = Workspace(root)
    meta = json.loads(ws.eval_meta("2").read_text())
    assert meta["columns"]["vacc_imp"] == {"sdtype": "categorical"}
    assert meta["columns"]["age"] == {"sdtype": "numerical"}
    assert {"cluster", "prev_cluster", "vaccinated"} <= set(meta["columns"])
    assert "prev_cluster" not in json.loads(ws.eval_meta("1").read_text())["columns"]
    png = ws.eval_plot("good", "2")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    html = ws.report_html().read_text()
    assert summary.report == ws.report_html()
    assert html.count("data:image/png;base64,") == 3
    assert 'src="http' not in html and "<script" not in html
    for text in (
        "real half (floor)",
        "marginal baseline",
        "CART baseline",
        "Per cluster",
        "Missing answers",
        "Previous → current cluster",
        "for a real half",
    ):
        assert text in html, text
    assert calls[0][1] == 0 and calls[-1][1:] == (3, 3)


def test_rerun_for_one_model_dir_keeps_the_other_columns(evaluated) -> None:
    root, _, _ = evaluated
    ws = Workspace(root)
    before = pd.read_csv(ws.eval_table("density_shape"), dtype={"wave": str}).set_index("wave")
    summary = evaluate_workspace(root, model_dirs=["copycat"], waves=["2"])
    assert summary.evaluated == [("copycat", "2")]
    after = pd.read_csv(ws.eval_table("density_shape"), dtype={"wave": str}).set_index("wave")
    pd.testing.assert_frame_equal(before, after)  # same seed: same figures, nothing lost


def test_one_broken_pair_does_not_abort_the_others(tmp_path: Path) -> None:
    root = write_workspace(tmp_path / "ws", n=300)
    write_synthetic(root, "good", 1, synthetic_like(root, 1, 120, seed=3))
    write_synthetic(root, "broken", 1, pd.DataFrame({"foo": [1, 2], "bar": [3, 4]}))
    summary = evaluate_workspace(root, waves=["1"])
    assert summary.evaluated == [("good", "1")]
    (fail,) = summary.failures
    assert fail.model_dir == "broken" and "none of the wave's variables" in fail.error
    t = pd.read_csv(Workspace(root).eval_table("c2st"), dtype={"wave": str})
    assert "good" in t.columns and "broken" not in t.columns


def test_full_mode_is_inferred_from_the_columns(tmp_path: Path) -> None:
    root = write_workspace(tmp_path / "ws", n=300)
    ws = Workspace(root)
    dense = {"vacc_imp": "an ordinal", "vacc_safe": "an ordinal", "age": "a continuous"}
    ws.var_types("1").write_text(json.dumps(dense))
    meta = json.loads(ws.metadata_json("1").read_text())
    ws.metadata_json("1").write_text(json.dumps({k: meta[k] for k in dense}))
    full_types = ws.var_types_for_write("1", "full")
    full_types.parent.mkdir(parents=True)
    full_types.write_text(json.dumps({**dense, "sex": "a binary"}))
    full_meta = ws.metadata_json_for_write("1", "full")
    full_meta.parent.mkdir(parents=True)
    full_meta.write_text(json.dumps(meta))
    write_synthetic(root, "full_run", 1, synthetic_like(root, 1, 120, seed=3))
    write_synthetic(root, "dense_run", 1, synthetic_like(root, 1, 120, seed=4).drop(columns="sex"))
    evaluate_workspace(root)
    d_full = json.loads(ws.eval_metrics_json("full_run", "1").read_text())
    d_dense = json.loads(ws.eval_metrics_json("dense_run", "1").read_text())
    assert d_full["mode"] == "full" and "sex" in d_full["columns"]
    assert d_dense["mode"] == "dense" and "sex" not in d_dense["columns"]
    assert "tstr_auc" not in d_dense["summary"]
    assert any("TSTR skipped" in e["reason"] for e in d_dense["nan_explanations"])


def test_user_errors_are_one_actionable_line(tmp_path: Path, evaluated) -> None:
    root, _, _ = evaluated
    with pytest.raises(WorkspaceError, match="workspace not found"):
        evaluate_workspace(tmp_path / "missing")
    with pytest.raises(WorkspaceError, match=r"unknown wave '9'.*generated waves: 1, 2"):
        evaluate_workspace(root, waves=["9"])
    with pytest.raises(
        WorkspaceError, match=r"model dir 'nope' has no synthetic data.*copycat, good"
    ):
        evaluate_workspace(root, model_dirs=["nope"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WorkspaceError, match="nothing to evaluate"):
        evaluate_workspace(empty)
    bad_meta = Workspace(root).eval_meta("1")
    saved = bad_meta.read_text()
    try:
        bad_meta.write_text('{"columns": {"age": {"sdtype": "weird"}}}')
        with pytest.raises(Exception, match="sdtype 'weird'"):
            evaluate_workspace(root, model_dirs=["good"], waves=["1"])
    finally:
        bad_meta.write_text(saved)


def test_seed_makes_results_reproducible(tmp_path: Path) -> None:
    root = write_workspace(tmp_path / "ws", n=300)
    write_synthetic(root, "m", 1, synthetic_like(root, 1, 120, seed=3))
    a = evaluate_workspace(root, seed=7).outcomes[0].summary
    b = evaluate_workspace(root, seed=7).outcomes[0].summary
    assert a == b
    c = evaluate_workspace(root, seed=8).outcomes[0].summary
    assert c["density_shape"]["_real_holdout"] != a["density_shape"]["_real_holdout"]
    assert not np.isnan(c["density_shape"]["synthetic"])
