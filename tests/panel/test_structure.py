"""The structure the host guarantees for a synthetic panel (issue 19, item 2)."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from panelgen import make_panel, presence_matrix, reentry_rate

from panelsynth.errors import ConfigError, DataError
from panelsynth.panel import (
    PanelDataError,
    PanelRequestError,
    draw_panel,
    estimate_structure,
    real_states,
    synthetic_ids,
)

ID = "respondent_id"


@pytest.fixture(scope="module")
def panel() -> dict[str, pd.DataFrame]:
    return make_panel(3000, 7, seed=3)


def _draw(frames, waves, n=10_000, seed=7):
    st = estimate_structure(frames, waves, list(frames), id_column=ID)
    return st, draw_panel(st, n, np.random.default_rng(seed))


def test_no_new_respondent_after_the_first_generated_wave(panel):
    _, d = _draw(panel, ["1", "3", "5", "7"], n=2000)
    tab = d.table(ID)
    first = set(tab.loc[(tab["wave"] == "1") & tab["present"], ID])
    assert len(first) == 2000
    later = set(tab.loc[(tab["wave"] != "1") & tab["present"], ID])
    assert later <= first
    assert set(d.path(ID)[ID]) == first
    assert (tab.groupby("wave")["present"].sum().loc[["3", "5", "7"]] < 2000).all()


def test_prev_cluster_is_the_cluster_of_the_studys_previous_wave(panel):
    _, d = _draw(panel, ["1", "3", "5", "7"], n=3000)
    path = d.path(ID).set_index([ID, "wave"])
    tab = d.table(ID)
    assert list(tab["wave"].unique()) == ["1", "3", "5", "7"]
    later = tab[tab["wave"] != "1"]
    prev_wave = later["wave"].map({"3": "2", "5": "4", "7": "6"})
    truth = path["cluster"].reindex(list(zip(later[ID], prev_wave, strict=True)))
    got = later["prev_cluster"].to_numpy()
    want = truth.to_numpy()
    same = np.array([(pd.isna(a) and pd.isna(b)) or a == b for a, b in zip(got, want, strict=True)])
    assert same.all()  # 100% of rows, absent-in-previous-wave rows included (empty)
    assert later["prev_cluster"].isna().any() and later["prev_cluster"].notna().any()
    # the first study wave has no previous wave
    assert tab.loc[tab["wave"] == "1", "prev_cluster"].isna().all()
    rows = d.wave_rows("5", ID)
    assert set(rows[ID]) == set(tab.loc[(tab["wave"] == "5") & tab["present"], ID])


def test_first_requested_wave_after_the_first_gets_a_real_like_prev_cluster(panel):
    st, d = _draw(panel, ["3", "5"], n=20_000)
    rows = d.wave_rows("3", ID)
    real = panel["3"]
    real_empty = real["prev_cluster"].isna().mean()
    assert abs(rows["prev_cluster"].isna().mean() - real_empty) < 0.02
    real_stay = (real["prev_cluster"] == real["cluster"]).fillna(False).mean()
    assert abs((rows["prev_cluster"] == rows["cluster"]).fillna(False).mean() - real_stay) < 0.02
    assert st.waves == ("3", "4", "5")


def test_reentry_at_the_real_rate(panel):
    _, d = _draw(panel, ["1", "3", "5", "7"])
    real_p = presence_matrix(panel, ID)
    syn_p = d.present
    for t in (2, 4, 6):  # waves 3, 5, 7 (re-entry from wave 2, 4, 6)
        r, nr = reentry_rate(real_p, t)
        s, ns = reentry_rate(syn_p, t)
        se = np.sqrt(r * (1 - r) / nr + r * (1 - r) / ns)
        assert 0.1 < r < 0.6
        assert abs(s - r) < 4 * se, (t, r, s, se)


def test_dropped_respondent_never_reappears_without_real_reentry():
    frames = make_panel(2000, 6, seed=5, reentry=0.0)
    assert reentry_rate(presence_matrix(frames, ID), 3)[0] == 0.0
    st, d = _draw(frames, ["1", "2", "4", "6"])
    assert all(v == 0.0 for r in st.reentry().values() for v in r.values())
    assert json.dumps(st.to_json())
    p = d.present
    dropped = ~p[:, :-1] & p[:, 1:]
    assert not dropped.any()
    assert (~p).any()  # people do drop out


def test_transition_tables_and_retention_within_noise(panel):
    st, d = _draw(panel, ["1", "2", "3", "4"], n=10_000)
    ids, mat, k = real_states(panel, ["1", "2", "3", "4"], id_column=ID)
    syn = d.clusters
    for t in (1, 2, 3):
        for c in (1, 2):
            r_from = mat[:, t - 1] == c
            s_from = syn[:, t - 1] == c
            # retention per previous cluster
            r_ret = (mat[r_from, t] > 0).mean()
            s_ret = (syn[s_from, t] > 0).mean()
            assert abs(r_ret - s_ret) < 0.05
            assert abs(st.retention()[f"{t}-{t + 1}"][c] - r_ret) < 1e-9
            # transition probabilities among those present in both waves
            rb, sb = r_from & (mat[:, t] > 0), s_from & (syn[:, t] > 0)
            r_stay = (mat[rb, t] == c).mean()
            s_stay = (syn[sb, t] == c).mean()
            se = np.sqrt(r_stay * (1 - r_stay) * (1 / rb.sum() + 1 / sb.sum()))
            assert abs(r_stay - s_stay) < 4 * se + 1e-9
    # the structure's own table matches the real counts
    cnt = st.counts[0]
    assert cnt[0, 0] == ((mat[:, 0] == 1) & (mat[:, 1] == 1)).sum()


def test_seeded_and_ids_stable(panel):
    _, a = _draw(panel, ["1", "2"], n=500, seed=11)
    _, b = _draw(panel, ["1", "2"], n=500, seed=11)
    _, c = _draw(panel, ["1", "2"], n=500, seed=12)
    assert (a.states == b.states).all() and not (a.states == c.states).all()
    assert list(a.ids[:2]) == ["S00001", "S00002"] and list(a.ids) == list(c.ids)
    assert synthetic_ids(123_456)[-1] == "S123456"


def test_scale_10000_by_7_is_fast(panel):
    t0 = time.perf_counter()
    st = estimate_structure(panel, list(panel), list(panel), id_column=ID)
    d = draw_panel(st, 10_000, np.random.default_rng(0))
    tab = d.table(ID)
    assert time.perf_counter() - t0 < 1.0
    assert len(tab) == 70_000 and d.states.nbytes <= 10_000 * 7 * 8


def test_errors_are_typed(panel):
    with pytest.raises(PanelRequestError, match="at least two waves") as e:
        estimate_structure(panel, ["3"], list(panel), id_column=ID)
    assert isinstance(e.value, ConfigError) and e.value.exit_code == 2
    with pytest.raises(PanelRequestError, match="not a wave of the study"):
        estimate_structure(panel, ["1", "9"], list(panel), id_column=ID)
    no_id = {w: f.drop(columns=[ID]) for w, f in panel.items()}
    with pytest.raises(PanelDataError, match="has no id column 'respondent_id'") as e:
        estimate_structure(no_id, ["1", "2"], list(panel), id_column=ID)
    assert isinstance(e.value, DataError) and "\n" not in str(e.value)
    unlinked = dict(panel)
    unlinked["3"] = panel["3"].assign(**{ID: panel["3"][ID] + 100_000})
    with pytest.raises(PanelDataError, match="no respondent of wave 1 is in wave 3"):
        estimate_structure(unlinked, ["1", "3"], list(panel), id_column=ID)
    with pytest.raises(PanelDataError, match="wave 2 lies between"):
        estimate_structure({w: panel[w] for w in ("1", "3")}, ["1", "3"], list(panel), id_column=ID)
    with pytest.raises(ConfigError, match="at least 1"):
        draw_panel(
            estimate_structure(panel, ["1", "2"], list(panel), id_column=ID),
            0,
            np.random.default_rng(0),
        )


def test_empty_transition_row_falls_back_to_the_wave_marginal_with_a_warning(caplog):
    frames = make_panel(800, 3, seed=9)
    # nobody in cluster 2 in wave 2: the row "present in cluster 2" of the pair 2 -> 3 is empty
    frames["2"] = frames["2"][frames["2"]["cluster"] == 1]
    with caplog.at_level("WARNING", logger="panelsynth"):
        st = estimate_structure(frames, ["1", "2", "3"], list(frames), id_column=ID)
    d = draw_panel(st, 2000, np.random.default_rng(0))
    assert st.transitions[1][1].sum() == pytest.approx(1.0)
    assert st.transitions[1][1, :2].sum() > 0  # the pooled row, not a crash
    pooled = st.counts[1][[0, 1]].sum(axis=0)
    assert st.transitions[1][1, :2] == pytest.approx(pooled[:2] / pooled.sum())
    assert any("present in cluster 2 in wave 2" in w for w in st.warnings)
    assert any("falls back" in r.message for r in caplog.records)
    assert d.present[:, 2].any()
