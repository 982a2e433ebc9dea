"""The Bayes-optimal imputation of one demo item, and how far each method is from it (issue 15).

On the demo the generating process is known (:mod:`panelsynth.demo.simulator`): given the latent
class, a wave's answers are independent ordered-logit draws, item non-response depends on the
class, age on the wave-1 class, and the class follows a Markov chain with class-dependent dropout
and wave skips. A person's answers to an item persist across waves
(:mod:`panelsynth.demo.persistence`): two answers ``lag`` waves apart are linked by the joint
table ``P(x_s, x_t | c_s, c_t)`` of the latent person effect + AR(1) score. The posterior
predictive of a hidden answer ``x_j`` in wave ``W`` under the true parameters uses, with ``L``
the respondent's last observed wave before ``W``:

* a hidden **answer** (kind ``item``): the respondent's other data of wave ``W`` exactly as the
  simulator's Bayes classifier uses them (every item answered / hidden-but-answered / not
  answered, age, outcome, and the fact that ``x_j`` itself was answered) and the status of the
  item in wave ``L`` (its answer, linked to ``x_j`` by the joint table; refused or don't know;
  hidden); the classes of ``L`` and ``W`` follow the true chain given participation in both
  and absence between, and age enters through the wave-1 class;
* a hidden **wave** (kind ``wave``): the class posterior of wave ``L`` carried forward through
  the true chain (stay in the panel, skip every wave between, take part in ``W``) and the item's
  answer in ``L`` linked to ``x_j`` by the joint table.

Other waves (and, for a hidden answer, the other answers of wave ``L``) are not used: the
reference is optimal given that information. It draws ``m`` imputations from the predictive;
:func:`distance_from_bayes` says how far a method's imputations of the item are from it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from panelsynth.demo.persistence import pair_table
from panelsynth.demo.simulator import (
    AGE_MIN,
    OUTCOME,
    SimulatedPanel,
    _age_pmf_wave,
    _age_pmf_wave1,
    _participation_joint,
)
from panelsynth.impute.completed import CompletedSet
from panelsynth.impute.gaps import Panel


class BayesReference:
    """Posterior predictive of one item's hidden answers under the simulator's true parameters."""

    name = "Bayes-optimal"

    def __init__(self, sim: SimulatedPanel, item: str) -> None:
        names = [it.name for it in sim.params.items]
        if item not in names:
            raise ValueError(f"{item!r} is not a simulated item ({', '.join(names)})")
        self.sim = sim
        self.item = item
        self.params = sim.params
        self._specs = {it.name: it for it in sim.params.items}
        self._joints = _participation_joint(sim.params)
        self._age1 = _age_pmf_wave1(sim.params)
        self._pmf = self._specs[item].pmf()
        self._pairs: dict[int, np.ndarray] = {}

    def _pair(self, lag: int) -> np.ndarray:
        """``P(x_s, x_t | class_s, class_t)`` of the item ``lag`` waves apart, ``(2, 2, K, K)``."""
        if lag not in self._pairs:
            rho = self.params.persistence.latent_corr(self.item, lag)
            self._pairs[lag] = pair_table(self._pmf, rho)
        return self._pairs[lag]

    def _wave_terms(self, masked: Panel, hidden: set, wave: str, rid: str) -> np.ndarray:
        """log P(wave data except age | class), shape ``(2,)``; the item counts as answered."""
        w = int(wave)
        out = np.zeros(2)
        row = masked.waves[wave].frame.loc[rid]
        for it in self.params.items_in_wave(w):
            if it.name not in row.index:
                continue
            p_miss = np.asarray(it.missing, dtype=float)
            x = row.get(it.name, np.nan)
            if pd.notna(x):
                out += np.log((1.0 - p_miss) * it.pmf()[:, int(x) - 1])
            elif (wave, rid, it.name) in hidden or it.name == self.item:
                out += np.log(1.0 - p_miss)
            else:
                out += np.log(p_miss)
        if w >= self.params.outcome_from_wave:
            p_yes = np.asarray(self.params.outcome_yes, dtype=float)
            p_miss = np.asarray(self.params.outcome_missing, dtype=float)
            y = row.get(OUTCOME, np.nan)
            if pd.notna(y):
                out += np.log((1.0 - p_miss) * (p_yes if int(y) == 1 else 1.0 - p_yes))
            elif (wave, rid, OUTCOME) in hidden:
                out += np.log(1.0 - p_miss)
            else:
                out += np.log(p_miss)
        return out

    def _age_given_c1(self, masked: Panel, wave: str, rid: str) -> np.ndarray:
        """P(the wave's age | class in wave 1), shape ``(2,)`` (ones when age is not known)."""
        age = masked.waves[wave].frame.loc[rid].get("age", np.nan)
        if pd.isna(age):
            return np.ones(2)
        return _age_pmf_wave(self._age1, self.params.age_offset(int(wave)))[:, int(age) - AGE_MIN]

    def _class_loglik(self, masked: Panel, hidden: set, wave: str, rid: str) -> np.ndarray:
        """log P(class, wave data) for the respondent's row of ``wave`` in the masked panel."""
        joint = self._joints[int(wave) - 1]  # (class in wave 1, class in this wave)
        age = self._age_given_c1(masked, wave, rid)
        return np.log(age @ joint / joint.sum()) + self._wave_terms(masked, hidden, wave, rid)

    def _chain(self, start: np.ndarray, last: int, wave: int) -> np.ndarray:
        """Carry ``start`` (``(..., 2)`` over the class in wave ``last``) to wave ``wave``: stay in
        the panel, skip every wave between and take part in ``wave``; a new last axis per class."""
        trans = np.asarray(self.params.transition, dtype=float)
        stay = 1.0 - np.asarray(self.params.dropout, dtype=float)
        skip = np.asarray(self.params.wave_skip, dtype=float)
        alpha = start[..., :, None] * np.eye(2)  # (..., class in last, class now)
        for t in range(last + 1, wave + 1):
            alpha = (alpha * stay) @ trans
            alpha = alpha * (skip if t < wave else 1.0 - skip)
        return alpha

    def _item_link(self, masked: Panel, hidden: set, last: str, rid: str, lag: int) -> np.ndarray:
        """P(the item's status in wave ``last``, x_now = b | class then, class now), ``(2, 2, K)``
        — its answer there and the hidden answer are linked by the person's latent score."""
        pmf = self._pmf
        if int(last) in self._specs[self.item].absent_waves:
            return np.broadcast_to(pmf[None, :, :], (2, *pmf.shape))
        p_miss = np.asarray(self._specs[self.item].missing, dtype=float)
        x = masked.waves[last].frame.loc[rid].get(self.item, np.nan)
        if pd.notna(x):
            return (1.0 - p_miss)[:, None, None] * self._pair(lag)[:, :, int(x) - 1, :]
        answered = (last, rid, self.item) in hidden
        p_status = (1.0 - p_miss) if answered else p_miss
        return p_status[:, None, None] * pmf[None, :, :]

    def predictive(self, masked: Panel, truth: pd.DataFrame) -> pd.DataFrame:
        """One row per hidden cell of the item: ``wave``, ``respondent_id``, ``kind`` and
        ``p1..pK`` (the posterior predictive of the codes ``1..K``)."""
        pmf = self._pmf
        p_ans = 1.0 - np.asarray(self._specs[self.item].missing, dtype=float)
        hidden = set(zip(truth["wave"], truth["respondent_id"], truth["variable"], strict=True))
        cells = truth[truth["variable"] == self.item]
        rows = []
        for wave, rid, kind in cells[["wave", "respondent_id", "kind"]].itertuples(index=False):
            before = masked.order[: masked.order.index(wave)]
            last = next((v for v in reversed(before) if rid in masked.waves[v].frame.index), None)
            if kind == "item":
                terms = self._wave_terms(masked, hidden, wave, rid)
                if last is None:
                    log_post = self._class_loglik(masked, hidden, wave, rid)
                    probs = np.exp(self._stable(log_post)) @ pmf
                else:
                    # (c1, class in ``last``) -> class now, weighted by this wave's age and data
                    prior = self._chain(
                        self._joints[int(last) - 1], int(last), int(wave)
                    )  # (c1, c_last, c_now)
                    age = self._age_given_c1(masked, wave, rid)
                    weight = np.einsum("a,abc->bc", age, prior) * np.exp(terms - terms.max())
                    link = self._item_link(masked, hidden, last, rid, int(wave) - int(last))
                    probs = np.einsum("bc,bck->k", weight, link)
            else:
                if last is None:
                    raise ValueError(f"hidden wave {wave} of {rid} has no observed wave before it")
                post = np.exp(self._stable(self._class_loglik(masked, hidden, last, rid)))
                weight = self._chain(post, int(last), int(wave)) * p_ans[None, :]
                x = masked.waves[last].frame.loc[rid].get(self.item, np.nan)
                asked = int(last) not in self._specs[self.item].absent_waves
                if asked and pd.notna(x):
                    a = int(x) - 1
                    link = self._pair(int(wave) - int(last))[:, :, a, :] / pmf[:, a, None, None]
                else:
                    link = np.broadcast_to(pmf[None, :, :], (2, *pmf.shape))
                probs = np.einsum("bc,bck->k", weight, link)
            rows.append((wave, rid, kind, *(probs / probs.sum())))
        cols = ["wave", "respondent_id", "kind", *[f"p{c}" for c in range(1, pmf.shape[1] + 1)]]
        return pd.DataFrame(rows, columns=cols)

    @staticmethod
    def _stable(log_p: np.ndarray) -> np.ndarray:
        z = log_p - log_p.max()
        return z - np.log(np.exp(z).sum())

    def impute_item(self, pred: pd.DataFrame, m: int, seed: int) -> list[CompletedSet]:
        """``m`` draws from the predictive, as completed sets holding only the item's cells."""
        probs = pred.filter(regex=r"^p\d+$").to_numpy()
        cdf = np.cumsum(probs, axis=1)
        out = []
        for k in range(1, m + 1):
            rng = np.random.default_rng([int(seed), k])
            codes = (rng.random(len(pred))[:, None] >= cdf[:, :-1]).sum(axis=1) + 1
            cells = pred[["wave", "respondent_id"]].assign(
                variable=self.item, value=codes.astype(float)
            )
            out.append(CompletedSet(k, cells, {}))
        return out


def distance_from_bayes(
    pred: pd.DataFrame, truth: pd.DataFrame, sets: list[CompletedSet], item: str
) -> dict[str, float]:
    """How far a method's imputations of ``item`` are from the Bayes-optimal predictive.

    Returns:
        ``accuracy``, ``mae`` and ``tvd_hidden`` (pooled imputed values against the hidden
        answers) of the method on the hidden answers; ``bayes_mode_accuracy`` (the accuracy of
        the predictive's most likely code, the best any method can expect); ``mode_agreement``
        (share of imputed values equal to that code); ``expectation_gap`` (mean over cells of
        ``|mean_k imputed - E_bayes[x]|``); ``pooled_tvd`` (TVD of all imputed values against the
        predictive averaged over the cells); ``excess_log_loss`` (mean ``-log p_bayes(imputed)``
        minus the predictive's entropy: 0 in expectation for draws from the predictive, larger
        the further a method is from it).
    """
    probs = pred.filter(regex=r"^p\d+$").to_numpy()
    codes = np.arange(1, probs.shape[1] + 1)
    key = pred[["wave", "respondent_id"]]
    t = key.merge(truth[truth["variable"] == item], on=["wave", "respondent_id"], how="left")
    real = t["value"].to_numpy(dtype=float)
    mode = codes[probs.argmax(axis=1)]
    imputed = []
    for done in sets:
        c = done.cells[done.cells["variable"] == item]
        j = key.merge(c, on=["wave", "respondent_id"], how="left")
        imputed.append(j["value"].to_numpy(dtype=float))
    x = np.vstack(imputed)  # (m, cells)
    idx = np.clip(x.astype(int) - 1, 0, probs.shape[1] - 1)
    p_of = np.take_along_axis(np.broadcast_to(probs, (x.shape[0], *probs.shape)), idx[..., None], 2)
    entropy = -(probs * np.log(np.clip(probs, 1e-300, None))).sum(axis=1)
    pooled = np.array([(x == c).mean() for c in codes])
    return {
        "n_cells": int(len(pred)),
        "accuracy": float((x == real[None, :]).mean()),
        "mae": float(np.abs(x - real[None, :]).mean()),
        "tvd_hidden": float(
            0.5 * np.abs(pooled - np.array([(real == c).mean() for c in codes])).sum()
        ),
        "bayes_mode_accuracy": float((mode == real).mean()),
        "mode_agreement": float((x == mode[None, :]).mean()),
        "expectation_gap": float(np.abs(x.mean(axis=0) - probs @ codes).mean()),
        "pooled_tvd": float(0.5 * np.abs(pooled - probs.mean(axis=0)).sum()),
        "excess_log_loss": float((-np.log(p_of[..., 0]).mean(axis=0) - entropy).mean()),
    }
