from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest
from imputehelpers import hand_panel

from panelsynth.impute.baselines import (
    BASELINES,
    ChainedEquations,
    HotDeck,
    LastObservationCarriedForward,
)
from panelsynth.impute.completed import completed_frames
from panelsynth.impute.gaps import find_gaps, load_panel
from panelsynth.impute.mask import mask_panel
from panelsynth.impute.score import score_imputations
from panelsynth.workspace import Workspace

METHODS = [
    HotDeck,
    LastObservationCarriedForward,
    ChainedEquations,
    partial(ChainedEquations, matching="pmm"),
]


@pytest.mark.parametrize("method", METHODS)
def test_m_sets_differ_and_the_same_seed_reproduces_them(method) -> None:
    panel = hand_panel(n=60)
    gaps = find_gaps(panel)
    a = method().impute(panel, gaps, 3, seed=11)
    b = method().impute(panel, gaps, 3, seed=11)
    assert [s.k for s in a] == [1, 2, 3]
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x.cells, y.cells)
    values = [tuple(s.cells["value"].astype(float)) for s in a]
    assert len(set(values)) == 3
    todo = gaps.all_cells(panel)
    for s in a:  # exactly the gaps, each once, inside the allowed codes
        assert len(s.cells) == len(todo)
        assert set(map(tuple, s.cells[["wave", "respondent_id", "variable"]].to_numpy())) == set(
            map(tuple, todo[["wave", "respondent_id", "variable"]].to_numpy())
        )
        assert set(s.cells["value"].astype(float)) <= {1.0, 2.0, 3.0, 4.0}


@pytest.mark.parametrize("method", METHODS)
def test_an_item_without_missing_answers_is_left_alone(method) -> None:
    panel = hand_panel(n=60)
    gaps = find_gaps(panel, dropouts=False)
    assert panel.waves["1"].frame["c"].notna().all()
    for s in method().impute(panel, gaps, 2, seed=1):
        assert "c" not in set(s.cells["variable"])
        frames = completed_frames(panel, s)
        for w, pw in panel.waves.items():
            pd.testing.assert_series_equal(
                frames[w]["c"].astype(float), pw.frame["c"], check_names=False
            )
            observed = pw.frame["a"].notna()
            assert (frames[w].loc[observed, "a"].astype(float) == pw.frame.loc[observed, "a"]).all()


def test_locf_carries_the_last_answer_and_hot_deck_stays_in_the_cluster() -> None:
    panel = hand_panel(n=60)
    gaps = find_gaps(panel)
    absent = gaps.absent_ids("2")
    s = LastObservationCarriedForward().impute(panel, gaps, 1, seed=0)[0]
    w2 = s.cells[(s.cells["wave"] == "2") & s.cells["respondent_id"].isin(absent)]
    for rid, var, val in w2[["respondent_id", "variable", "value"]].itertuples(index=False):
        last = panel.waves["1"].frame.at[rid, var]
        if pd.notna(last):
            assert val == last
    # variable c is 1 in cluster 1 and 4 in cluster 2: a within-cluster donor keeps that
    h = HotDeck().impute(panel, gaps, 1, seed=0)[0]
    cc = h.cells[(h.cells["variable"] == "c") & (h.cells["wave"] == "2")]
    drawn = h.clusters["2"]
    for rid, val in cc[["respondent_id", "value"]].itertuples(index=False):
        assert val == (1.0 if drawn[rid] == 1 else 4.0)


def test_baselines_beat_random_answers_on_the_demo(small_demo_root) -> None:
    panel = load_panel(Workspace(small_demo_root))
    masked = mask_panel(panel, seed=3)
    gaps = find_gaps(masked.panel)
    ncat = {"vaccimportant": 5, "vaccsafe": 5, "howoftenvaccine": 4}
    truth = masked.truth[masked.truth["variable"].isin(list(ncat))]
    random_acc = float(np.mean([1 / k for k in ncat.values()]))  # uniform guesses
    for method in (HotDeck(), ChainedEquations(), ChainedEquations(matching="pmm")):
        sets = method.impute(masked.panel, gaps, 2, seed=1)
        res = score_imputations(panel, masked.panel, truth, sets, method=method.name)
        accs = [res["variables"][v]["accuracy"] for v in ncat]
        assert np.mean(accs) > random_acc + 0.03, (method.name, accs, random_acc)


def test_locf_does_not_carry_item_gaps() -> None:
    panel = hand_panel(n=60)
    # wave 2: respondent 8's answer to "a" is missing; in wave 1 it was observed
    f1, f2 = panel.waves["1"].frame, panel.waves["2"].frame
    f1.loc["8", "a"] = 1.0
    f2.loc["8", "cluster"] = 2  # a cluster whose donors answer 3 or 4
    f2.loc["8", "a"] = np.nan
    gaps = find_gaps(panel)  # absent rows of wave 2 are carried, the item gap is not
    assert len(gaps.absent_ids("2")) == 5
    for s in LastObservationCarriedForward().impute(panel, gaps, 3, seed=0):
        cell = s.cells[(s.cells["wave"] == "2") & (s.cells["respondent_id"] == "8")]
        assert cell.loc[cell["variable"] == "a", "value"].item() in (3.0, 4.0)


def test_pmm_imputes_observed_answers_of_the_wave() -> None:
    panel = hand_panel(n=80)
    panel.waves["1"].frame.loc[panel.waves["1"].frame["a"] == 2, "a"] = 1.0  # code 2 unused
    gaps = find_gaps(panel, dropouts=False)
    s = ChainedEquations(matching="pmm").impute(panel, gaps, 1, seed=3)[0]
    a1 = s.cells[(s.cells["wave"] == "1") & (s.cells["variable"] == "a")]["value"].astype(float)
    assert len(a1) and set(a1) <= set(panel.waves["1"].frame["a"].dropna())
    assert 2.0 not in set(a1)
    with pytest.raises(ValueError, match="matching"):
        ChainedEquations(matching="nearest")


def test_the_registry_builds_every_baseline() -> None:
    names = {key: factory().name for key, factory in BASELINES.items()}
    assert names == {
        "hot-deck": "hot-deck",
        "locf": "LOCF",
        "mice": "chained equations",
        "mice-pmm": "chained equations (PMM)",
    }
