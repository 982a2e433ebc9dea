"""Variance collapse (issue 16): answers per item and cluster, real vs synthetic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from evalhelpers import eval_columns, harmonised_wave

from panelsynth.evaluate.collapse import VarianceCollapse, entropy_and_mode
from panelsynth.evaluate.suite import split_halves


def _modal(real: pd.DataFrame, cols) -> pd.DataFrame:
    """Every item answered with its modal value (the cluster labels kept)."""
    out = real.copy()
    for name in cols.variables:
        out[name] = real[name].mode().iloc[0]
    return out


def test_a_set_that_answers_every_item_with_its_mode_is_100_percent_collapsed() -> None:
    real, cols = harmonised_wave(800, seed=0), eval_columns()
    res = VarianceCollapse(cols).compute(real, _modal(real, cols))
    assert res.extra["collapsed_share"] == pytest.approx(1.0)
    assert res.score == pytest.approx(0.0)
    assert sorted(res.extra["collapsed_items"]) == sorted(cols.variables)
    assert all(v == pytest.approx(1.0) for v in res.extra["per_cluster_collapsed_share"].values())
    assert res.extra["mean_modal_share_candidate"] == pytest.approx(1.0)
    d = res.details
    assert set(d["cluster"]) == {"all", "1", "2"}
    assert (d["entropy_candidate"] == 0).all() and (d["modal_share_candidate"] == 1).all()


def test_a_real_half_is_0_percent_collapsed() -> None:
    real, cols = harmonised_wave(1600, seed=1), eval_columns()
    a, b = split_halves(real, cols, np.random.default_rng(0))
    res = VarianceCollapse(cols).compute(b, a)
    assert res.extra["collapsed_share"] == 0.0 and res.score == 1.0
    assert all(v == 0.0 for v in res.extra["per_cluster_collapsed_share"].values())
    overall = res.details[res.details["cluster"] == "all"]
    assert (abs(overall["modal_share_real"] - overall["modal_share_candidate"]) < 0.1).all()


def test_half_the_items_collapsed_is_50_percent_and_constant_real_items_are_left_out() -> None:
    real, cols = harmonised_wave(800, seed=2), eval_columns()
    items = cols.variables
    syn = real.copy()
    for name in items[:2]:
        syn[name] = real[name].mode().iloc[0]
    res = VarianceCollapse(cols).compute(real, syn)
    assert res.extra["collapsed_share"] == pytest.approx(2 / len(items))
    const = real.assign(sex=1.0)
    res2 = VarianceCollapse(cols).compute(const, const.assign(sex=2.0))
    assert res2.extra["items_scored"] == len(items) - 1  # sex has no variance to lose


def test_entropy_and_modal_share() -> None:
    h, m, n = entropy_and_mode(np.array([0, 1, 0, 1]), 2)
    assert (h, m, n) == (pytest.approx(1.0), 0.5, 4)
    assert np.isnan(entropy_and_mode(np.array([], dtype=int), 3)[0])
