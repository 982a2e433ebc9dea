"""Real trajectory examples for a later panel wave and their prompt text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from panelgen import ITEMS, make_panel

from panelsynth.panel import (
    PanelDataError,
    format_requested_row,
    format_trajectory,
    sample_trajectories,
    trajectory_log,
)

ID = "respondent_id"


@pytest.fixture(scope="module")
def panel() -> dict[str, pd.DataFrame]:
    return make_panel(600, 3, seed=1)


def test_sampled_per_transition_type_and_seeded(panel):
    prev = panel["1"]
    cur = panel["2"].drop(columns=["prev_cluster"])
    ex = sample_trajectories(
        prev, cur, id_column=ID, rng=np.random.default_rng(4), per_type=3, current_variables=ITEMS
    )
    types = [(e.prev_cluster, e.cluster) for e in ex]
    assert types == [(1, 1)] * 3 + [(1, 2)] * 3 + [(2, 1)] * 3 + [(2, 2)] * 3
    again = sample_trajectories(
        prev, cur, id_column=ID, rng=np.random.default_rng(4), per_type=3, current_variables=ITEMS
    )
    assert [e.respondent for e in ex] == [e.respondent for e in again]
    # the answers are that respondent's real answers in each wave
    for e in ex:
        p = prev[prev[ID] == int(e.respondent)].iloc[0]
        c = cur[cur[ID] == int(e.respondent)].iloc[0]
        assert e.previous == {q: p[q] for q in ITEMS}
        assert e.current == {q: c[q] for q in ITEMS}
        assert (p["cluster"], c["cluster"]) == (e.prev_cluster, e.cluster)
    log = trajectory_log(ex, ID)
    assert list(log.columns[:3]) == [ID, "prev_cluster", "cluster"] and "prev_q1" in log.columns


def test_a_missing_type_is_left_out_and_labels_are_not_answers(panel):
    prev, cur = panel["1"], panel["2"]
    cur = cur[~((cur["cluster"] == 2) & (cur["prev_cluster"] == 1))]
    ex = sample_trajectories(prev, cur, id_column=ID, rng=np.random.default_rng(0), per_type=5)
    assert {(e.prev_cluster, e.cluster) for e in ex} == {(1, 1), (2, 1), (2, 2)}
    assert len(ex) == 15
    assert all(set(e.current) == set(ITEMS) and set(e.previous) == set(ITEMS) for e in ex)


def test_text_of_one_example_and_one_requested_row():
    from panelsynth.panel import Trajectory

    ex = Trajectory("1001", 1, 2, {"q1": 3, "q2": np.nan}, {"q1": 4.0, "q2": 2})
    text = format_trajectory(ex, previous_wave="2", wave="3")
    assert text == (
        "Respondent who moved from cluster 1 to cluster 2:\n"
        "wave 2 (cluster 1):\nq1,q2\n3,NA\n"
        "wave 3 (cluster 2):\nq1,q2,cluster\n4,2,2"
    )
    row = format_requested_row(
        "S00012",
        path=[("1", 1), ("2", None), ("3", 2)],
        wave="3",
        cluster=2,
        previous={"q1": 3, "q2": None},
        previous_wave="1",
    )
    assert row.splitlines() == [
        "Respondent S00012 (respondent_id S00012): cluster path wave 1: 1, wave 2: absent, "
        "wave 3: 2; write their wave 3 answers in cluster 2.",
        "Their answers in wave 1:",
        "q1,q2",
        "3,NA",
    ]
    none = format_requested_row(
        "S1", path=[("1", 1)], wave="1", cluster=1, previous=None, previous_wave=None
    )
    assert none.endswith("They have no answers from an earlier wave.")


def test_unlinked_waves_are_a_typed_error(panel):
    cur = panel["2"].assign(**{ID: panel["2"][ID] + 10_000})
    with pytest.raises(PanelDataError, match="no respondent is in both waves"):
        sample_trajectories(panel["1"], cur, id_column=ID, rng=np.random.default_rng(0))
    with pytest.raises(PanelDataError, match="no id column"):
        sample_trajectories(
            panel["1"].drop(columns=[ID]), cur, id_column=ID, rng=np.random.default_rng(0)
        )
