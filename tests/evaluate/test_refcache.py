"""The per-wave reference is cached on disk, reused across model dirs and runs, and capped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evalhelpers import synthetic_like, write_synthetic, write_workspace

import panelsynth.evaluate.pair as pair
import panelsynth.evaluate.suite as suite
from panelsynth.evaluate import evaluate_workspace
from panelsynth.evaluate.columns import columns_from_var_types
from panelsynth.workspace import Workspace


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = pair.build_reference

    def counted(*args, **kwargs):
        calls.append(kwargs["wave"])
        return real(*args, **kwargs)

    monkeypatch.setattr(pair, "build_reference", counted)
    return calls


def test_second_evaluation_reuses_the_reference_and_a_changed_real_file_rebuilds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_workspace(tmp_path / "ws", n=300)
    write_synthetic(root, "m1", 1, synthetic_like(root, 1, 100, seed=3))
    write_synthetic(root, "m2", 1, synthetic_like(root, 1, 100, seed=4))
    calls = _counting(monkeypatch)

    first = evaluate_workspace(root, waves=["1"])
    assert calls == ["1"]  # two model dirs, one reference
    assert list(Workspace(root).cache_dir().glob("eval-reference-*.json"))
    again = evaluate_workspace(root, waves=["1"])
    assert calls == ["1"]  # re-run: from the disk cache
    for a, b in zip(first.outcomes, again.outcomes, strict=True):
        assert a.summary == b.summary  # same figures from the cached reference

    real = root / "Original data" / "wave1.csv"
    df = pd.read_csv(real)
    df.loc[0, "vacc_imp"] = 6 - df.loc[0, "vacc_imp"]
    df.to_csv(real, index=False)
    evaluate_workspace(root, waves=["1"])
    assert calls == ["1", "1"]  # the real data changed: rebuilt


def test_large_waves_use_capped_halves_and_record_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(suite, "REFERENCE_MAX_ROWS", 100)
    root = write_workspace(tmp_path / "ws", n=500)
    write_synthetic(root, "m1", 2, synthetic_like(root, 2, 80, seed=3))
    evaluate_workspace(root, waves=["2"])
    ws = Workspace(root)
    doc = json.loads(ws.eval_metrics_json("m1", "2").read_text())
    sampling = doc["rows"]["reference_sampling"]
    assert sampling == {
        "rows_per_half": 250,
        "rows_used_per_half": 100,
        "cap_per_half": 100,
        "sampled": True,
    }
    # size-matched to the 80 synthetic rows (issue 12 item 10; was the capped half's 100 rows)
    assert doc["candidates"]["_real_holdout"]["rows"] == 80
    assert doc["candidates"]["_baseline_cart"]["rows"] == 80
    # the LLM output is still compared with every real row
    synth = doc["candidates"]["synthetic"]
    assert synth["new_row_share"]["reference_rows"] == 500
    assert synth["dcr_ratio"]["dcr"]["reference_rows"] == 500
    assert synth["dcr_ratio"]["holdout_dcr"]["reference_rows"] == 250  # the whole half B
    assert "random sample of 100 of the 250 rows" in ws.report_html().read_text()


def test_small_waves_use_whole_halves() -> None:
    cols = columns_from_var_types({"a": "an ordinal"}, cluster_column=None)
    real = pd.DataFrame({"a": np.arange(40) % 5 + 1.0})
    ref = suite.build_reference(real, cols, wave="1", seed=1, target=None)
    assert ref.sampling == {
        "rows_per_half": 20,
        "rows_used_per_half": 20,
        "cap_per_half": suite.REFERENCE_MAX_ROWS,
        "sampled": False,
    }
