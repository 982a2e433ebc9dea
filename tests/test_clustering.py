"""Latent class clustering, fallbacks, alignment helpers and mutual information."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from panelsynth.prepare import clustering as cl


def two_class_items(
    n: int = 1500,
    n_items: int = 8,
    *,
    seed: int = 0,
    na: float = 0.15,
    strength: float = 1.2,
    share1: float = 0.55,
) -> tuple[pd.DataFrame, np.ndarray]:
    """A two-class latent class panel wave: ordinal 1..5 items, missing answers as NA."""
    rng = np.random.default_rng(seed)
    z = np.where(rng.random(n) < share1, 0, 1)
    base = np.linspace(-1.0, 1.0, 5)
    cols = {}
    for j in range(n_items):
        s = strength * (1.0 if j % 2 == 0 else 0.5)
        probs = [np.exp(base * s * sign) / np.exp(base * s * sign).sum() for sign in (1, -1)]
        x = np.empty(n)
        for c in (0, 1):
            idx = z == c
            x[idx] = rng.choice(5, size=idx.sum(), p=probs[c]) + 1
        x[rng.random(n) < na] = np.nan
        cols[f"q{j + 1}"] = x
    return pd.DataFrame(cols), z


def test_lca_recovers_two_classes_with_missing_answers():
    df, z = two_class_items()
    assert df.isna().mean().mean() > 0.1
    enc = cl.encode_items(df, list(df.columns))
    fit = cl.fit_clusters(enc, k=2, seed=1, missing="fiml", bic_ks=())
    assert len(fit.labels) == len(df)  # nobody dropped for missing answers
    ari = cl.adjusted_rand_index(z, fit.labels)
    assert ari > 0.8, ari
    assert np.allclose(fit.posterior.sum(axis=1), 1.0)
    assert fit.converged


def test_adjusted_rand_index_matches_sklearn():
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 3, 200), rng.integers(0, 2, 200)
    assert cl.adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b))
    assert cl.adjusted_rand_index(a, a) == pytest.approx(1.0)


def test_numpy_engine_matches_stepmix_likelihood():
    df, _ = two_class_items(n=400, n_items=5, seed=4)
    enc = cl.encode_items(df, list(df.columns))
    ours = cl.fit_lca(enc, 2, seed=0, n_init=3, tol=1e-10)
    ref = cl.fit_lca_stepmix(enc, 2, seed=0, n_init=3, tol=1e-10)
    assert ours.loglik == pytest.approx(ref.loglik, rel=1e-6)
    assert ours.n_parameters == 2 * (5 * 4) + 1
    assert ours.bic == pytest.approx(ref.bic, rel=1e-6)


def test_same_seed_same_labels_and_subsample_path():
    df, z = two_class_items(n=3000, seed=5)
    enc = cl.encode_items(df, list(df.columns))
    a = cl.fit_clusters(enc, seed=9, max_fit_rows=800, bic_ks=())
    b = cl.fit_clusters(enc, seed=9, max_fit_rows=800, bic_ks=())
    assert a.n_fit == 800
    assert np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.posterior, b.posterior)
    full = cl.fit_clusters(enc, seed=9, max_fit_rows=None, bic_ks=())
    assert full.n_fit == 3000
    # assigned with the subsample's parameters, everyone is classified about as well as by a
    # fit on all rows
    assert cl.adjusted_rand_index(z, a.labels) > 0.95 * cl.adjusted_rand_index(z, full.labels)


def test_bic_table_prefers_two_classes():
    df, _ = two_class_items(n=1500, seed=6, strength=1.5)
    enc = cl.encode_items(df, list(df.columns))
    fit = cl.fit_clusters(enc, k=2, seed=2)
    assert sorted(fit.bic) == [1, 2, 3, 4]
    assert min(fit.bic, key=fit.bic.get) == 2
    assert fit.bic_n == 1500


@pytest.mark.parametrize("method", ["kmodes", "kmeans"])
def test_fallbacks_recover_well_separated_classes(method):
    df, z = two_class_items(n=800, seed=7, strength=2.5, na=0.05)
    enc = cl.encode_items(df, list(df.columns))
    fit = cl.fit_clusters(enc, method=method, seed=3, bic_ks=(1, 2))
    assert fit.method == method
    assert cl.adjusted_rand_index(z, fit.labels) > 0.6
    assert set(np.unique(fit.posterior)) <= {0.0, 1.0}  # hard assignments
    assert sorted(fit.bic) == [1, 2]  # the BIC table always comes from LCA


def test_missing_category_adds_a_level_only_where_missing_is_rare():
    df = pd.DataFrame(
        {"a": [1, 2, np.nan, 1, 2, 1, 2, 1], "b": [1, np.nan, np.nan, np.nan, 2, 1, np.nan, 2]}
    )
    enc = cl.encode_items(df, ["a", "b"])
    out = enc.with_missing_category(0.25)
    assert list(out.n_levels) == [3, 2]  # a: 1/8 missing -> category; b: half missing -> FIML
    assert (out.codes[:, 0] >= 0).all()
    assert (out.codes[:, 1] < 0).sum() == 4


def test_continuous_items_are_binned():
    df = pd.DataFrame({"age": np.arange(18, 118, dtype=float)})
    enc = cl.encode_items(df, ["age"], {"age": "continuous"})
    assert enc.n_levels[0] == 5
    assert np.bincount(enc.codes[:, 0]).tolist() == [20, 20, 20, 20, 20]


def test_permute_and_profile_matching_recover_a_label_swap():
    df, _ = two_class_items(n=1000, seed=8, strength=1.5)
    enc = cl.encode_items(df, list(df.columns))
    fit = cl.fit_clusters(enc, seed=1, bic_ks=())
    ref = cl.profiles_by_item(enc, fit.labels, 2)
    swapped = fit.permute([1, 0])
    assert np.array_equal(swapped.labels, 1 - fit.labels)
    assert np.allclose(swapped.posterior, fit.posterior[:, ::-1])
    order = cl.match_profiles(ref, cl.profiles_by_item(enc, swapped.labels, 2))
    assert order == [1, 0]
    assert np.array_equal(swapped.permute(order).labels, fit.labels)
    assert cl.match_profiles(ref, {"other": ref["q1"]}) is None  # no shared item


def test_orientation_order_puts_the_positive_class_first():
    assert cl.orientation_order(np.array([2.0, 4.5])) == [1, 0]
    assert cl.orientation_order(np.array([2.0, 4.5]), higher_is_positive=False) == [0, 1]
    frame = pd.DataFrame({"x": [1, 1, 5, 5, np.nan]})
    means = cl.class_means(frame, "x", np.array([0, 0, 1, 1, 1]), 2)
    assert means.tolist() == [1.0, 5.0]


def test_mutual_information_bounds():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    assert cl.mutual_information(y, y) == pytest.approx(1.0, abs=0.01)  # one bit
    assert cl.mutual_information(rng.integers(0, 5, 5000), y) < 0.01
    x = y.copy()
    x[:2500] = -1  # missing answers are ignored
    assert cl.mutual_information(x, y) == pytest.approx(1.0, abs=0.02)


def test_relative_entropy():
    assert cl.relative_entropy(np.array([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(1.0)
    assert cl.relative_entropy(np.full((4, 2), 0.5)) == pytest.approx(0.0)


def test_clusterings_the_data_cannot_support_are_one_line_typed_errors() -> None:
    from panelsynth.errors import ConfigError, DataError

    frame = pd.DataFrame({"a": [1, 2, 1], "b": [2, 2, 1]})
    enc = cl.encode_items(frame, ["a", "b"], {"a": "ordinal", "b": "ordinal"})
    with pytest.raises(
        DataError, match=r"3 respondents cannot form 4 clusters — set clustering\.k"
    ):
        cl.fit_clusters(enc, k=4)
    with pytest.raises(ConfigError, match=r"unknown clustering method 'ward' — set clustering"):
        cl.fit_clusters(enc, k=2, method="ward", bic_ks=())  # type: ignore[arg-type]
    same = cl.encode_items(frame.iloc[[0, 0, 0]], ["a", "b"], {"a": "ordinal", "b": "ordinal"})
    with pytest.raises(DataError, match=r"only 1 distinct answer pattern .* too few for 2 k-modes"):
        cl.fit_clusters(same, k=2, method="kmodes", bic_ks=())
