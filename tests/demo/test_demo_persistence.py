"""Persistence within a person (issue 19): person effect + AR(1) answers, stable identity items."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import spearmanr

from panelsynth.demo import SimulatedPanel, simulate_panel
from panelsynth.demo.persistence import (
    IDENTITY_ITEMS,
    Persistence,
    pair_table,
    wave_pair_stability,
)
from panelsynth.demo.simulator import SimulationParams, make_items


def _linked(panel: SimulatedPanel, a: str, b: str, item: str) -> tuple[np.ndarray, ...]:
    """Answers of ``item`` in waves a and b and the class path, over respondents who answered in
    both."""
    ra, rb = panel.raw[a].set_index("respondent_id"), panel.raw[b].set_index("respondent_id")
    ta = panel.truth[a].set_index("respondent_id")["true_class"]
    tb = panel.truth[b].set_index("respondent_id")["true_class"]
    ids = ra.index.intersection(rb.index)
    x, y = ra.loc[ids, item].to_numpy(), rb.loc[ids, item].to_numpy()
    ok = (x > 0) & (y > 0)
    path = ta.loc[ids].to_numpy() * 10 + tb.loc[ids].to_numpy()
    return x[ok], y[ok], path[ok]


def _pairs(panel: SimulatedPanel):
    for a, b in itertools.pairwise(panel.waves):
        for item in panel.items_in_wave(a):
            if item in panel.items_in_wave(b):
                yield a, b, item


def test_attitude_items_correlate_with_themselves_across_consecutive_waves(
    demo_panel: SimulatedPanel,
) -> None:
    seen = 0
    for a, b, item in _pairs(demo_panel):
        if item in IDENTITY_ITEMS:
            continue
        x, y, _ = _linked(demo_panel, a, b, item)
        rho = spearmanr(x, y).statistic
        assert 0.4 <= rho <= 0.7, (a, b, item, rho)
        seen += 1
    assert seen >= 6 * 7  # every consecutive pair of the 7 waves, 7-8 attitude items each


def test_identity_items_mostly_keep_their_answer(demo_panel: SimulatedPanel) -> None:
    for a, b, item in _pairs(demo_panel):
        if item not in IDENTITY_ITEMS:
            continue
        x, y, _ = _linked(demo_panel, a, b, item)
        assert 0.75 <= float(np.mean(x == y)) <= 0.90, (a, b, item)


def test_bayes_accuracy_band_holds_in_every_wave(demo_panel: SimulatedPanel) -> None:
    for w in demo_panel.waves:
        assert 0.80 <= demo_panel.bayes_accuracy[w] <= 0.95, (w, demo_panel.bayes_accuracy[w])


def test_random_pairing_within_the_class_path_loses_the_stability(
    demo_panel: SimulatedPanel,
) -> None:
    """The unlinked baseline: wave-b answers of another respondent with the same class path."""
    rng = np.random.default_rng(0)
    err_same, err_rho = [], []
    for a, b, item in _pairs(demo_panel):
        x, y, path = _linked(demo_panel, a, b, item)
        y_paired = y.copy()
        for p in np.unique(path):
            idx = np.flatnonzero(path == p)
            y_paired[idx] = y[rng.permutation(idx)]
        err_same.append(abs(np.mean(x == y) - np.mean(x == y_paired)))
        err_rho.append(abs(spearmanr(x, y).statistic - spearmanr(x, y_paired).statistic))
    assert np.mean(err_rho) >= 0.1
    assert np.mean(err_same) >= 0.1


def test_answers_keep_their_class_conditional_distribution_in_later_waves() -> None:
    panel = simulate_panel(40_000, n_waves=3, seed=11)
    specs = {it.name: it for it in panel.params.items}
    raw, cls = panel.raw["3"], panel.truth["3"]["true_class"].to_numpy()
    for name in ("vaccimportant", "howoftenvaccine", "worryflu"):
        v = raw[name].to_numpy()
        for c in (1, 2):
            answered = v[(cls == c) & (v > 0)]
            freq = np.bincount(answered, minlength=specs[name].n_categories + 1)[1:]
            assert np.abs(freq / answered.size - specs[name].pmf()[c - 1]).max() < 0.015, name


def test_pair_table_is_the_joint_distribution_of_two_waves() -> None:
    panel = simulate_panel(60_000, n_waves=3, seed=5)
    pers = panel.params.persistence
    specs = {it.name: it for it in panel.params.items}
    for name, (a, b) in (("vaccsafe", ("1", "2")), ("howoftenvaccine", ("1", "3"))):
        x, y, path = _linked(panel, a, b, name)
        table = pair_table(specs[name].pmf(), pers.latent_corr(name, int(b) - int(a)))
        np.testing.assert_allclose(table.sum(axis=3), np.repeat(specs[name].pmf()[:, None], 2, 1))
        k = specs[name].n_categories
        for ca, cb in ((1, 1), (2, 2)):
            sel = path == ca * 10 + cb
            freq = np.bincount((x[sel] - 1) * k + y[sel] - 1, minlength=k * k).reshape(k, k)
            assert np.abs(freq / sel.sum() - table[ca - 1, cb - 1]).max() < 0.012, (name, ca)


def test_persistence_changes_the_answers_only() -> None:
    """Classes, participation and missingness come from the same draws with or without it."""
    none = SimulationParams(items=make_items(10), persistence=Persistence(0.0, 0.0, (), 0.0, 0.0))
    a, b = simulate_panel(3000, seed=9), simulate_panel(3000, seed=9, params=none)
    for w in a.waves:
        assert a.truth[w]["true_class"].equals(b.truth[w]["true_class"])
        assert ((a.raw[w] < 0) == (b.raw[w] < 0)).all().all()
    x, y, _ = _linked(b, "1", "2", "likelyflu")
    assert abs(spearmanr(x, y).statistic) < 0.1  # weak item: nothing but the class links waves
    x, y, _ = _linked(a, "1", "2", "likelyflu")
    assert spearmanr(x, y).statistic > 0.4


def test_stability_in_the_ground_truth(demo_result) -> None:
    import json

    gt = json.loads(
        (demo_result.workspace.ground_truth_dir() / "ground_truth.json").read_text("utf-8")
    )
    assert gt["parameters"]["persistence"]["identity_items"] == list(IDENTITY_ITEMS)
    stab = gt["waves"]["2"]["stability_vs_previous_wave"]
    panel = demo_result.panel
    assert set(stab) == set(panel.items_in_wave("1")) & set(panel.items_in_wave("2"))
    x, y, _ = _linked(panel, "1", "2", "vaccsafe")
    assert stab["vaccsafe"]["n"] == x.size
    assert stab["vaccsafe"]["spearman"] == pytest.approx(spearmanr(x, y).statistic, abs=1e-6)
    assert stab["vaccsafe"]["unchanged"] == pytest.approx(np.mean(x == y), abs=1e-6)
    again = wave_pair_stability(panel.raw["1"], panel.raw["2"], ["vaccsafe"], "respondent_id")
    assert again["vaccsafe"] == stab["vaccsafe"]


def test_bad_persistence_is_refused() -> None:
    with pytest.raises(ValueError, match="ar must be in"):
        Persistence(ar=1.0)
