"""Calibrated generation, the pure parts: profiles, selection, distances, the prompt's books."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from panelsynth.calibrate import (
    Band,
    CalibratedPrompt,
    Profile,
    ProfileDesign,
    allocate,
    anchor_bands,
    build_targets,
    marginal_distance,
    profile_first,
    resolve_anchors,
    select_rows,
)
from panelsynth.errors import ConfigError
from panelsynth.generate import GenerationPrompt, row_key
from panelsynth.pydantic_models.rows import RowSpec

SPECS = [
    RowSpec("q1", "an ordinal", codes=(1, 2, 3, 4, 5)),
    RowSpec("q2", "an ordinal", codes=(1, 2, 3, 4)),
    RowSpec("age", "a continuous", low=18, high=90, integer=True),
    RowSpec("sex", "a binary", codes=(1, 2)),
    RowSpec("cluster", "cluster", codes=(1, 2)),
]
COLUMNS = [s.name for s in SPECS]


def _real(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Two clusters with different item distributions; ages and sexes differ by cluster."""
    rng = np.random.default_rng(seed)
    cluster = np.where(rng.random(n) < 0.6, 1, 2)
    q1 = np.where(
        cluster == 1,
        rng.choice([3, 4, 5], n, p=[0.2, 0.3, 0.5]),
        rng.choice([1, 2, 3], n, p=[0.5, 0.3, 0.2]),
    )
    q2 = rng.integers(1, 5, n)
    age = np.where(cluster == 1, rng.integers(40, 91, n), rng.integers(18, 60, n))
    sex = np.where(cluster == 1, rng.choice([1, 2], n, p=[0.3, 0.7]), rng.choice([1, 2], n))
    return pd.DataFrame(
        {"q1": q1.astype(float), "q2": q2.astype(float), "age": age, "sex": sex, "cluster": cluster}
    )


def _shuffled_within_cluster(real: pd.DataFrame, seed: int) -> pd.DataFrame:
    """New rows with exactly the real per-cluster marginals (cells permuted within cluster)."""
    rng = np.random.default_rng(seed)
    out = real.copy()
    for c in (1, 2):
        m = out["cluster"] == c
        for col in ("q1", "q2", "age", "sex"):
            out.loc[m, col] = rng.permutation(out.loc[m, col].to_numpy())
    return out


def _distractors(n: int, seed: int) -> pd.DataFrame:
    """LLM-like rows: answers piled on one option, everyone 30 and male."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "q1": 5.0,
            "q2": 1.0,
            "age": 30,
            "sex": 1,
            "cluster": rng.integers(1, 3, n),
        },
        index=range(n),
    )


# ----------------------------------------------------------------------------------------------
# allocation, anchors, bands, profiles
def test_allocate_uses_largest_remainders() -> None:
    assert allocate({1: 0.5535, 2: 0.4465}, 100) == {1: 55, 2: 45}
    assert allocate({1: 0.5535, 2: 0.4465}, 7) == {1: 4, 2: 3}
    got = allocate({1: 1 / 3, 2: 1 / 3, 3: 1 / 3}, 10)
    assert sum(got.values()) == 10 and sorted(got.values()) == [3, 3, 4]


def test_age_bands_and_their_text() -> None:
    bands = anchor_bands("age", SPECS[2], pd.Series([18, 40, 90]))
    assert [b.text() for b in bands] == [
        "18-24",
        "25-34",
        "35-44",
        "45-54",
        "55-64",
        "65-74",
        "75-90",
    ]
    assert bands[2].contains(35) and bands[2].contains(44) and not bands[2].contains(45)
    assert not bands[2].contains(None)


def test_non_age_continuous_anchor_gets_quantile_bands() -> None:
    spec = RowSpec("income", "a continuous", low=0, high=1000, integer=True)
    bands = anchor_bands("income", spec, pd.Series(range(0, 1001)))
    assert len(bands) == 5 and bands[0].low == 0 and bands[-1].high == 1000
    # contiguous, non-overlapping integer bands
    assert all(b.low == a.high + 1 for a, b in zip(bands, bands[1:], strict=False))


def test_resolve_anchors_defaults_to_demographics_in_the_wave() -> None:
    assert resolve_anchors(
        None, SPECS, demographics=["age", "sex", "income"], cluster_column="cluster"
    ) == ["age", "sex"]
    assert resolve_anchors(["sex"], SPECS, demographics=[], cluster_column="cluster") == ["sex"]
    with pytest.raises(ConfigError, match=r"anchor 'income' is not a variable.*--anchors"):
        resolve_anchors(["income"], SPECS, demographics=[], cluster_column="cluster")


def test_profiles_follow_real_cluster_shares_and_joint_anchors() -> None:
    real = _real(600)
    # in cluster 1 every man is 75+ and every woman under 45: a joint draw keeps that
    m1 = real["cluster"] == 1
    real.loc[m1 & (real["sex"] == 1), "age"] = 80
    real.loc[m1 & (real["sex"] == 2), "age"] = 40
    design = ProfileDesign.from_frame(real, SPECS, ["age", "sex"], cluster_column="cluster", seed=5)
    profiles = design.draw(1000)
    shares = real["cluster"].value_counts(normalize=True).to_dict()
    counts = pd.Series([p.cluster for p in profiles]).value_counts().to_dict()
    assert counts == allocate({int(k): v for k, v in shares.items()}, 1000)
    for p in profiles:
        a = dict(p.anchors)
        if p.cluster == 1:
            assert (a["sex"], a["age"].text()) in {(1, "75-90"), (2, "35-44")}
        # every profile's anchor tuple is that of a real respondent of its cluster
        sub = real[(real["cluster"] == p.cluster) & (real["sex"] == a["sex"])]
        assert sub["age"].map(a["age"].contains).any()
    assert {dict(p.anchors)["sex"] for p in profiles if p.cluster == 1} == {1, 2}


def test_profiles_are_seeded() -> None:
    real = _real()
    d1 = ProfileDesign.from_frame(real, SPECS, ["age", "sex"], cluster_column="cluster", seed=1)
    d2 = ProfileDesign.from_frame(real, SPECS, ["age", "sex"], cluster_column="cluster", seed=1)
    d3 = ProfileDesign.from_frame(real, SPECS, ["age", "sex"], cluster_column="cluster", seed=2)
    assert d1.draw(50) == d2.draw(50)
    assert d1.draw(50) != d3.draw(50)
    assert d1.extra(60) == d2.extra(60)


def test_respondents_with_a_missing_anchor_give_no_profile_in_dense_mode() -> None:
    real = _real(50)
    real["sex"] = real["sex"].astype(float)
    real.loc[real["cluster"] == 2, "sex"] = np.nan
    real.loc[real.index[(real["cluster"] == 2)][:1], "sex"] = 2.0  # one usable respondent
    design = ProfileDesign.from_frame(real, SPECS, ["sex"], cluster_column="cluster", seed=0)
    assert {dict(p.anchors)["sex"] for p in design.draw(200) if p.cluster == 2} == {2}
    real.loc[real["cluster"] == 2, "sex"] = np.nan
    with pytest.raises(ConfigError, match="cluster 2 has no respondent"):
        ProfileDesign.from_frame(real, SPECS, ["sex"], cluster_column="cluster", seed=0)


def test_profile_keeps_checks_cluster_codes_and_bands() -> None:
    p = Profile(2, (("age", Band(35, 44)), ("sex", 2)))
    assert p.text() == "cluster 2, age 35-44, sex 2"
    assert p.keeps({"cluster": 2, "age": 35, "sex": 2})
    assert p.keeps({"cluster": 2.0, "age": 44.0, "sex": "2"})
    assert not p.keeps({"cluster": 1, "age": 40, "sex": 2})
    assert not p.keeps({"cluster": 2, "age": 45, "sex": 2})
    assert not p.keeps({"cluster": 2, "age": 40, "sex": 1})
    assert not p.keeps({"cluster": 2, "age": None, "sex": 2})
    na = Profile(1, (("sex", None),))
    assert na.keeps({"cluster": 1, "sex": None}) and not na.keeps({"cluster": 1, "sex": 1})


def test_profile_first_puts_cluster_and_anchors_first() -> None:
    assert profile_first(COLUMNS, "cluster", ["age", "sex"]) == [
        "cluster",
        "age",
        "sex",
        "q1",
        "q2",
    ]


# ----------------------------------------------------------------------------------------------
# selection
def test_selection_finds_the_subset_with_the_real_marginals() -> None:
    real = _real(400)
    good = _shuffled_within_cluster(real, seed=3)
    pool = pd.concat([good, _distractors(400, 4)], ignore_index=True)
    pool = pool.sample(frac=1.0, random_state=7).reset_index(drop=True)
    good_keys = {row_key(r) for r in good[COLUMNS].itertuples(index=False)}
    sel = select_rows(pool, real, SPECS, 400, cluster_column="cluster", seed=1)
    assert len(sel.rows) == 400
    assert sel.before["mean_tvd"] > 0.2
    assert sel.after["mean_tvd"] == pytest.approx(0.0, abs=1e-9)
    assert all(row_key(r) in good_keys for r in sel.rows[COLUMNS].itertuples(index=False))
    assert sel.counts == allocate(real["cluster"].value_counts(normalize=True).to_dict(), 400)
    assert sel.after["cluster_share_tvd"] <= 0.5 / 400 + 1e-9


def test_selection_of_half_the_rows_matches_closely() -> None:
    real = _real(400)
    pool = pd.concat(
        [_shuffled_within_cluster(real, seed=3), _distractors(400, 4)], ignore_index=True
    )
    sel = select_rows(pool, real, SPECS, 200, cluster_column="cluster", seed=1)
    assert len(sel.rows) == 200
    assert sel.after["mean_tvd"] < 0.02 < 0.2 < sel.before["mean_tvd"]
    for per_var in sel.after["per_variable"].values():
        assert max(per_var.values()) < 0.05


def test_selection_matches_na_shares_in_full_mode_and_ignores_na_in_dense_mode() -> None:
    real = _real(300)
    real.loc[(real["cluster"] == 2) & (real.index % 4 == 0), "q2"] = np.nan  # 25% NA in cluster 2
    full_specs = [RowSpec(s.name, s.vtype, s.codes, s.low, s.high, s.integer, True) for s in SPECS]
    good = _shuffled_within_cluster(real, seed=2)
    nona = good.copy()
    nona["q2"] = nona["q2"].fillna(1.0)  # same rows with every NA answered
    pool = pd.concat([nona, good], ignore_index=True)
    sel = select_rows(pool, real, full_specs, 300, cluster_column="cluster", seed=0)
    sel2 = sel.rows[sel.rows["cluster"] == 2]
    real2 = real[real["cluster"] == 2]
    pool2 = pool[pool["cluster"] == 2]
    real_na = real2["q2"].isna().mean()
    assert abs(pool2["q2"].isna().mean() - real_na) > 0.1  # the pool has half the NA share
    assert sel2["q2"].isna().mean() == pytest.approx(real_na, abs=0.02)
    # dense: the target is the distribution of the answers given (NA excluded)
    t = build_targets(real, SPECS, cluster_column="cluster", n=100)
    j = [v.name for v in t.variables].index("q2")
    assert None not in t.variables[j].categories
    shares = real2["q2"].dropna().value_counts(normalize=True).sort_index().to_numpy()
    assert np.allclose(t.distributions[2][j], shares)


def _is_copy(frame: pd.DataFrame, keys: set) -> np.ndarray:
    return np.array([row_key(r) in keys for r in frame[COLUMNS].itertuples(index=False)])


def test_selection_never_prefers_copies_of_real_rows_or_examples() -> None:
    real = _real(300)
    real_keys = {row_key(r) for r in real[COLUMNS].itertuples(index=False)}
    examples = real.groupby("cluster").head(10)
    ex_keys = {row_key(r) for r in examples[COLUMNS].itertuples(index=False)}
    # the pool: exact copies of real rows (a perfect fit) and other rows that fit worse
    other = pd.concat([_shuffled_within_cluster(real, seed=s) for s in (9, 10)])
    other["q2"] = np.where(other["q2"] == 4, 3, other["q2"])
    other = other[~_is_copy(other, real_keys)]
    assert (other["cluster"].value_counts() > real["cluster"].value_counts()).all()
    pool = pd.concat([real, other], ignore_index=True)
    sel = select_rows(pool, real, SPECS, 300, cluster_column="cluster", seed=0, avoid=real_keys)
    assert sel.copies_pool == 300 and sel.copies_selected == 0
    assert not _is_copy(sel.rows, real_keys).any()
    # without the penalty the copies would have been the better choice
    free = select_rows(pool, real, SPECS, 300, cluster_column="cluster", seed=0)
    assert free.after["mean_tvd"] < sel.after["mean_tvd"]
    assert _is_copy(sel.rows, ex_keys).mean() <= _is_copy(pool, ex_keys).mean()
    # not trivially true: by fit alone, copies are over-represented in the selection
    assert _is_copy(free.rows, real_keys).mean() > _is_copy(pool, real_keys).mean() + 0.05


def test_copies_fill_in_only_what_a_cluster_lacks() -> None:
    real = _real(200)
    keys = {row_key(r) for r in real[COLUMNS].itertuples(index=False)}
    noncopy = _shuffled_within_cluster(real, seed=1)
    noncopy = noncopy[~_is_copy(noncopy, keys)]
    noncopy = pd.concat(
        [noncopy[noncopy["cluster"] == 1], noncopy[noncopy["cluster"] == 2].head(30)]
    )
    pool = pd.concat([noncopy, real[real["cluster"] == 2]], ignore_index=True)
    sel = select_rows(pool, real, SPECS, 200, cluster_column="cluster", seed=0, avoid=keys)
    expected = sum(
        max(0, need - int((noncopy["cluster"] == c).sum())) for c, need in sel.counts.items()
    )
    assert expected > 0 and sel.copies_selected == expected
    assert sel.copies_selected / len(sel.rows) <= sel.copies_pool / len(pool)


def test_selection_is_seeded() -> None:
    real = _real(300)
    rng = np.random.default_rng(11)
    pool = real.iloc[rng.integers(0, 300, 900)].reset_index(drop=True)
    pool["q2"] = rng.integers(1, 5, 900).astype(float)
    a = select_rows(pool, real, SPECS, 150, cluster_column="cluster", seed=1)
    b = select_rows(pool, real, SPECS, 150, cluster_column="cluster", seed=1)
    c = select_rows(pool, real, SPECS, 150, cluster_column="cluster", seed=2)
    assert a.indices == b.indices and a.rows.equals(b.rows)
    assert a.indices != c.indices
    assert c.after["mean_tvd"] < a.before["mean_tvd"]


def test_short_cluster_is_filled_from_the_other_with_a_note() -> None:
    real = _real(200)
    pool = _shuffled_within_cluster(real, seed=1)
    pool = pd.concat([pool[pool["cluster"] == 1], pool[pool["cluster"] == 2].head(5)])
    sel = select_rows(pool, real, SPECS, 100, cluster_column="cluster", seed=0)
    assert len(sel.rows) == 100 and sel.counts[2] == 5
    assert sel.notes and "too few rows" in sel.notes[0]


def test_marginal_distance_is_zero_for_the_real_data_and_one_for_disjoint_rows() -> None:
    real = _real(200)
    t = build_targets(real, SPECS, cluster_column="cluster", n=200)
    d = marginal_distance(real, t)
    assert d["mean_tvd"] == 0.0 and d["cluster_share_tvd"] == 0.0
    far = _distractors(50, 0)
    far["q1"] = np.where(far["cluster"] == 1, 1.0, 5.0)  # codes the real clusters never use
    assert marginal_distance(far, t)["per_variable"]["1"]["q1"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# the prompt's books
DISTINCT = [
    Profile(c, (("age", Band(lo, lo + 9)), ("sex", sx)))
    for c in (1, 2)
    for sx in (1, 2)
    for lo in (25, 35, 45, 55)
]  # 16 profiles, no two alike


def _prompt(n_profiles: int = 8, n_outputs: int = 4) -> CalibratedPrompt:
    real = _real()
    design = ProfileDesign.from_frame(real, SPECS, ["age", "sex"], cluster_column="cluster", seed=0)
    base = GenerationPrompt(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], 4
    )
    pr = CalibratedPrompt.wrap(base, design, n_profiles, n_outputs)
    pr.profiles = list(DISTINCT[:n_profiles])
    return pr


def _row(p: Profile, **over: object) -> dict[str, object]:
    a = dict(p.anchors)
    row = {"q1": 3, "q2": 2, "age": int(a["age"].low), "sex": a["sex"], "cluster": p.cluster}
    row.update(over)
    return row


def test_wrap_draws_the_planned_profiles_from_the_design() -> None:
    real = _real()
    design = ProfileDesign.from_frame(real, SPECS, ["age", "sex"], cluster_column="cluster", seed=0)
    base = GenerationPrompt([{"role": "user", "content": "U"}], 4)
    pr = CalibratedPrompt.wrap(base, design, 12, 4)
    assert pr.profiles == design.draw(12) and pr.profile(12) == design.extra(12)


def test_request_lists_profiles_after_the_shared_prefix() -> None:
    pr = _prompt()
    msgs = pr.for_batch(1, 4)
    assert msgs[0] == pr.prefix[0] and msgs[-1]["content"].startswith("U\n\nRequest 2:")
    lines = [x for x in msgs[-1]["content"].splitlines() if x.startswith("Respondent ")]
    assert lines == [f"Respondent {k + 1}: {pr.profiles[4 + k].text()}" for k in range(4)]
    assert lines[0] == "Respondent 1: cluster 1, age 25-34, sex 2"
    assert pr.prefix[-1]["content"] == "U"  # the shared prefix itself is not changed


def test_rows_off_their_profile_are_rejected_and_counted() -> None:
    pr = _prompt()
    ps = pr.profiles[:4]
    rows = [
        _row(ps[3]),  # out of order: still completes profile 3
        _row(ps[1], cluster=2),  # wrong cluster
        _row(ps[2], age=ps[2].anchors[0][1].high + 1),  # age outside its band
        _row(ps[0]),
        _row(ps[0]),  # a second row for profile 0
    ]
    kept, errors, book = pr.check_rows(0, rows)
    assert kept == [rows[0], rows[3]]
    assert (
        len(errors) == 3 and "row 1: does not keep its profile (cluster 1, age 35-44" in errors[0]
    )
    assert book["profiles"] == [0, 1, 2, 3] and book["fulfilled"] == [3, 0]
    assert book["off_profile"] == 3 and book["off_profile_errors"] == errors
    assert pr.off_profile_rows == 3 and pr.fulfilled == {0, 3}


def test_top_ups_ask_again_for_unfulfilled_profiles_and_resume_restores_books() -> None:
    pr = _prompt(n_profiles=8, n_outputs=4)
    ps = pr.profiles
    _, _, book0 = pr.check_rows(0, [_row(ps[i]) for i in range(4)])
    _, _, book1 = pr.check_rows(1, [_row(ps[4]), _row(ps[5], sex=3 - dict(ps[5].anchors)["sex"])])
    assert pr.fulfilled == {0, 1, 2, 3, 4}
    pr.plan([2])
    assert pr.assigned[2] == [5, 6, 7, 8]  # the three unfulfilled, then a fresh one
    assert pr.profile(8) == pr.design.extra(8)
    pr.check_rows(2, [_row(pr.profile(i)) for i in (5, 6, 7, 8)])
    pr.plan([3])
    assert pr.assigned[3] == [9, 10, 11, 12]
    # a new prompt restored from the records has the same books and plans the same top-up
    again = _prompt(n_profiles=8, n_outputs=4)
    again.restore({"batch": 0, **book0})
    again.restore({"batch": 1, **book1})
    again.plan([2])
    assert again.assigned[2] == [5, 6, 7, 8] and again.off_profile_rows == 1
