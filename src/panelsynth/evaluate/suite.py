"""The per-wave references the LLM output is read against: the real-vs-real floor and the
baselines (built here; each candidate is scored by :mod:`.scoring`).

Protocol (also written into every metrics JSON, see :data:`PROTOCOL`): the real wave R is split at
random, stratified by cluster, into two halves A and B of equal size.

- LLM synthetic S: fidelity against the full wave R (as the reference study); exact copies against
  R (and against B, size-matched to the holdout); DCR against R; TSTR tested on B.
- ``_real_holdout``: the half A treated as if it were synthetic, scored against B — the
  sampling-noise floor ("what a second sample of real respondents would score").
- baselines: fitted on A, |B| rows drawn, scored against B; exact copies and DCR against A, the
  data they were fitted on.

On large waves the references use a random sample of each half (:data:`REFERENCE_MAX_ROWS`);
they do not depend on the model, so the runner caches them on disk (:mod:`refcache`).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.evaluate.base import MetricResult
from panelsynth.evaluate.baselines import cart_baseline, marginal_baseline
from panelsynth.evaluate.columns import EvalColumns
from panelsynth.evaluate.membership import attack
from panelsynth.evaluate.privacy import DCRRatio
from panelsynth.evaluate.protocol import (
    CANDIDATES,
    CART,
    FLOOR_REPEATS,
    FLOOR_SPREAD_KEYS,
    HOLDOUT,
    MARGINAL,
    PROTOCOL,
    REFERENCE_MAX_ROWS,
    REFERENCES,
    SUMMARY_METRICS,
    SYNTHETIC,
)
from panelsynth.evaluate.scoring import (
    Scorecard,
    duplicate_share_sample,
    membership_result,
    per_cluster_scores,
    score_candidate,
    summary_values,
)


@dataclass
class Reference:
    """The per-wave references: real halves, baselines and their scorecards.

    ``half_a``/``half_b`` are the halves the references are scored on (a random sample of each
    half above :data:`REFERENCE_MAX_ROWS`); ``holdout_dcr`` is half A's distance to the closest
    record of the *whole* half B, the denominator of the LLM output's DCR ratio.
    """

    columns: EvalColumns
    half_a: pd.DataFrame
    half_b: pd.DataFrame
    baselines: dict[str, pd.DataFrame]
    holdout_dcr: dict[str, Any] | None
    cards: dict[str, Scorecard]
    target: str | None
    half_rows: int = 0
    #: Rows of the floor's sample and of each baseline (the synthetic set's size when given).
    size: int | None = None
    #: Per summary key, the floor's figure over :data:`FLOOR_REPEATS` seeded splits.
    floor_spread: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: "halves" (a split of the wave) or "held_out" (training vs held-out respondents).
    split: str = "halves"
    #: Rows of the whole first half (the training respondents of a held-out run) before the cap.
    fit_rows: int = 0

    @property
    def size_matched(self) -> dict[str, Any]:
        """Rows of the floor and baselines (recorded in every metrics JSON)."""
        return {
            "candidate_rows": self.size,
            "floor_rows": self.cards[HOLDOUT].rows if HOLDOUT in self.cards else None,
            "baseline_rows": {k: int(len(v)) for k, v in self.baselines.items()},
            "floor_repeats": len(next(iter(self.floor_spread.values()), {}).get("values", [])),
            "split": self.split,
        }

    @property
    def sampling(self) -> dict[str, Any]:
        """How many real rows the references used (recorded in every metrics JSON)."""
        if self.split == "held_out":  # "half" B is the held-out respondents, A the training ones
            used = len(self.half_b)
            return {
                "rows_per_half": self.half_rows,
                "rows_used_per_half": used,
                "cap_per_half": REFERENCE_MAX_ROWS,
                "sampled": used < self.half_rows or len(self.half_a) < self.fit_rows,
                "training_rows": self.fit_rows,
                "training_rows_used": len(self.half_a),
            }
        used = len(self.half_a)
        return {
            "rows_per_half": self.half_rows,
            "rows_used_per_half": used,
            "cap_per_half": REFERENCE_MAX_ROWS,
            "sampled": used < self.half_rows,
        }


def wave_rng(seed: int, wave: str) -> np.random.Generator:
    """A generator seeded by the run seed and the wave id (stable across runs and platforms)."""
    return np.random.default_rng([seed, zlib.crc32(str(wave).encode())])


def split_halves(
    real: pd.DataFrame, columns: EvalColumns, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random halves A, B of equal size, stratified by cluster."""
    c = columns.cluster
    a_idx: list[np.ndarray] = []
    b_idx: list[np.ndarray] = []
    groups = (
        [np.arange(len(real))]
        if c is None
        else [np.flatnonzero((real[c] == lab).to_numpy()) for lab in pd.unique(real[c])]
    )
    carry = 0
    for g in groups:
        g = rng.permutation(g)
        h = len(g) // 2
        if len(g) % 2:  # alternate which half receives the odd row
            h += carry
            carry = 1 - carry
        a_idx.append(g[:h])
        b_idx.append(g[h:])
    a = np.sort(np.concatenate(a_idx))
    b = np.sort(np.concatenate(b_idx))
    m = min(len(a), len(b))
    a = np.sort(rng.permutation(a)[:m])
    b = np.sort(rng.permutation(b)[:m])
    return real.iloc[a].reset_index(drop=True), real.iloc[b].reset_index(drop=True)


def build_reference(
    real: pd.DataFrame,
    columns: EvalColumns,
    *,
    wave: str,
    seed: int,
    target: str | None,
    size: int | None = None,
    split: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> Reference:
    """Split the real wave, fit the baselines on half A and score the references.

    Args:
        size: rows of the floor's sample and of each baseline — the synthetic set's size
            (size-matched); ``None``: the half's size.
        split: (training, held-out) respondents of a ``--holdout`` run, used instead of halves:
            the baselines are fitted on the training respondents and everything is scored
            against the held-out ones.
    """
    rng = wave_rng(seed, wave)
    if split is None:
        full_a, full_b = split_halves(real, columns, rng)
    else:
        full_a, full_b = (f.reset_index(drop=True) for f in split)
    a, b = cap_half(full_a, rng), cap_half(full_b, rng)
    n = len(b) if size is None else max(1, int(size))
    floor = a if size is None else _sample(a, n, rng)
    baselines = {
        MARGINAL: marginal_baseline(a, columns, n, rng),
        CART: cart_baseline(a, columns, n, rng, seed=seed),
    }
    if split is None:
        holdout_dcr = _holdout_dcr(columns, seed, full_a, full_b)
        # the references' own DCR ratios compare like with like: distances to a capped half
        ref_dcr = holdout_dcr if len(b) == len(full_b) else _holdout_dcr(columns, seed, a, b)
    else:  # the classic holdout comparison: distances of unseen respondents to the training set
        holdout_dcr = _holdout_dcr(columns, seed, full_b, full_a)
        capped = len(a) < len(full_a) or len(b) < len(full_b)
        ref_dcr = _holdout_dcr(columns, seed, b, a) if capped else holdout_dcr
    roles = {
        HOLDOUT: (floor, {"copy_ref": b, "dcr_ref": b}),
        **{name: (frame, {"copy_ref": a, "dcr_ref": a}) for name, frame in baselines.items()},
    }
    cards = {
        name: score_candidate(
            name,
            frame,
            columns,
            fidelity_real=b,
            utility_test=b,
            holdout_dcr=ref_dcr,
            target=target,
            seed=seed,
            **refs,
        )
        for name, (frame, refs) in roles.items()
    }
    fitted_on = "training respondents" if split is not None else "half A"
    tested_on = "held-out respondents" if split is not None else "half B"
    for name, frame in baselines.items():
        cards[name].metrics["membership_inference"] = membership_result(
            attack(
                columns,
                frame,
                a,
                b,
                seed=seed,
                members_are=f"{fitted_on} (the baseline's training rows)",
                non_members_are=tested_on,
            )
        )
    cards[HOLDOUT].metrics["membership_inference"] = MetricResult(
        "membership_inference",
        math.nan,
        error="not applicable: the floor's rows are real respondents (its own members)",
    )
    ref = Reference(
        columns,
        a,
        b,
        baselines,
        holdout_dcr,
        cards,
        target,
        len(full_b),
        size=size,
        split="held_out" if split is not None else "halves",
        fit_rows=len(full_a),
    )
    ref.floor_spread = floor_spread(
        cards[HOLDOUT],
        real,
        columns,
        wave=wave,
        seed=seed,
        target=target,
        size=n,
        split=(a, b) if split is not None else None,
    )
    return ref


def floor_spread(
    first: Scorecard,
    real: pd.DataFrame,
    columns: EvalColumns,
    *,
    wave: str,
    seed: int,
    target: str | None,
    size: int,
    split: tuple[pd.DataFrame, pd.DataFrame] | None,
    repeats: int | None = None,
) -> dict[str, dict[str, Any]]:
    """The floor's summary figures over seeded repeats: min, max, sd, mean and every value.

    Each repeat draws a new split of the wave into halves (or, for a held-out run whose split
    is fixed, a new sample of the training respondents) and scores a ``size``-row sample of
    A against B with the cheap fidelity metrics (``score_candidate(light=True)``): the spread
    covers :data:`FLOOR_SPREAD_KEYS`, the other figures are the first split's only.
    """
    repeats = FLOOR_REPEATS if repeats is None else repeats
    values: dict[str, list[float]] = {}
    cards = [first]
    for i in range(1, repeats):
        rng = np.random.default_rng([seed, zlib.crc32(str(wave).encode()), 1000 + i])
        if split is None:
            a, b = split_halves(real, columns, rng)
            a, b = cap_half(a, rng), cap_half(b, rng)
        else:
            a, b = split
        cards.append(
            score_candidate(
                HOLDOUT,
                _sample(a, size, rng),
                columns,
                fidelity_real=b,
                copy_ref=b,
                dcr_ref=b,
                utility_test=b,
                holdout_dcr=None,
                target=target,
                seed=seed + i,
                light=True,
            )
        )
    for card in cards:
        figures = summary_values(card)
        # Column Shapes by panelsynth's re-implementation on every split (the same formulas as
        # sdmetrics'; the repeats skip the sdmetrics report)
        figures["density_shape"] = (card.score("column_shapes"), None)
        for key, (v, _) in figures.items():
            if key in FLOOR_SPREAD_KEYS and not math.isnan(v):
                values.setdefault(key, []).append(float(v))
    out: dict[str, dict[str, Any]] = {}
    for key, vals in values.items():
        x = np.asarray(vals)
        out[key] = {
            "min": float(x.min()),
            "max": float(x.max()),
            "mean": float(x.mean()),
            "sd": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
            "values": [float(v) for v in x],
        }
    return out


def _sample(frame: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` random rows (every row, shuffled order kept stable, when ``n`` >= the frame)."""
    if n >= len(frame):
        return frame.reset_index(drop=True)
    pick = np.sort(rng.choice(len(frame), n, replace=False))
    return frame.iloc[pick].reset_index(drop=True)


def cap_half(half: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """A random sample of :data:`REFERENCE_MAX_ROWS` rows of a large half (the half otherwise)."""
    if len(half) <= REFERENCE_MAX_ROWS:
        return half
    pick = np.sort(rng.choice(len(half), REFERENCE_MAX_ROWS, replace=False))
    return half.iloc[pick].reset_index(drop=True)


def _holdout_dcr(
    columns: EvalColumns, seed: int, a: pd.DataFrame, b: pd.DataFrame
) -> dict[str, Any] | None:
    try:
        return DCRRatio(columns, seed=seed).distances(real=b, candidate=a)
    except Exception:  # recorded as NaN with a reason by DCRRatio
        return None


__all__ = [  # the protocol's and the scoring's names, importable from here as before
    "CANDIDATES",
    "CART",
    "FLOOR_REPEATS",
    "FLOOR_SPREAD_KEYS",
    "HOLDOUT",
    "MARGINAL",
    "PROTOCOL",
    "REFERENCES",
    "REFERENCE_MAX_ROWS",
    "SUMMARY_METRICS",
    "SYNTHETIC",
    "Reference",
    "Scorecard",
    "build_reference",
    "cap_half",
    "duplicate_share_sample",
    "floor_spread",
    "membership_result",
    "per_cluster_scores",
    "score_candidate",
    "split_halves",
    "summary_values",
    "wave_rng",
]
