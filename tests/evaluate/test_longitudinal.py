"""Longitudinal evaluation of synthetic panels (issue 19, item 4)."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from panelgen import ITEMS, make_panel

from panelsynth.evaluate.longitudinal import (
    CART_PANEL,
    HOLDOUT,
    SYNTHETIC,
    UNLINKED,
    panel_figures,
    panel_section,
    real_half_floor,
    retention,
    split_respondents,
    stability,
    trajectory_c2st,
    transitions,
)
from panelsynth.evaluate.panel_baselines import cart_panel, unlinked_panel
from panelsynth.evaluate.panel_plot import stability_plot
from panelsynth.panel import PanelDataError

ID = "respondent_id"
WAVES = ["1", "2", "3"]


@pytest.fixture(scope="module")
def real() -> dict[str, pd.DataFrame]:
    return make_panel(900, 3, seed=21, persistence=0.75)


def _shuffled(frames, seed=0):
    """Each wave's rows given to other respondents (ids permuted within the wave)."""
    rng = np.random.default_rng(seed)
    out = {}
    for w, f in frames.items():
        f = f.copy()
        f[ID] = rng.permutation(f[ID].to_numpy())
        out[w] = f
    return out


def test_stability_error_zero_for_a_copy_and_large_for_shuffled_waves(real):
    copy = {w: f.copy() for w, f in real.items()}
    fig = panel_figures(real, copy, WAVES, id_column=ID, items=ITEMS, c2st=False)
    assert fig["stability_error_unchanged"] == 0.0
    assert fig["stability_error_spearman"] == 0.0
    assert fig["transition_fidelity"] == 1.0
    assert fig["retention_max_abs_diff"] == 0.0
    assert fig["mean_spearman_real"] > 0.5  # the test panel has persistence

    shuffled = panel_figures(real, _shuffled(real), WAVES, id_column=ID, items=ITEMS, c2st=False)
    assert shuffled["stability_error_unchanged"] > 0.1
    assert shuffled["stability_error_spearman"] > 0.1


def test_stability_per_item_and_pair(real):
    st = stability(real, real, ["1", "3"], id_column=ID, items=[*ITEMS, "not_there"])
    assert list(st["pair"].unique()) == ["1-3"] and list(st["item"]) == ITEMS
    la = real["1"].set_index(ID)
    lb = real["3"].set_index(ID)
    both = la.index.intersection(lb.index)
    want = float((la.loc[both, "q1"] == lb.loc[both, "q1"]).mean())
    assert st.loc[st["item"] == "q1", "unchanged_real"].item() == pytest.approx(want)
    rho = pd.Series(la.loc[both, "q1"].to_numpy()).corr(
        pd.Series(lb.loc[both, "q1"].to_numpy()), method="spearman"
    )
    assert st.loc[st["item"] == "q1", "spearman_real"].item() == pytest.approx(rho)


def test_transition_fidelity_and_retention_see_a_wrong_structure(real):
    wrong = {w: f.copy() for w, f in real.items()}
    f2 = wrong["2"]
    flip = f2.index[: len(f2) // 3]
    f2.loc[flip, "cluster"] = 3 - f2.loc[flip, "cluster"]
    wrong["3"] = wrong["3"].iloc[: len(wrong["3"]) // 2]  # half the wave-3 respondents drop
    fid, tables = transitions(real, wrong, WAVES, id_column=ID)
    assert fid < 0.9 and tables[0]["score"] < 0.8 and len(tables[0]["table"]) == 4
    ret = retention(real, wrong, WAVES, id_column=ID)
    assert set(ret["prev_cluster"]) == {1, 2}
    assert ret.loc[ret["pair"] == "2-3", "abs_diff"].max() > 0.2
    assert ret.loc[ret["pair"] == "1-2", "abs_diff"].max() == 0.0


def test_trajectory_c2st_separates_shuffled_panels(real):
    other = make_panel(900, 3, seed=22)
    same = trajectory_c2st(real, other, WAVES, id_column=ID, items=ITEMS)
    shuffled = trajectory_c2st(real, _shuffled(other), WAVES, id_column=ID, items=ITEMS)
    assert same.name == "c2st_trajectory"
    assert same.score > 0.6
    assert shuffled.score < same.score - 0.2


def test_unlinked_pseudo_panel_pairs_within_the_cluster_path(real):
    cut = unlinked_panel(real, WAVES, id_column=ID, rng=np.random.default_rng(0))
    for a, b in zip(WAVES, WAVES[1:], strict=False):
        prev = cut[a].set_index(ID)["cluster"]
        cur = cut[b]
        linked = cur[cur[ID].isin(prev.index)]
        # a linked row's prev_cluster is its partner's cluster in the previous wave
        has_prev = linked["prev_cluster"].notna()
        assert (
            linked.loc[has_prev, "prev_cluster"].to_numpy()
            == prev.loc[linked.loc[has_prev, ID]].to_numpy()
        ).all()
        # answers and clusters are the wave's own rows
        assert sorted(cur["q1"]) == sorted(real[b]["q1"])
    # the links are new: few respondents keep their real partner's answers
    fig = panel_figures(real, cut, WAVES, id_column=ID, items=ITEMS, c2st=False)
    assert fig["stability_error_unchanged"] > 0.1
    assert fig["transition_fidelity"] > 0.9


def test_cart_panel_conditions_on_previous_answers(real):
    skeleton = {
        w: f[[ID, "cluster"] + (["prev_cluster"] if w != "1" else [])] for w, f in real.items()
    }
    cart, notes = cart_panel(
        real, skeleton, WAVES, id_column=ID, items=ITEMS, rng=np.random.default_rng(3)
    )
    assert notes == []
    for w in WAVES:
        assert list(cart[w][ID]) == list(real[w][ID])
        assert (cart[w]["cluster"] == real[w]["cluster"]).all()
        assert cart[w][ITEMS].notna().all().all()
    fig = panel_figures(real, cart, WAVES, id_column=ID, items=ITEMS, c2st=False)
    assert fig["mean_spearman_synthetic"] > 0.3  # carries persistence, unlike the unlinked one
    assert fig["stability_error_unchanged"] < 0.15


def test_floor_splits_respondents_and_reports_spread(real):
    a, b = split_respondents(real, ID, np.random.default_rng(0))
    for w in WAVES:
        assert not set(a[w][ID]) & set(b[w][ID])
        assert len(a[w]) + len(b[w]) == len(real[w])
    ids_a = set().union(*(set(f[ID]) for f in a.values()))
    ids_b = set().union(*(set(f[ID]) for f in b.values()))
    assert not ids_a & ids_b  # a person's waves stay in one half
    floor = real_half_floor(real, WAVES, id_column=ID, items=ITEMS, repeats=3)
    spread = floor["floor_spread"]["stability_error_unchanged"]
    assert len(spread["values"]) == 3 and spread["min"] <= spread["mean"] <= spread["max"]
    assert 0 < spread["max"] < 0.1 and "c2st_trajectory" in floor


def test_panel_section_is_json_and_scores_every_candidate(real):
    syn = make_panel(600, 3, seed=5)
    syn = {w: f.assign(**{ID: "S" + f[ID].astype(str)}) for w, f in syn.items()}
    sec = panel_section(real, syn, id_column=ID, items=ITEMS, floor_repeats=2)
    json.dumps(sec, allow_nan=False)
    assert sec["pairs"] == ["1-2", "2-3"]
    assert set(sec["candidates"]) == {SYNTHETIC, HOLDOUT, UNLINKED, CART_PANEL}
    s = sec["summary"]
    assert s["stability_error_unchanged"][UNLINKED] > 0.1
    assert s["stability_error_unchanged"][SYNTHETIC] < 0.1
    assert s["c2st_trajectory"][SYNTHETIC] > s["c2st_trajectory"][UNLINKED]
    png = stability_plot(sec, title="panel 1-3")
    from PIL import Image

    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.height > 100


def test_panel_section_errors(real):
    with pytest.raises(PanelDataError, match="two or more generated waves"):
        panel_section(real, {"1": real["1"]}, id_column=ID, items=ITEMS)
    no_id = {w: f.drop(columns=[ID]) for w, f in real.items()}
    with pytest.raises(PanelDataError, match="synthetic wave 1 has no id column"):
        panel_section(real, no_id, id_column=ID, items=ITEMS)
