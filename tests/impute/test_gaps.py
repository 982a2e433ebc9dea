from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from imputehelpers import hand_panel

from panelsynth.errors import DataError
from panelsynth.impute.gaps import (
    PanelWave,
    draw_missing_clusters,
    find_gaps,
    load_panel,
    transition_table,
)
from panelsynth.workspace import Workspace


def test_item_gaps_are_the_empty_cells_of_the_original_files(small_demo_root) -> None:
    ws = Workspace(small_demo_root)
    panel = load_panel(ws)
    gaps = find_gaps(panel)
    for w, pw in panel.waves.items():
        raw = pd.read_csv(ws.original_data(w))
        want = {
            (str(rid), v) for v in pw.variables for rid in raw.loc[raw[v].isna(), "respondent_id"]
        }
        got = set(
            map(
                tuple,
                gaps.cells.loc[gaps.cells["wave"] == w, ["respondent_id", "variable"]].to_numpy(),
            )
        )
        assert got == want and want


def test_absent_rows_are_re_entry_aware(small_demo_root) -> None:
    ws = Workspace(small_demo_root)
    panel = load_panel(ws)
    gaps = find_gaps(panel)
    present = {
        w: set(pd.read_csv(ws.original_data(w))["respondent_id"].astype(str)) for w in panel.order
    }
    order = panel.order
    for t, w in enumerate(order):
        before = set().union(*(present[x] for x in order[:t])) if t else set()
        later = set().union(*(present[x] for x in order[t + 1 :])) if t + 1 < len(order) else set()
        ab = gaps.absent[gaps.absent["wave"] == w]
        assert set(ab["respondent_id"]) == before - present[w]
        kinds = dict(zip(ab["respondent_id"], ab["kind"], strict=True))
        assert {r for r, k in kinds.items() if k == "skipped"} == (before - present[w]) & later
    assert (gaps.absent["kind"] == "skipped").any() and (gaps.absent["kind"] == "dropped").any()
    assert find_gaps(panel, dropouts=False).absent.empty


def test_wave_without_id_column_is_refused_with_one_line(demo_copy) -> None:
    path = demo_copy.original_data("2")
    raw = pd.read_csv(path)
    raw.drop(columns=["respondent_id"]).to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_panel(demo_copy)
    msg = str(err.value)
    assert "\n" not in msg
    assert "wave2.csv" in msg and "'respondent_id'" in msg and "study.id_column" in msg


def test_repeated_ids_and_unknown_items_are_refused(demo_copy) -> None:
    with pytest.raises(DataError, match="--items: nosuchitem"):
        load_panel(demo_copy, items=["nosuchitem"])
    path = demo_copy.original_data("1")
    raw = pd.read_csv(path)
    raw.loc[1, "respondent_id"] = raw.loc[0, "respondent_id"]
    raw.to_csv(path, index=False)
    with pytest.raises(DataError, match="appears more than once"):
        load_panel(demo_copy)


def test_missing_clusters_come_from_the_real_transition_table() -> None:
    panel = hand_panel(n=400)
    # wave 2: every continuing respondent of cluster 1 moves to 2, and cluster 2 stays
    f2 = panel.waves["2"].frame
    f2["cluster"] = 2
    f2.loc[f2.index[:4], "cluster"] = 1  # a few new 1s from cluster 1 (odd ids)
    table = transition_table(panel, "1", "2")
    n1 = (panel.waves["1"].frame.loc[f2.index, "cluster"] == 1).sum()
    assert table.loc[1, 1] == pytest.approx(2 / n1)  # ids 1 and 3 are odd -> cluster 1
    assert table.loc[2, 2] == pytest.approx(1.0 - 2 / (len(f2) - n1))
    gaps = find_gaps(panel)
    a = draw_missing_clusters(panel, gaps, seed=3)
    b = draw_missing_clusters(panel, gaps, seed=3)
    pd.testing.assert_series_equal(a["2"], b["2"])
    assert len(a["2"]) == 5
    from_2 = [r for r in a["2"].index if panel.waves["1"].frame.at[r, "cluster"] == 2]
    draws = np.concatenate(
        [draw_missing_clusters(panel, gaps, seed=s)["2"].loc[from_2].to_numpy() for s in range(200)]
    )
    assert (draws == 2).mean() == pytest.approx(table.loc[2, 2], abs=0.03)


def test_clusters_of_consecutive_missed_waves_chain_through_the_drawn_ones() -> None:
    panel = hand_panel(n=40)
    w2 = panel.waves["2"]
    # every respondent changes cluster at each wave (a deterministic transition table)
    w2.frame["cluster"] = 3 - panel.waves["1"].frame["cluster"].loc[w2.frame.index]
    frame3 = w2.frame.copy()
    frame3["cluster"] = 3 - frame3["cluster"]
    panel.waves["3"] = PanelWave("3", frame3, dict(w2.var_types), w2.metadata)
    gaps = find_gaps(panel)
    absent = gaps.absent
    assert set(absent.loc[absent["wave"] == "3", "respondent_id"]) == {"36", "37", "38", "39", "40"}
    assert set(absent["kind"]) == {"dropped"} and set(absent["last_wave"]) == {"1"}
    drawn = draw_missing_clusters(panel, gaps, seed=0)
    c1 = panel.waves["1"].frame["cluster"]
    for rid in drawn["3"].index:  # flipped twice: back to the wave-1 cluster
        assert drawn["2"][rid] == 3 - c1[rid]
        assert drawn["3"][rid] == c1[rid]
