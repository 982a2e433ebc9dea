"""Metric sanity: each test states a property the metric must have and can fail."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from evalhelpers import VAR_TYPES_W2, eval_columns, harmonised_wave

from panelsynth.evaluate.columns import columns_from_var_types, harmonise
from panelsynth.evaluate.metrics import (
    AssociationSimilarity,
    ClusterShares,
    ColumnShapes,
    DCRRatio,
    GradientBoostingC2ST,
    NAShareSimilarity,
    NewRowShare,
    PairTrends,
    TrainSyntheticTestReal,
    TransitionSimilarity,
    UniqueRowShare,
    safe_compute,
)
from panelsynth.evaluate.sdm import LogisticDetectionC2ST, SDMetricsQuality

COLS = eval_columns()


def _frames(n: int = 800, seed: int = 0, na_rate: float = 0.1) -> pd.DataFrame:
    return harmonised_wave(n, seed, na_rate)


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    return _frames(800, seed=0)


@pytest.fixture(scope="module")
def other(real: pd.DataFrame) -> pd.DataFrame:
    """A second independent sample of the same population."""
    return _frames(800, seed=1)


@pytest.fixture(scope="module")
def shuffled(real: pd.DataFrame) -> pd.DataFrame:
    """Every column permuted independently: marginals kept, associations destroyed."""
    rng = np.random.default_rng(5)
    return pd.DataFrame({c: real[c].to_numpy()[rng.permutation(len(real))] for c in real.columns})


def test_real_vs_itself_scores_one_on_shapes_and_trends(real: pd.DataFrame) -> None:
    q = SDMetricsQuality(COLS).compute(real, real.copy())
    assert q.extra["column_shapes"] == pytest.approx(1.0)
    assert q.extra["column_pair_trends"] == pytest.approx(1.0)
    assert q.score == pytest.approx(1.0)
    assert ColumnShapes(COLS).compute(real, real).score == pytest.approx(1.0)
    assert PairTrends(COLS).compute(real, real).score == pytest.approx(1.0)
    assert AssociationSimilarity(COLS).compute(real, real).score == pytest.approx(1.0)


def test_shuffled_columns_score_lower_on_trends_than_real(
    real: pd.DataFrame, other: pd.DataFrame, shuffled: pd.DataFrame
) -> None:
    q_other = SDMetricsQuality(COLS).compute(real, other)
    q_shuf = SDMetricsQuality(COLS).compute(real, shuffled)
    # marginals are untouched by shuffling ...
    assert q_shuf.extra["column_shapes"] == pytest.approx(1.0)
    # ... but the pair trends fall below those of a second real sample
    assert q_shuf.extra["column_pair_trends"] < q_other.extra["column_pair_trends"] - 0.02
    assert (
        PairTrends(COLS).compute(real, shuffled).score < PairTrends(COLS).compute(real, other).score
    )
    assert (
        AssociationSimilarity(COLS).compute(real, shuffled).score
        < AssociationSimilarity(COLS).compute(real, other).score - 0.05
    )
    # and a non-linear C2ST sees the broken joint structure
    gb_shuf = GradientBoostingC2ST(COLS).compute(real, shuffled).score
    gb_other = GradientBoostingC2ST(COLS).compute(real, other).score
    assert gb_shuf < gb_other - 0.1


def test_own_column_shapes_equal_sdmetrics(real: pd.DataFrame, other: pd.DataFrame) -> None:
    q = SDMetricsQuality(COLS).compute(real, other)
    ours = ColumnShapes(COLS).compute(real, other)
    sd = {d["Column"]: d["Score"] for d in q.extra["column_shapes_details"]}
    mine = dict(zip(ours.details["column"], ours.details["score"], strict=True))
    assert sd.keys() == mine.keys()
    for k in sd:
        assert mine[k] == pytest.approx(sd[k], abs=1e-6), k


def test_unthresholded_trends_equal_sdmetrics_pair_scores_for_discrete_pairs(
    real: pd.DataFrame, other: pd.DataFrame
) -> None:
    q = SDMetricsQuality(COLS).compute(real, other)
    ours = PairTrends(COLS).compute(real, other).details
    sd = q.details.dropna(subset=["Score"])
    assert len(sd) > 0
    discrete = {c.name for c in COLS if c.discrete}
    checked = 0
    for _, row in sd.iterrows():
        a, b = row["Column 1"], row["Column 2"]
        if a in discrete and b in discrete:
            mine = ours[(ours.column_1 == a) & (ours.column_2 == b)]["score"].item()
            assert mine == pytest.approx(row["Score"], abs=1e-9), (a, b)
            checked += 1
    assert checked >= 3


def test_sdmetrics_nan_pairs_are_counted_and_explained(
    real: pd.DataFrame, other: pd.DataFrame
) -> None:
    q = SDMetricsQuality(COLS).compute(real, other)
    n = len(COLS)
    assert q.extra["n_pairs"] == n * (n - 1) // 2
    below = q.extra["n_pairs_nan_below_threshold"]
    assert below > 0  # sex is unrelated to everything: its pairs fall below the threshold
    assert q.extra["n_pairs_scored"] + below + q.extra["n_pairs_error"] == q.extra["n_pairs"]
    assert "threshold" in q.extra["pair_nan_reason"]
    assert any({"sex"} & {p["Column 1"], p["Column 2"]} for p in q.extra["nan_pairs"])


def test_sdmetrics_trend_nan_when_no_pair_is_associated_but_unthresholded_exists() -> None:
    rng = np.random.default_rng(3)
    cols = columns_from_var_types({"a": "an ordinal", "b": "an ordinal"}, cluster_column=None)
    r = pd.DataFrame(
        {"a": rng.integers(1, 6, 500).astype(float), "b": rng.integers(1, 6, 500).astype(float)}
    )
    s = pd.DataFrame(
        {"a": rng.integers(1, 6, 300).astype(float), "b": rng.integers(1, 6, 300).astype(float)}
    )
    q = SDMetricsQuality(cols).compute(r, s)
    assert math.isnan(q.extra["column_pair_trends"])
    assert "Column Pair Trends is NaN" in q.error
    assert q.score == pytest.approx(q.extra["column_shapes"])  # overall = shapes only
    assert "overall_note" in q.extra
    assert 0.5 < PairTrends(cols).compute(r, s).score < 1.0


def test_exact_copies_of_real_rows_have_copy_share_one(real: pd.DataFrame) -> None:
    copies = real.sample(200, random_state=0).reset_index(drop=True)
    r = NewRowShare(COLS).compute(real, copies)
    assert r.extra["copy_share"] == pytest.approx(1.0)
    assert r.score == pytest.approx(0.0)
    # an independent sample of a continuous-age population is mostly new
    fresh = _frames(200, seed=9)
    fresh["age"] = fresh["age"] + 0.5  # no real respondent has a half year of age
    assert NewRowShare(COLS).compute(real, fresh).extra["copy_share"] == 0.0


def test_rows_made_of_the_examples_have_example_copy_share_one(real: pd.DataFrame) -> None:
    examples = real.groupby("cluster").head(4)
    synthetic = examples.sample(60, replace=True, random_state=1)
    r = NewRowShare(COLS).compute(examples, synthetic)
    assert r.extra["copy_share"] == pytest.approx(1.0)
    mixed = pd.concat([synthetic.head(30), _frames(30, seed=4).assign(age=lambda d: d.age + 0.5)])
    assert NewRowShare(COLS).compute(examples, mixed).extra["copy_share"] == pytest.approx(0.5)


def test_duplicate_share(real: pd.DataFrame) -> None:
    rows = real.head(50)
    doubled = pd.concat([rows, rows, rows])
    r = UniqueRowShare(COLS).compute(real, doubled)
    assert r.extra["duplicate_share"] == pytest.approx(2 / 3)
    assert r.score == pytest.approx(1 / 3)


def test_dcr_of_copies_is_zero_and_ratio_low(real: pd.DataFrame, other: pd.DataFrame) -> None:
    metric = DCRRatio(COLS)
    holdout = metric.distances(real, other)
    assert holdout["mean"] > 0
    copies = real.sample(300, random_state=2)
    r = DCRRatio(COLS, holdout).compute(real, copies)
    assert r.extra["dcr"]["zero_share"] == pytest.approx(1.0)
    assert r.score == pytest.approx(0.0)
    assert DCRRatio(COLS, holdout).compute(real, other).score == pytest.approx(1.0)


def test_na_share_similarity_sees_missing_answers(real: pd.DataFrame) -> None:
    no_na = real.copy()
    no_na["vacc_safe"] = no_na["vacc_safe"].fillna(3.0)
    r = NAShareSimilarity(COLS).compute(real, no_na)
    real_na = real["vacc_safe"].isna().mean()
    assert real_na > 0.05
    assert r.extra["mean_abs_diff"] == pytest.approx(real_na / len(COLS.variables))
    assert set(r.extra["per_cluster"]) == {"1", "2"}
    # NA depends on the cluster in the simulator: cluster 2 misses more
    assert (
        r.extra["per_cluster"]["2"]["mean_abs_diff"] > r.extra["per_cluster"]["1"]["mean_abs_diff"]
    )
    assert NAShareSimilarity(COLS).compute(real, real).score == pytest.approx(1.0)


def test_cluster_shares_and_transitions(real: pd.DataFrame) -> None:
    flipped = real.copy()
    flipped["cluster"] = 3 - flipped["cluster"]
    assert ClusterShares(COLS).compute(real, real).score == pytest.approx(1.0)
    p1 = (real["cluster"] == 1).mean()
    assert ClusterShares(COLS).compute(real, flipped).score == pytest.approx(1 - abs(2 * p1 - 1))
    assert ClusterShares(COLS).compute(real, real.assign(cluster=1.0)).score == pytest.approx(p1)
    t = TransitionSimilarity(COLS).compute(real, flipped)
    assert t.score < 0.5  # stayers became movers
    d = t.details.set_index(["prev_cluster", "cluster"])
    assert d.loc[("1", "1"), "real_transition_prob"] > 0.7
    first_wave = columns_from_var_types(VAR_TYPES_W2)
    assert "first wave" in TransitionSimilarity(first_wave).compute(real, real).error


def test_logistic_c2st_and_gradient_boosting_on_identical_and_separable(real: pd.DataFrame) -> None:
    assert LogisticDetectionC2ST(COLS).compute(real, real.copy()).score > 0.9
    far = real.copy()
    far["age"] = far["age"] + 40
    assert LogisticDetectionC2ST(COLS).compute(real, far).score < 0.2
    assert GradientBoostingC2ST(COLS).compute(real, far).score < 0.2


def test_logistic_c2st_survives_a_category_only_the_synthetic_data_has(real: pd.DataFrame) -> None:
    odd = real.copy()
    odd.loc[odd.index[:20], "vacc_imp"] = 9.0
    r = LogisticDetectionC2ST(COLS).compute(real, odd)
    assert not math.isnan(r.score)
    assert "encoding" in r.extra


def test_tstr_matches_trtr_on_real_training_data_and_fails_on_noise(
    real: pd.DataFrame, other: pd.DataFrame
) -> None:
    trtr = TrainSyntheticTestReal(COLS, "vaccinated").compute(real, other)
    assert trtr.score > 0.7
    noise = other.copy()
    noise["vaccinated"] = np.random.default_rng(0).integers(0, 2, len(noise)).astype(float)
    assert TrainSyntheticTestReal(COLS, "vaccinated").compute(real, noise).score < trtr.score - 0.15
    single = other.assign(vaccinated=1.0)
    assert "single value" in TrainSyntheticTestReal(COLS, "vaccinated").compute(real, single).error


def test_safe_compute_turns_exceptions_into_nan_with_error(real: pd.DataFrame) -> None:
    r = safe_compute(ColumnShapes(COLS), real, real.drop(columns=["age"]))
    assert math.isnan(r.score)
    assert "KeyError" in r.error


def test_column_shapes_reports_per_column_failures_without_aborting(real: pd.DataFrame) -> None:
    empty_age = real.assign(age=np.nan)
    r = ColumnShapes(COLS).compute(real, empty_age)
    assert not math.isnan(r.score)
    row = r.details.set_index("column").loc["age"]
    assert math.isnan(row["score"]) and "no non-missing values" in row["error"]


def test_examples_file_lacking_a_variable_is_compared_on_the_others(real: pd.DataFrame) -> None:
    raw_examples = real.groupby("cluster").head(4).drop(columns=["age"])
    copies = real.groupby("cluster").head(4).sample(40, replace=True, random_state=0)
    h = harmonise({"examples": raw_examples, "synthetic": copies}, COLS)
    assert "age" not in h["examples"].columns
    r = NewRowShare(COLS).compute(h["examples"], h["synthetic"])
    assert r.extra["compared_on"] == ["vacc_imp", "vacc_safe", "sex", "vaccinated"]
    assert r.extra["copy_share"] == pytest.approx(1.0)


def test_harmonise_gives_numeric_codes_one_dtype_and_counts_junk() -> None:
    cols = columns_from_var_types({"q": "an ordinal"}, cluster_column=None)
    real = pd.DataFrame({"q": [1, 2, 3, None] * 10})
    synth = pd.DataFrame({"q": ["1", "2", "3.0", "junk"] + ["2"] * 36})
    h = harmonise({"r": real, "s": synth}, cols)
    assert h["r"]["q"].dtype == h["s"]["q"].dtype == np.float64
    assert h["s"].attrs["coerced_to_na"] == {"q": 1}
    assert ColumnShapes(cols).compute(h["r"], h["s"]).details["score"].notna().all()
