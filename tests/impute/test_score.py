from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from imputehelpers import hand_panel
from scipy import stats

from panelsynth.impute.completed import CompletedSet
from panelsynth.impute.mask import mask_panel
from panelsynth.impute.score import pool_coverage, rubin, score_imputations


def test_rubin_rules_match_a_hand_computed_example() -> None:
    # Q = 1.0, 1.2, 0.9; U = 0.04, 0.05, 0.06; nu_com = 50
    # Qbar = 1.033333; Ubar = 0.05; B = (0.001111 + 0.027778 + 0.017778) / 2 = 0.023333
    # T = 0.05 + (4/3) 0.023333 = 0.081111; lambda = 0.031111 / 0.081111 = 0.383562
    # nu_old = 2 / 0.383562^2 = 13.5942; nu_obs = 51/53 * 50 * 0.616438 = 29.6588
    # nu = 1 / (1/13.5942 + 1/29.6588) = 9.3216
    r = rubin(np.array([1.0, 1.2, 0.9]), np.array([0.04, 0.05, 0.06]), 50)
    assert r.qbar == pytest.approx(1.033333, abs=1e-6)
    assert r.ubar == pytest.approx(0.05)
    assert r.between == pytest.approx(0.023333, abs=1e-6)
    assert r.total == pytest.approx(0.081111, abs=1e-6)
    assert r.fmi == pytest.approx(0.383562, abs=1e-6)
    assert r.df == pytest.approx(9.3216, abs=1e-3)
    half = stats.t.ppf(0.975, 9.3216) * math.sqrt(0.081111)
    assert r.lower == pytest.approx(1.033333 - half, abs=1e-4)
    assert r.upper == pytest.approx(1.033333 + half, abs=1e-4)
    with pytest.raises(ValueError):
        rubin(np.array([1.0]), np.array([0.1]), 10)


def _truth_sets(masked, m: int, wrong: bool) -> list[CompletedSet]:
    t = masked.truth
    sets = []
    for k in range(1, m + 1):
        vals = t["value"].to_numpy(dtype=float)
        if wrong:
            vals = np.where(vals == 1, 4.0, 1.0)
        elif k > 1:  # a little noise between the sets
            vals = vals.copy()
            vals[k::5] = np.clip(vals[k::5] + 1, 1, 4)
        cells = t[["wave", "respondent_id", "variable"]].assign(value=vals)
        sets.append(CompletedSet(k, cells, {}))
    return sets


def test_scores_tell_a_perfect_imputation_from_a_wrong_one() -> None:
    panel = hand_panel(n=200)
    masked = mask_panel(panel, cell_share=0.2, wave_share=0.0, seed=1)
    exact = score_imputations(panel, masked.panel, masked.truth, _truth_sets(masked, 1, False))
    assert exact["summary"]["all"]["accuracy"] == 1.0
    assert exact["summary"]["all"]["mae"] == 0.0
    assert exact["summary"]["all"]["tvd"] == 0.0
    assert exact["summary"]["all"]["corr_diff"] == pytest.approx(0.0, abs=1e-12)
    assert exact["summary"]["all"]["coverage"] is None  # m = 1
    # a model writes the code 3 as 3, the data hold 3.0: the same answer for every metric
    as_ints = _truth_sets(masked, 1, False)
    as_ints[0].cells["value"] = [int(v) for v in as_ints[0].cells["value"]]
    ints = score_imputations(panel, masked.panel, masked.truth, as_ints)
    assert ints["summary"]["all"]["tvd"] == 0.0 and ints["summary"]["all"]["accuracy"] == 1.0
    assert {"path": "variables.a.coverage", "reason": "needs m >= 2 imputations"} in exact[
        "nan_explanations"
    ]
    wrong = score_imputations(panel, masked.panel, masked.truth, _truth_sets(masked, 3, True))
    near = score_imputations(panel, masked.panel, masked.truth, _truth_sets(masked, 3, False))
    assert wrong["summary"]["all"]["accuracy"] < 0.5 < near["summary"]["all"]["accuracy"]
    assert wrong["summary"]["all"]["mae"] > near["summary"]["all"]["mae"]
    assert wrong["summary"]["all"]["tvd"] > near["summary"]["all"]["tvd"]
    assert wrong["summary"]["all"]["corr_diff"] > near["summary"]["all"]["corr_diff"]
    assert pool_coverage([wrong]) < pool_coverage([near])
    # identical sets (B = 0) cannot cover a mean they miss by their own uncertainty
    assert pool_coverage([wrong], "covered_between") == 0.0
    assert wrong["summary"]["all"]["coverage_between"] == 0.0
    json.dumps(near, allow_nan=False)  # JSON-ready, no NaN left


def test_missing_imputations_are_an_error() -> None:
    panel = hand_panel(n=50)
    masked = mask_panel(panel, cell_share=0.2, wave_share=0.0, seed=1)
    sets = _truth_sets(masked, 1, False)
    sets[0].cells = sets[0].cells.iloc[1:]
    with pytest.raises(ValueError, match="left 1 hidden cells empty"):
        score_imputations(panel, masked.panel, masked.truth, sets)
    assert isinstance(masked.truth, pd.DataFrame)
