"""The Bayes-optimal imputation of one demo item, and how far each method is from it (issue 15).

On the demo the generating process is known (:mod:`panelsynth.demo.simulator`): given the latent
class, a wave's answers are independent ordered-logit draws, item non-response depends on the
class, age on the wave-1 class, and the class follows a Markov chain with class-dependent dropout
and wave skips. The posterior predictive of a hidden answer ``x_j`` under the true parameters is
``P(x_j | data) = sum_c P(c | data) * pmf_j[c, x_j]``, with

* a hidden **answer** (kind ``item``): ``P(c | data)`` from the respondent's other answers in the
  same wave exactly as the simulator's Bayes classifier computes it (the wave's class prior among
  participants, every item answered / hidden-but-answered / not answered, age, outcome), and the
  fact that ``x_j`` itself was answered (the mask only hides answers);
* a hidden **wave** (kind ``wave``): the posterior of the class in the respondent's last observed
  wave ``L`` before it, carried forward through the true chain: staying in the panel (dropout),
  skipping every wave between ``L`` and the hidden one and taking part in the hidden one.
  Answers of waves before ``L`` are not used (the reference is optimal given wave ``L``).

The reference draws ``m`` imputations from this predictive; :func:`distance_from_bayes` says how
far a method's imputations of the item are from it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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

    def _class_loglik(self, masked: Panel, hidden: set, wave: str, rid: str) -> np.ndarray:
        """log P(class, wave data) for the respondent's row of ``wave`` in the masked panel."""
        w = int(wave)
        joint = self._joints[w - 1]
        out = np.log(joint.sum(axis=0) / joint.sum())
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
        age = row.get("age", np.nan)
        if pd.notna(age):
            c1_given_cw = joint / joint.sum(axis=0, keepdims=True)
            pmf = c1_given_cw.T @ _age_pmf_wave(self._age1, self.params.age_offset(w))
            out += np.log(pmf[:, int(age) - AGE_MIN])
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

    def predictive(self, masked: Panel, truth: pd.DataFrame) -> pd.DataFrame:
        """One row per hidden cell of the item: ``wave``, ``respondent_id``, ``kind`` and
        ``p1..pK`` (the posterior predictive of the codes ``1..K``)."""
        spec = self._specs[self.item]
        pmf = spec.pmf()
        p_ans = 1.0 - np.asarray(spec.missing, dtype=float)
        hidden = set(zip(truth["wave"], truth["respondent_id"], truth["variable"], strict=True))
        cells = truth[truth["variable"] == self.item]
        trans = np.asarray(self.params.transition, dtype=float)
        stay = 1.0 - np.asarray(self.params.dropout, dtype=float)
        skip = np.asarray(self.params.wave_skip, dtype=float)
        rows = []
        for wave, rid, kind in cells[["wave", "respondent_id", "kind"]].itertuples(index=False):
            if kind == "item":
                log_post = self._class_loglik(masked, hidden, wave, rid)
            else:
                before = masked.order[: masked.order.index(wave)]
                last = next(w for w in reversed(before) if rid in masked.waves[w].frame.index)
                alpha = np.exp(self._stable(self._class_loglik(masked, hidden, last, rid)))
                for t in range(int(last) + 1, int(wave) + 1):
                    alpha = (alpha * stay) @ trans
                    alpha = alpha * (skip if t < int(wave) else 1.0 - skip)
                log_post = np.log(alpha) + np.log(p_ans)
            post = np.exp(self._stable(log_post))
            rows.append((wave, rid, kind, *(post @ pmf)))
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
