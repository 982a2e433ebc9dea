"""Membership inference against few-shot rows (issue 16): copies leak, independent draws do not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from panelsynth.demo.build import original_frame, var_types_for
from panelsynth.demo.simulator import simulate_panel
from panelsynth.evaluate.columns import columns_from_var_types, harmonise
from panelsynth.evaluate.membership import attack, roc_figures


@pytest.fixture(scope="module")
def population() -> tuple:
    """Wave 1 of two independent simulator draws (every item, age, sex), harmonised."""
    a = simulate_panel(3000, n_waves=1, seed=1)
    b = simulate_panel(3000, n_waves=1, seed=2)
    types = var_types_for(a, "1", a.items_in_wave("1"))
    cols = columns_from_var_types(types, cluster_column="cluster")
    frames = {
        k: original_frame(p, "1")[cols.names].astype("float64") for k, p in (("a", a), ("b", b))
    }
    h = harmonise(frames, cols)
    return cols, h["a"], h["b"]


def test_copying_the_few_shot_examples_is_caught_at_low_false_positive_rate(population) -> None:
    cols, real, _ = population
    members = real.iloc[:300]  # the respondents pasted into prompts
    non_members = real.iloc[1000:]  # held-out respondents
    # copies its examples (each at least once), shuffled
    synthetic = pd.concat([members, members.sample(200, random_state=0)]).sample(
        frac=1.0, random_state=1
    )
    fig = attack(cols, synthetic, members, non_members)
    assert fig["tpr_at_1pct_fpr"] > 0.95
    assert fig["tpr_at_10pct_fpr"] > 0.95
    assert fig["auc"] > 0.95


def test_an_independent_draw_from_the_simulator_is_at_chance(population) -> None:
    cols, real, other = population
    members, non_members = real.iloc[:1000], real.iloc[1000:]
    fig = attack(cols, other.iloc[:1000], members, non_members)
    assert fig["tpr_at_1pct_fpr"] == pytest.approx(0.01, abs=0.02)
    assert fig["tpr_at_10pct_fpr"] == pytest.approx(0.10, abs=0.05)
    assert fig["auc"] == pytest.approx(0.5, abs=0.05)
    assert fig["members_scored"] == 1000 and fig["non_members_scored"] == 2000


def test_ties_count_as_a_randomised_threshold() -> None:
    # every distance equal: the attack cannot tell anyone apart, TPR = FPR at every point
    fig = roc_figures(np.zeros(50), np.zeros(80))
    assert fig["auc"] == pytest.approx(0.5)
    assert fig["tpr_at_1pct_fpr"] == pytest.approx(0.01)
    assert fig["tpr_at_10pct_fpr"] == pytest.approx(0.10)


def test_no_members_gives_a_reason_not_a_crash(population) -> None:
    cols, real, other = population
    fig = attack(cols, other.iloc[:10], real.iloc[:0], real.iloc[:10])
    assert fig["error"] == "no member rows" and np.isnan(fig["auc"])
    assert isinstance(pd.Series(fig).to_dict(), dict)
