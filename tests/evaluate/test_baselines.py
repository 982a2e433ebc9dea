"""The statistical baselines keep what they promise and nothing more."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from evalhelpers import simulate_wave

from panelsynth.evaluate.baselines import cart_baseline, marginal_baseline
from panelsynth.evaluate.columns import columns_from_var_types, harmonise
from panelsynth.evaluate.metrics import AssociationSimilarity, ColumnShapes, NAShareSimilarity

TYPES = {
    "vacc_imp": "an ordinal",
    "vacc_safe": "an ordinal",
    "age": "a continuous",
    "sex": "a binary",
}
COLS = columns_from_var_types(TYPES, prev_cluster_column="prev_cluster")


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    df = simulate_wave(2000, np.random.default_rng(0), wave=2, na_rate=0.15)
    df = df.replace(-99, np.nan)[COLS.names]
    return harmonise({"x": df}, COLS)["x"]


def test_marginal_baseline_keeps_per_cluster_marginals_and_na(train: pd.DataFrame) -> None:
    out = marginal_baseline(train, COLS, 4000, np.random.default_rng(1))
    assert list(out.columns) == COLS.names and len(out) == 4000
    for c in (1.0, 2.0):
        r, s = train[train.cluster == c], out[out.cluster == c]
        assert abs(r.vacc_safe.isna().mean() - s.vacc_safe.isna().mean()) < 0.03
        assert abs(r.vacc_imp.mean() - s.vacc_imp.mean()) < 0.1
    assert ColumnShapes(COLS).compute(train, out).score > 0.95
    assert NAShareSimilarity(COLS).compute(train, out).score > 0.98


def test_marginal_baseline_breaks_within_cluster_association(train: pd.DataFrame) -> None:
    out = marginal_baseline(train, COLS, 4000, np.random.default_rng(1))
    c1r, c1s = train[train.cluster == 1], out[out.cluster == 1]
    r_corr = c1r[["vacc_imp", "vacc_safe"]].dropna().corr().iloc[0, 1]
    s_corr = c1s[["vacc_imp", "vacc_safe"]].dropna().corr().iloc[0, 1]
    assert r_corr > 0.3 and abs(s_corr) < 0.1


def test_cart_baseline_keeps_associations_better_than_marginals(train: pd.DataFrame) -> None:
    rng = np.random.default_rng(2)
    cart = cart_baseline(train, COLS, 2000, rng)
    marg = marginal_baseline(train, COLS, 2000, rng)
    inner = COLS.without(["cluster"])
    c1 = train[train.cluster == 1]
    a_cart = AssociationSimilarity(inner).compute(c1, cart[cart.cluster == 1]).score
    a_marg = AssociationSimilarity(inner).compute(c1, marg[marg.cluster == 1]).score
    assert a_cart > a_marg
    # donors come from the training rows: every value exists in the training data, NA included
    assert set(cart.vacc_imp.dropna().unique()) <= set(train.vacc_imp.dropna().unique())
    assert 0.02 < cart.vacc_safe.isna().mean() < 0.3
