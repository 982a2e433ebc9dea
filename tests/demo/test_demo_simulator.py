"""The pure simulator: panel properties, exact Bayes posterior, scalability."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from panelsynth.demo import SimulatedPanel, adjusted_rand_index, simulate_panel
from panelsynth.demo.simulator import AGE_MAX, AGE_MIN, OUTCOME, SimulationParams

ITEMS = [
    "vaccimportant",
    "vaccsafe",
    "howoftenvaccine",
    "vacceffective",
    "howlongagovaccine",
    "doctortrust",
    "sideeffectworry",
    "worryflu",
    "likelyflu",
    "vaccconvenient",
]


def test_waves_items_and_columns(demo_panel: SimulatedPanel) -> None:
    assert demo_panel.waves == [str(w) for w in range(1, 8)]
    for w in demo_panel.waves:
        raw = demo_panel.raw[w]
        assert list(raw.columns[:1]) == ["respondent_id"]
        assert "cluster" not in raw.columns and "true_class" not in raw.columns
        assert {"age", "sex"} <= set(raw.columns)
        assert (OUTCOME in raw.columns) == (int(w) >= 3)
        assert len(demo_panel.truth[w]) == len(raw)
        assert (demo_panel.truth[w]["respondent_id"].to_numpy() == raw["respondent_id"]).all()
    # at least 8 items; a couple of waves lack one item, as real panels do
    assert len(demo_panel.items_in_wave("3")) >= 8
    assert "vaccconvenient" not in demo_panel.raw["1"].columns
    assert "likelyflu" not in demo_panel.raw["5"].columns
    assert set(demo_panel.items_in_wave("2")) == set(ITEMS)


def test_codes_are_in_range_and_include_missing_codes(demo_panel: SimulatedPanel) -> None:
    items = {it.name: it for it in demo_panel.params.items}
    counts = {-99: 0, -98: 0}
    for w in demo_panel.waves:
        raw = demo_panel.raw[w]
        for name in demo_panel.items_in_wave(w):
            vals = raw[name].to_numpy()
            answered = vals[vals > 0]
            assert answered.min() >= 1 and answered.max() <= items[name].n_categories
            assert set(np.unique(vals[vals < 0])) <= {-99, -98}
            counts[-99] += int((vals == -99).sum())
            counts[-98] += int((vals == -98).sum())
        assert raw["age"].between(AGE_MIN, AGE_MAX).all()
        assert set(raw["sex"].unique()) == {1, 2}
    assert counts[-99] > 100 and counts[-98] > 100
    assert {it.n_categories for it in demo_panel.params.items} >= {3, 4, 5}


def test_class_shares_plausible(demo_panel: SimulatedPanel) -> None:
    assert 0.51 <= demo_panel.class_shares("1")["1"] <= 0.59
    for w in demo_panel.waves:
        share1 = demo_panel.class_shares(w)["1"]
        assert 0.45 <= share1 <= 0.68, (w, share1)
    # classes change between waves, but most respondents stay
    t = demo_panel.truth["4"]
    seen = t["prev_class"].notna()
    stay = (t.loc[seen, "prev_class"].astype(int) == t.loc[seen, "true_class"]).mean()
    assert 0.80 <= stay <= 0.95


def test_respondents_decrease_across_waves(demo_panel: SimulatedPanel) -> None:
    sizes = [len(demo_panel.raw[w]) for w in demo_panel.waves]
    assert sizes[0] == 2000
    assert all(a > b for a, b in zip(sizes, sizes[1:], strict=False)), sizes
    assert sizes[-1] < 0.75 * sizes[0]


def test_attrition_depends_on_class(demo_panel: SimulatedPanel) -> None:
    first = demo_panel.truth["1"]
    last_ids = set(demo_panel.truth["7"]["respondent_id"])
    kept = first["respondent_id"].isin(last_ids)
    kept_pos = kept[first["true_class"] == 1].mean()
    kept_neg = kept[first["true_class"] == 2].mean()
    assert kept_pos > kept_neg + 0.03


def test_item_nonresponse_is_missing_not_at_random(demo_panel: SimulatedPanel) -> None:
    for w in demo_panel.waves:
        raw = demo_panel.raw[w]
        cls = demo_panel.truth[w]["true_class"].to_numpy()
        na = (raw[demo_panel.items_in_wave(w)] < 0).to_numpy().mean(axis=1)
        na_pos, na_neg = na[cls == 1].mean(), na[cls == 2].mean()
        assert na_neg > 1.5 * na_pos, (w, na_pos, na_neg)


def test_prev_class_links_respondents(demo_panel: SimulatedPanel) -> None:
    assert demo_panel.truth["1"]["prev_class"].isna().all()
    for prev_w, w in itertools.pairwise(demo_panel.waves):
        before = demo_panel.truth[prev_w].set_index("respondent_id")["true_class"]
        now = demo_panel.truth[w]
        in_prev = now["respondent_id"].isin(before.index).to_numpy()
        assert (now["prev_class"].notna().to_numpy() == in_prev).all()
        expected = before.loc[now.loc[in_prev, "respondent_id"]].to_numpy()
        assert (now.loc[in_prev, "prev_class"].astype(int).to_numpy() == expected).all()
    # intermittent non-response: someone skips a wave and comes back
    assert demo_panel.truth["5"]["prev_class"].isna().any()


def test_items_separate_the_classes_unequally(demo_panel: SimulatedPanel) -> None:
    raw, t = demo_panel.raw["2"], demo_panel.truth["2"]

    def gap(item: str) -> float:
        v = raw[item].where(raw[item] > 0)
        return abs(v[t["true_class"] == 1].mean() - v[t["true_class"] == 2].mean())

    assert gap("vaccimportant") > 1.0
    assert gap("likelyflu") < 0.4
    assert demo_panel.top_items("2") == ["vaccimportant", "vaccsafe", "howoftenvaccine"]
    out = demo_panel.raw["4"][OUTCOME].where(demo_panel.raw["4"][OUTCOME] >= 0)
    cls = demo_panel.truth["4"]["true_class"]
    assert out[cls == 1].mean() > out[cls == 2].mean() + 0.25
    age, cls1 = demo_panel.raw["1"]["age"], demo_panel.truth["1"]["true_class"]
    assert 2 < age[cls1 == 1].mean() - age[cls1 == 2].mean() < 12  # mildly class-dependent


@pytest.mark.parametrize("seed", [2024, 1, 7, 42])
def test_bayes_accuracy_in_band_every_wave(seed: int) -> None:
    panel = simulate_panel(2000, seed=seed)
    for w in panel.waves:
        assert 0.80 <= panel.bayes_accuracy[w] <= 0.95, (seed, w, panel.bayes_accuracy[w])
        assert 0.3 < panel.bayes_ari[w] < 0.9
        truth = panel.truth[w]
        acc = float((truth["bayes_class"] == truth["true_class"]).mean())
        assert acc == pytest.approx(panel.bayes_accuracy[w])


def test_posterior_is_calibrated() -> None:
    """The posterior is exact: the accuracy it predicts equals the accuracy achieved."""
    panel = simulate_panel(60_000, seed=3)
    for w in panel.waves:
        assert panel.bayes_accuracy[w] == pytest.approx(panel.bayes_expected_accuracy[w], abs=0.006)
        post = panel.truth[w]["posterior_class1"].to_numpy()
        cls = panel.truth[w]["true_class"].to_numpy()
        confident = post > 0.9
        assert (cls[confident] == 1).mean() > 0.9


def _brute_force_posterior(panel: SimulatedPanel, wave: int, row: pd.Series) -> float:
    """Posterior of class 1 by enumerating class paths (independent of the simulator's code)."""
    p: SimulationParams = panel.params
    joint = np.zeros((2, 2))  # (class in wave 1, class in this wave), given participation
    for path in itertools.product((0, 1), repeat=wave):
        prob = p.initial_class_probs[path[0]]
        for a, b in itertools.pairwise(path):
            prob *= (1 - p.dropout[a]) * p.transition[a][b]
        if wave > 1:
            prob *= 1 - p.wave_skip[path[-1]]
        joint[path[0], path[-1]] += prob
    offset = (wave - 1) // 2

    def age1_pmf(b: int, c1: int) -> float:
        mu, sd = p.age_mean[c1], p.age_sd
        hi = 1.0 if b == AGE_MAX else norm.cdf((b + 0.5 - mu) / sd)
        lo = 0.0 if b == AGE_MIN else norm.cdf((b - 0.5 - mu) / sd)
        return hi - lo if AGE_MIN <= b <= AGE_MAX else 0.0

    def age_pmf(a: int, c1: int) -> float:
        if a == AGE_MAX:
            return sum(age1_pmf(b, c1) for b in range(AGE_MAX - offset, AGE_MAX + 1))
        return age1_pmf(a - offset, c1)

    logs = []
    for c in (0, 1):
        lp = math.log(joint[:, c].sum())
        lp += math.log(
            sum(joint[c1, c] / joint[:, c].sum() * age_pmf(row["age"], c1) for c1 in (0, 1))
        )
        for it in p.items_in_wave(wave):
            v = int(row[it.name])
            lp += math.log(it.missing[c] if v < 0 else (1 - it.missing[c]) * it.pmf()[c, v - 1])
        if wave >= p.outcome_from_wave:
            v = int(row[OUTCOME])
            m, y = p.outcome_missing[c], p.outcome_yes[c]
            lp += math.log(m if v < 0 else (1 - m) * (y if v == 1 else 1 - y))
        logs.append(lp)
    return 1.0 / (1.0 + math.exp(logs[1] - logs[0]))


@pytest.mark.parametrize("wave", [1, 4, 7])
def test_posterior_matches_brute_force(demo_panel: SimulatedPanel, wave: int) -> None:
    raw = demo_panel.raw[str(wave)]
    post = demo_panel.truth[str(wave)]["posterior_class1"]
    rows = list(range(0, len(raw), 97))[:15]
    # include a top-coded age and a row with missing answers when there is one
    rows += list(np.flatnonzero(raw["age"].to_numpy() == AGE_MAX)[:1])
    rows += list(np.flatnonzero((raw.to_numpy() < 0).any(axis=1))[:2])
    for i in rows:
        expected = _brute_force_posterior(demo_panel, wave, raw.iloc[i])
        assert post.iloc[i] == pytest.approx(expected, abs=1e-9)


def test_sampled_answers_follow_the_true_distribution() -> None:
    panel = simulate_panel(40_000, n_waves=1, seed=11)
    raw, cls = panel.raw["1"], panel.truth["1"]["true_class"].to_numpy()
    spec = panel.params.items[0]
    for c in (1, 2):
        v = raw[spec.name].to_numpy()[cls == c]
        answered = v[v > 0]
        freq = np.bincount(answered, minlength=spec.n_categories + 1)[1:] / answered.size
        assert np.abs(freq - spec.pmf()[c - 1]).max() < 0.015
        assert (v < 0).mean() == pytest.approx(spec.missing[c - 1], abs=0.006)


def test_adjusted_rand_index_matches_reference() -> None:
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(0)
    a = rng.integers(1, 3, 500)
    b = np.where(rng.random(500) < 0.85, a, 3 - a)
    assert adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert adjusted_rand_index(a, 3 - a) == pytest.approx(1.0)


def test_same_seed_same_panel_different_seed_different() -> None:
    a, b, c = (simulate_panel(300, seed=s) for s in (5, 5, 6))
    for w in a.waves:
        pd.testing.assert_frame_equal(a.raw[w], b.raw[w])
        pd.testing.assert_frame_equal(a.truth[w], b.truth[w])
    assert not a.raw["1"].equals(c.raw["1"])


def test_scales_to_a_large_panel() -> None:
    panel = simulate_panel(100_000, 14, 30, seed=1)
    assert panel.waves[-1] == "14"
    assert panel.raw["1"].shape == (100_000, 1 + 29 + 2)  # vaccconvenient is not asked in wave 1
    assert panel.raw["2"].shape[1] == 1 + 30 + 2
    assert panel.raw["14"].shape[1] == 1 + 30 + 2 + 1
    assert len(panel.raw["14"]) < len(panel.raw["2"]) < 100_000
    assert len(panel.truth["14"]) == len(panel.raw["14"])
    assert [it.name for it in panel.params.items[:10]] == ITEMS


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_items"):
        simulate_panel(100, n_items=0)
    with pytest.raises(ValueError, match="n_respondents"):
        simulate_panel(1)
