from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from imputehelpers import N_SMALL

from panelsynth.demo import simulate_panel
from panelsynth.demo.persistence import Persistence
from panelsynth.impute.baselines import HotDeck
from panelsynth.impute.completed import CompletedSet
from panelsynth.impute.demo_reference import BayesReference, distance_from_bayes
from panelsynth.impute.gaps import find_gaps, load_panel
from panelsynth.impute.mask import mask_panel
from panelsynth.workspace import Workspace

ITEM = "vaccimportant"


@pytest.fixture(scope="module")
def masked_demo(small_demo_root):
    panel = load_panel(Workspace(small_demo_root))
    masked = mask_panel(panel, cell_share=0.2, wave_share=0.2, seed=2)
    ref = BayesReference(simulate_panel(N_SMALL, seed=2024), ITEM)
    return panel, masked, ref, ref.predictive(masked.panel, masked.truth)


def test_the_predictive_covers_every_hidden_answer_of_the_item(masked_demo) -> None:
    panel, masked, ref, pred = masked_demo
    hidden = masked.truth[masked.truth["variable"] == ITEM]
    assert len(pred) == len(hidden) and set(pred["kind"]) == {"item", "wave"}
    probs = pred.filter(regex=r"^p\d+$").to_numpy()
    assert probs.shape[1] == 5
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    # the true class shifts the predictive: class 1 (positive) expects higher importance
    truth_cls = {}
    for w in panel.order:
        t = ref.sim.truth[w]
        truth_cls.update(
            {(w, str(r)): c for r, c in zip(t["respondent_id"], t["true_class"], strict=True)}
        )
    cls = np.array(
        [truth_cls[(w, r)] for w, r in pred[["wave", "respondent_id"]].itertuples(index=False)]
    )
    expect = probs @ np.arange(1, 6)
    assert expect[cls == 1].mean() > expect[cls == 2].mean() + 0.5
    with pytest.raises(ValueError, match="not a simulated item"):
        BayesReference(ref.sim, "age")


def test_distance_from_bayes_ranks_a_constant_imputation_far(masked_demo) -> None:
    panel, masked, ref, pred = masked_demo
    bayes = distance_from_bayes(pred, masked.truth, ref.impute_item(pred, 5, seed=1), ITEM)
    const = [
        CompletedSet(k, pred[["wave", "respondent_id"]].assign(variable=ITEM, value=1.0), {})
        for k in (1, 2)
    ]
    far = distance_from_bayes(pred, masked.truth, const, ITEM)
    assert bayes["pooled_tvd"] < far["pooled_tvd"]
    assert bayes["expectation_gap"] < far["expectation_gap"]
    assert bayes["excess_log_loss"] < far["excess_log_loss"]
    assert bayes["bayes_mode_accuracy"] == far["bayes_mode_accuracy"] > 0.3
    gaps = find_gaps(masked.panel)
    hd = distance_from_bayes(pred, masked.truth, HotDeck().impute(masked.panel, gaps, 3, 0), ITEM)
    assert hd["n_cells"] == len(pred) and 0.0 <= hd["mode_agreement"] <= 1.0


def test_the_predictive_uses_the_persons_earlier_answer(masked_demo) -> None:
    """With persistence, the true hidden answers are more likely under the reference than under
    one that knows only the classes (the same process without persistence), and the reference is
    calibrated: its realised log score is its expected one (minus its entropy)."""
    panel, masked, ref, pred = masked_demo
    no_persistence = Persistence(0.0, 0.0, (), 0.0, 0.0)
    blind_sim = dataclasses.replace(
        ref.sim, params=dataclasses.replace(ref.sim.params, persistence=no_persistence)
    )
    blind = BayesReference(blind_sim, ITEM).predictive(masked.panel, masked.truth)
    key = pred[["wave", "respondent_id"]]
    hidden = masked.truth[masked.truth["variable"] == ITEM]
    real = key.merge(hidden, on=["wave", "respondent_id"], how="left")["value"].to_numpy()
    idx = real.astype(int) - 1
    score = np.log(pred.filter(regex=r"^p\d+$").to_numpy()[np.arange(len(idx)), idx])
    score_blind = np.log(blind.filter(regex=r"^p\d+$").to_numpy()[np.arange(len(idx)), idx])
    for kind in ("item", "wave"):
        sel = (pred["kind"] == kind).to_numpy()
        assert score[sel].mean() > score_blind[sel].mean() + 0.02, kind
    probs = pred.filter(regex=r"^p\d+$").to_numpy()
    expected = (probs * np.log(probs)).sum(axis=1).mean()
    assert score.mean() == pytest.approx(expected, abs=0.1)
