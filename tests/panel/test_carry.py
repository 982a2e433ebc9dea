"""What the host carries for a synthetic panel respondent across waves (panel/carry.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from panelgen import ITEMS, make_panel
from scipy.stats import chisquare

from panelsynth.calibrate import Band, Profile, anchor_bands
from panelsynth.errors import ConfigError
from panelsynth.panel.anchors import draw_first_wave_anchors, draw_patterns
from panelsynth.panel.carry import (
    FIXED_SHARE,
    Carried,
    PanelCarry,
    apply,
    estimate_carry,
    keeps_text,
)
from panelsynth.panel.draw import PanelDraw, synthetic_ids
from panelsynth.pydantic_models.rows import RowSpec

ID = "respondent_id"
WAVES = ["1", "2", "3", "4"]


def _specs(nullable: bool = False, region: bool = True) -> list[RowSpec]:
    out = [
        RowSpec("sex", "a binary", codes=(1, 2), nullable=nullable),
        RowSpec("age", "a continuous", low=18, high=90, integer=True, nullable=nullable),
        RowSpec("educ", "an ordinal", codes=(1, 2, 3, 4), nullable=nullable),
        RowSpec("q1", "an ordinal", codes=(1, 2, 3, 4, 5), nullable=nullable),
        RowSpec("income", "a continuous", low=0, high=10000, integer=True, nullable=nullable),
    ]
    if region:
        out.append(RowSpec("region", "a categorical", codes=(1, 2, 3), nullable=nullable))
    return [*out, RowSpec("cluster", "cluster", codes=(1, 2))]


def _frames(n: int = 400, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Four linked waves: sex and region fixed (region not asked in wave 2; sex carries the
    missing code -9 for 4% in wave 2), age +0/+1 per wave (top-coded 90), educ fixed 1->2 but
    changed by 10% in 2->3, an attitude item kept by 70%, an income drifting widely."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1)
    sex = rng.integers(1, 3, n)
    region = rng.integers(1, 4, n)
    age = rng.integers(20, 91, n)
    educ = rng.integers(1, 5, n)
    q1 = rng.integers(1, 6, n)
    income = rng.integers(1000, 9000, n).astype(float)
    out = {}
    for t, w in enumerate(WAVES):
        if t:
            age = np.minimum(age + (rng.random(n) < 0.5), 90)
            if w == "3":
                educ = np.where(rng.random(n) < 0.1, rng.integers(1, 5, n), educ)
            q1 = np.where(rng.random(n) < 0.7, q1, rng.integers(1, 6, n))
            income = np.clip(income + rng.normal(0, 2000, n), 0, 10000).round()
        present = rng.random(n) < 0.9
        f = pd.DataFrame(
            {ID: ids, "sex": sex, "age": age, "educ": educ, "q1": q1, "income": income}
        )
        if w != "2":
            f["region"] = region
        else:
            f.loc[rng.random(n) < 0.04, "sex"] = -9
        f["cluster"] = rng.integers(1, 3, n)
        out[w] = f[present].reset_index(drop=True)
    return out


def _specs_by_wave(nullable: bool = False) -> dict[str, list[RowSpec]]:
    return {w: _specs(nullable, region=w != "2") for w in WAVES}


@pytest.fixture(scope="module")
def rules():
    return estimate_carry(_frames(), _specs_by_wave(), WAVES, WAVES, id_column=ID)


def test_fixed_and_shift_items_per_step_and_attitudes_not_carried(rules) -> None:
    one_two, two_three, three_four = rules.steps
    assert one_two["sex"].kind == "fixed"  # the missing code -9 counts as no answer
    assert (one_two["age"].kind, one_two["age"].low, one_two["age"].high) == ("shift", 0, 1)
    assert one_two["educ"].kind == "fixed"
    assert "educ" not in two_three  # 10% changed: fixed 1 -> 2 only
    assert three_four["educ"].kind == "fixed"
    for step in rules.steps:
        assert "q1" not in step and "income" not in step
        assert "cluster" not in step and ID not in step
    assert "region" not in one_two  # not asked in wave 2


def test_rules_compose_over_skipped_waves() -> None:
    r = estimate_carry(_frames(), _specs_by_wave(), WAVES, ["1", "3", "4"], id_column=ID)
    assert set(r.pairs) == {("1", "3"), ("1", "4"), ("3", "4")}
    one_three = r.between("1", "3")
    assert (one_three["age"].low, one_three["age"].high) == (0, 2)  # +0..+1 twice
    assert (one_three["age"].minimum, one_three["age"].maximum) == (18, 90)
    assert one_three["sex"].kind == "fixed"
    assert one_three["region"].kind == "fixed"  # estimated on waves 1 and 3 directly
    assert "educ" not in one_three  # not fixed 2 -> 3
    assert r.between("3", "4")["educ"].kind == "fixed"
    assert (r.between("1", "4")["age"].low, r.between("1", "4")["age"].high) == (0, 3)
    assert r.to_json()["pairs"]["1-3"] == {
        "sex": "fixed",
        "age": "+0..+2",
        "region": "fixed",
    }


def test_the_rules_hold_for_the_real_respondents(rules) -> None:
    frames = _frames()
    a, b = frames["1"].set_index(ID), frames["2"].set_index(ID)
    both = a.index.intersection(b.index)
    for name, rule in rules.between("1", "2").items():
        kept = [rule.keeps(a.at[i, name], b.at[i, name]) for i in both if b.at[i, name] != -9]
        assert np.mean(kept) >= FIXED_SHARE, name


def test_too_few_linked_respondents_carry_nothing() -> None:
    frames = _frames(n=40)
    frames["2"] = frames["2"].head(15)
    r = estimate_carry(frames, _specs_by_wave(), WAVES, ["1", "2"], id_column=ID)
    assert r.between("1", "2") == {}


def test_allowed_value_band_and_na() -> None:
    fixed = Carried("fixed")
    assert fixed.allowed(2.0) == 2 and fixed.allowed(None) is None
    assert fixed.allowed(float("nan")) is None and fixed.allowed(pd.NA) is None
    assert fixed.keeps(2, 2.0) and not fixed.keeps(2, 1) and fixed.keeps(None, 1)
    sex = Carried("fixed", codes=(1, 2))
    assert sex.allowed(2.0) == 2 and sex.allowed(3) is None and sex.keeps(3, 1)
    birth = Carried("fixed", integer=True, minimum=1920, maximum=2006)
    assert birth.allowed(1970) == 1970 and birth.allowed(2010) is None
    age = Carried("shift", 0, 1, integer=True, minimum=18, maximum=90)
    assert age.allowed(36) == Band(36, 37, integer=True)
    assert age.allowed(90) == Band(90, 90, integer=True)  # clipped to the bound
    assert age.allowed(None) is None and age.allowed("x") is None
    assert age.keeps(36, 37) and not age.keeps(36, 38) and not age.keeps(36, None)
    assert Carried("shift", 0.2, 1.5, integer=True).allowed(10) == Band(11, 11, integer=True)
    assert (age.text(), Carried("shift", -1, 2).text(), fixed.text()) == (
        "+0..+1",
        "-1..+2",
        "fixed",
    )
    assert fixed.then(fixed).kind == "fixed"
    both = age.then(Carried("shift", 1, 1))
    assert (both.kind, both.low, both.high) == ("shift", 1, 2)


def test_row_profile_carries_the_previous_answers(rules) -> None:
    carry = PanelCarry(rules, first_wave="1")
    assert carry.row_profile("S00001", "1", 1, None, None) is None  # plain: nothing yet
    prev = {"sex": 2, "age": 36, "educ": 3, "q1": 4, "income": 5000, "region": 1}
    p = carry.row_profile("S00001", "2", 2, prev, "1")
    assert p is not None and p.cluster == 2
    assert dict(p.anchors) == {"sex": 2, "age": Band(36, 37, integer=True), "educ": 3}
    assert p.text() == "cluster 2, sex 2, age 36-37, educ 3"
    assert keeps_text(p) == "keeps: sex 2, age 36-37, educ 3" and keeps_text(None) == ""
    assert p.keeps({"cluster": 2, "sex": 2, "age": 37, "educ": 3, "q1": 1})
    p = carry.row_profile("S00001", "3", 1, {**prev, "sex": None}, "1")
    assert dict(p.anchors) == {"age": Band(36, 38, integer=True), "region": 1}
    assert carry.row_profile("S00001", "3", 1, {"q1": 3}, "2") is None


def test_apply_fixes_and_counts() -> None:
    p = Profile(2, (("sex", 2), ("age", Band(36, 37, integer=True))), missing=("q1",))
    row = {"cluster": 2, "sex": 1, "age": 40, "q1": 3, "educ": 2}
    fixed, n = apply(p, row)
    assert fixed == {"cluster": 2, "sex": 2, "age": 37, "q1": None, "educ": 2} and n == 3
    assert row["sex"] == 1  # the input row is not changed
    again, n = apply(p, fixed)
    assert again == fixed and n == 0
    fixed, n = apply(p, {"cluster": 2, "sex": 2.0, "age": None, "q1": None})
    assert fixed["age"] == 37 and fixed["sex"] == 2.0 and n == 1
    fixed, n = apply(p, {"cluster": 2, "sex": 2, "age": 12, "q1": None})
    assert fixed["age"] == 36 and n == 1
    assert apply(None, row) == (row, 0)
    cont = Profile(1, (("x", Band(0.5, 2.5, integer=False, open_high=True)),))
    fixed, n = apply(cont, {"x": 9.0})
    assert cont.keeps({"cluster": 1, **fixed}) and n == 1


# ----------------------------------------------------------------------------------------------
# calibrated: first-wave anchors and patterns
def _real_for_anchors(n: int = 3000, seed: int = 5) -> pd.DataFrame:
    """Cluster 1: 70% women, older; cluster 2: 30% women, younger; q1 missing 30% / 5%."""
    rng = np.random.default_rng(seed)
    cl = np.where(rng.random(n) < 0.5, 1, 2)
    sex = np.where(rng.random(n) < np.where(cl == 1, 0.7, 0.3), 2, 1)
    age = np.clip(np.rint(rng.normal(np.where(cl == 1, 60, 35), 10)), 18, 90).astype(int)
    q1 = rng.integers(1, 6, n).astype(float)
    q1[rng.random(n) < np.where(cl == 1, 0.3, 0.05)] = np.nan
    educ = rng.integers(1, 5, n)
    income = rng.integers(0, 10000, n)
    return pd.DataFrame(
        {"sex": sex, "age": age, "educ": educ, "q1": q1, "income": income, "cluster": cl}
    )


def _draw(n: int, seed: int = 3) -> PanelDraw:
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 2, n)
    second = np.where(rng.random(n) < 0.8, first, 1 - first)
    return PanelDraw(
        ids=synthetic_ids(n),
        waves=("1", "2"),
        requested=("1", "2"),
        k=2,
        states=np.column_stack([first, second]),
        first_prev=np.zeros(n, dtype=np.int64),
    )


def test_first_wave_anchors_follow_the_clusters_real_distribution() -> None:
    real, specs = _real_for_anchors(), _specs(region=False)
    draw = _draw(2000)
    kw = {"anchors": None, "demographics": ["age", "sex"], "cluster_column": "cluster"}
    got = draw_first_wave_anchors(draw, real, specs, seed=7, **kw)
    assert set(got) == set(draw.ids)
    assert got == draw_first_wave_anchors(draw, real, specs, seed=7, **kw)
    assert got != draw_first_wave_anchors(draw, real, specs, seed=8, **kw)
    bands = anchor_bands("age", specs[1], real["age"])
    for c in (1, 2):
        mine = [p for rid, p in got.items() if p.cluster == c]
        assert len(mine) == int((draw.clusters[:, 0] == c).sum())
        sub = real[real["cluster"] == c]
        female = np.mean([dict(p.anchors)["sex"] == 2 for p in mine])
        share = float((sub["sex"] == 2).mean())
        assert abs(female - share) < 4 * np.sqrt(share * (1 - share) / len(mine))
        drawn = pd.Series([dict(p.anchors)["age"] for p in mine]).value_counts()
        observed = np.array([drawn.get(b, 0) for b in bands], dtype=float)
        real_share = np.array([sub["age"].map(b.contains).mean() for b in bands])
        keep = real_share > 0
        assert observed[~keep].sum() == 0
        expected = real_share[keep] / real_share[keep].sum() * len(mine)
        assert chisquare(observed[keep], expected).pvalue > 0.001
        assert all(p.missing == () for p in mine)  # dense mode: no patterns
    one = got[str(draw.ids[0])]
    assert [name for name, _ in one.anchors] == ["age", "sex"]
    only_sex = draw_first_wave_anchors(draw, real, specs, seed=7, **{**kw, "anchors": ["sex"]})
    assert [name for name, _ in only_sex[str(draw.ids[0])].anchors] == ["sex"]
    with pytest.raises(ConfigError, match="nope"):
        draw_first_wave_anchors(draw, real, specs, seed=7, **{**kw, "anchors": ["nope"]})


def test_full_mode_patterns_per_wave_follow_the_cluster() -> None:
    real, specs = _real_for_anchors(), _specs(nullable=True, region=False)
    draw = _draw(2000)
    first = draw_first_wave_anchors(
        draw, real, specs, anchors=["sex"], demographics=[], cluster_column="cluster", seed=1
    )
    later = draw_patterns(draw, "2", real, specs, cluster_column="cluster", seed=1)
    assert later == draw_patterns(draw, "2", real, specs, cluster_column="cluster", seed=1)
    assert draw_patterns(draw, "2", real, _specs(), cluster_column="cluster", seed=1) == {}
    for t, pats in ((0, {rid: p.missing for rid, p in first.items()}), (1, later)):
        for c, want in ((1, 0.3), (2, 0.05)):
            who = [str(i) for i in draw.ids[draw.clusters[:, t] == c]]
            share = np.mean(["q1" in pats[rid] for rid in who])
            assert abs(share - want) < 4 * np.sqrt(want * (1 - want) / len(who)) + 0.02
            assert all(set(pats[rid]) <= {"q1", "age", "educ", "income"} for rid in who)
    rules = estimate_carry(
        {"1": real.assign(**{ID: range(len(real))}), "2": real.assign(**{ID: range(len(real))})},
        {"1": specs, "2": specs},
        ["1", "2"],
        ["1", "2"],
        id_column=ID,
    )
    assert {"sex", "q1", "age"} <= set(rules.between("1", "2"))  # the same frame twice
    carry = PanelCarry(rules, "1", anchors=first, patterns={"2": later})
    rid = next(r for r in later if "q1" in later[r])
    p1 = carry.row_profile(rid, "1", first[rid].cluster, None, None)
    assert p1 == first[rid]
    p2 = carry.row_profile(rid, "2", 1, {"sex": 1, "q1": None, "age": 30}, "1")
    assert "q1" in p2.missing  # q1 was NA: not carried, the wave's pattern leaves it empty
    p2 = carry.row_profile(rid, "2", 1, {"sex": 1, "q1": 4, "age": 30}, "1")
    assert "q1" not in p2.missing and dict(p2.anchors)["q1"] == 4  # carried wins
    key = carry.request_key(rid, "1", None)
    assert key != carry.request_key(rid, "1", "0") and "sex" in key
    assert carry.request_key(rid, "2", "1") != carry.request_key(rid, "2", None)


# ----------------------------------------------------------------------------------------------
# on the panels of the tests and the demo
def test_persistent_attitude_items_of_a_panel_are_not_carried() -> None:
    frames = make_panel(1500, 3, seed=2)
    specs = [RowSpec(q, "an ordinal", codes=(1, 2, 3, 4, 5)) for q in ITEMS]
    r = estimate_carry(frames, {w: specs for w in frames}, list(frames), list(frames), id_column=ID)
    assert all(step == {} for step in r.steps)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from panelsynth.demo import build_demo

    return build_demo(tmp_path_factory.mktemp("carrydemo") / "ws", n_respondents=400).workspace.root


def test_on_the_demo_panel_sex_is_fixed_and_age_shifts(demo: Path) -> None:
    from panelsynth.config import load_config
    from panelsynth.data import read_csv_any
    from panelsynth.pydantic_models.rows import wave_row_specs
    from panelsynth.run.wave import load_wave_for_run
    from panelsynth.workspace import Workspace

    ws = Workspace(demo)
    config = load_config(ws.config_path)
    study = [str(w) for w in config.study.waves]
    requested = ["1", "3", "5"]
    specs = {w: wave_row_specs(load_wave_for_run(ws, w, config, "full")) for w in requested}
    frames = {w: read_csv_any(ws.original_data(w)) for w in study[:5]}
    r = estimate_carry(frames, specs, study, requested, id_column=ID)
    for step in r.steps:
        assert step["sex"].kind == "fixed"
        assert (step["age"].low, step["age"].high) in {(0, 0), (1, 1)}  # +1 every two waves
        assert set(step) == {"sex", "age"}  # attitudes and identity items change sometimes
    for a, b in (("1", "3"), ("3", "5")):
        rule = r.between(a, b)
        assert rule["sex"].kind == "fixed" and rule["age"].kind == "shift"
        prev = frames[a].set_index(ID)
        cur = frames[b].set_index(ID)
        both = prev.index.intersection(cur.index)
        kept = [rule["age"].keeps(prev.at[i, "age"], cur.at[i, "age"]) for i in both]
        assert np.mean(kept) >= FIXED_SHARE
    assert (r.between("1", "5")["age"].low, r.between("1", "5")["age"].high) == (2, 2)


def test_text_codes_and_nonnumeric_answers() -> None:
    rng = np.random.default_rng(1)
    n = 100
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    one = pd.DataFrame({ID: np.arange(n), "sex": sex, "cluster": 1})
    two = one.assign(sex=np.where(np.arange(n) < 3, "refused", sex))  # not a code: no answer
    specs = [
        RowSpec("sex", "a binary", codes=("F", "M")),
        RowSpec("cluster", "cluster", codes=(1,)),
    ]
    r = estimate_carry({"1": one, "2": two}, {"1": specs, "2": specs}, ["1", "2"], ["1", "2"],
                       id_column=ID)  # fmt: skip
    rule = r.between("1", "2")["sex"]
    assert rule.kind == "fixed" and rule.allowed("F") == "F" and rule.allowed("x") is None
