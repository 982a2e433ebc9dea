"""Membership inference and variance collapse in the metrics JSON, the reading and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evalhelpers import real_clean, synthetic_like, write_synthetic, write_workspace

from panelsynth.evaluate import evaluate_workspace
from panelsynth.workspace import Workspace


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_workspace(tmp_path_factory.mktemp("privacy") / "ws", n=500)
    ws = Workspace(root)
    real = real_clean(root, 2).drop(columns="respondent_id")
    # "copycat" pastes 20 real respondents per cluster into its prompt and copies them
    examples = real.groupby("cluster").sample(20, random_state=0)
    ws.examples_csv("copycat", "2").parent.mkdir(parents=True, exist_ok=True)
    examples.to_csv(ws.examples_csv("copycat", "2"), index=False)
    write_synthetic(root, "copycat", 2, examples.sample(frac=1.0, random_state=1))
    # "modal" answers every item with its modal value; "fresh" is an independent draw
    modal = synthetic_like(root, 2, 120, seed=4)
    for name in ("vacc_imp", "vacc_safe", "age", "sex", "vaccinated"):
        modal[name] = real[name].mode().iloc[0]
    write_synthetic(root, "modal", 2, modal)
    write_synthetic(root, "fresh", 2, synthetic_like(root, 2, 120, seed=5))
    evaluate_workspace(root, waves=["2"])
    return root


def _doc(root: Path, md: str) -> dict:
    return json.loads(Workspace(root).eval_metrics_json(md, "2").read_text())


def test_copying_examples_shows_in_membership_inference(root: Path) -> None:
    doc = _doc(root, "copycat")
    s = doc["summary"]
    assert s["mia_tpr_1pct_fpr"]["synthetic"] > 0.9
    mia = doc["candidates"]["synthetic"]["membership_inference"]
    assert mia["members"] == 40 and mia["members_are"].startswith("few-shot examples")
    assert mia["non_members_are"].startswith("the wave's other respondents")
    # the baselines are attacked with their own training rows (half A) against half B
    assert 0.0 <= s["mia_tpr_1pct_fpr"]["_baseline_cart"] <= 1.0
    assert s["mia_tpr_1pct_fpr"]["_real_holdout"] is None
    assert any("Membership inference" in r and "leak" in r for r in doc["reading"])


def test_a_run_without_examples_or_holdout_reports_why_it_is_unavailable(root: Path) -> None:
    doc = _doc(root, "fresh")
    assert doc["summary"]["mia_tpr_1pct_fpr"]["synthetic"] is None
    why = [
        e["reason"]
        for e in doc["nan_explanations"]
        if e["path"] == "summary.mia_tpr_1pct_fpr.synthetic"
    ]
    assert why and "--holdout" in why[0]


def test_variance_collapse_in_json_reading_and_report(root: Path) -> None:
    modal, fresh = _doc(root, "modal"), _doc(root, "fresh")
    assert modal["summary"]["collapsed_item_share"]["synthetic"] == pytest.approx(1.0)
    assert fresh["summary"]["collapsed_item_share"]["synthetic"] == pytest.approx(0.0)
    assert modal["summary"]["collapsed_item_share"]["_real_holdout"] == pytest.approx(0.0)
    details = modal["candidates"]["synthetic"]["variance_collapse"]["details"]
    assert {(d["column"], d["cluster"]) for d in details} >= {("vacc_imp", "all"), ("age", "2")}
    assert any(r.startswith("Variance: 100% of items collapsed") for r in modal["reading"])
    html = Workspace(root).report_html().read_text()
    assert "Privacy: membership inference" in html
    assert "Variance collapse (answer entropy per item" in html
    glance = html.split("<h2>At a glance</h2>")[1].split("</ul>")[0]
    assert "answer too uniformly" in glance


def test_tables_name_the_model_dir_their_references_are_matched_to(root: Path) -> None:
    html = Workspace(root).report_html().read_text()
    assert "size-matched to copycat (40 rows; fresh 120, modal 120)" in html
