"""Score a candidate data set (LLM output, real holdout half, baseline) with every metric.

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

from panelsynth.evaluate.baselines import cart_baseline, marginal_baseline
from panelsynth.evaluate.collapse import VarianceCollapse
from panelsynth.evaluate.columns import EvalColumns
from panelsynth.evaluate.membership import MIA_MAX_ROWS, attack
from panelsynth.evaluate.metrics import (
    C2ST_MAX_ROWS,
    DCR_MAX_ROWS,
    AssociationSimilarity,
    ClusterShares,
    ColumnShapes,
    DCRRatio,
    GradientBoostingC2ST,
    MetricResult,
    NAShareSimilarity,
    NewRowShare,
    PairTrends,
    TrainSyntheticTestReal,
    TransitionSimilarity,
    UniqueRowShare,
    pair_statistics,
    safe_compute,
)
from panelsynth.evaluate.sdm import QUALITY_MAX_ROWS, LogisticDetectionC2ST, SDMetricsQuality

#: Rows per real half the real-vs-real reference and the baselines use (a seeded random sample of
#: each half above it). The reference is a sampling-noise floor: two independent samples of h rows
#: differ by noise of variance ~ 2/h, while the LLM output (m rows) scored against the full wave
#: (n rows) carries noise ~ 1/m + 1/n. As long as h >= 2m the capped floor is no noisier than the
#: synthetic score it is read against (a conservative bar): 2,000 rows per half cover m up to
#: 1,000 (the reference study generates 700 per wave). Larger halves would only sharpen a floor
#: that is already tighter than the synthetic score's own noise, at a cost that grows with the rows
#: (the CART baseline, the classifiers). Below the cap (waves of up to 4,000 respondents) the
#: halves are used whole, as SPEC §3.6 describes.
REFERENCE_MAX_ROWS = 2_000
#: Seeded splits the real-vs-real floor is scored on (its spread is reported; issue 12 item 10).
FLOOR_REPEATS = 5

SYNTHETIC = "synthetic"
HOLDOUT = "_real_holdout"
MARGINAL = "_baseline_marginal"
CART = "_baseline_cart"
REFERENCES: tuple[str, ...] = (HOLDOUT, MARGINAL, CART)
CANDIDATES: tuple[str, ...] = (SYNTHETIC, *REFERENCES)

PROTOCOL: dict[str, Any] = {
    "split": "The real wave R is split at random, stratified by cluster, into halves A and B of "
    "equal size (one row dropped when the count is odd). Above caps.reference_rows_per_half "
    "rows per half, the real-half reference and the baselines use a random sample of that many "
    "rows of each half (see rows.reference_sampling), and so do the LLM output's size-matched "
    "copy share and its TSTR test rows (sampled B); its exact copies are still checked against "
    "every real row, and its DCR against every real row with the holdout's DCR measured "
    "against the whole half B.",
    SYNTHETIC: "LLM output S. Fidelity (shapes, trends, C2ST, per cluster, NA) against the full "
    "wave R, as in the reference study; exact copies against R and, size-matched to "
    "the holdout, against B; DCR against R (conservative: twice the reference rows of "
    "the holdout's figure, so copies of any real row count); TSTR: trained on S, "
    "tested on B.",
    HOLDOUT: "Real-vs-real reference: half A scored as if it were synthetic against half B (same "
    "code). It is the sampling-noise floor: what a second sample of real respondents "
    "scores. TSTR here is train-on-real-test-on-real (trained on A, tested on B).",
    MARGINAL: "Independent per-cluster marginals with NA, fitted on A, |B| rows; fidelity and "
    "TSTR against B; exact copies and DCR against A (its training data).",
    CART: "Sequential CART (synthpop-style donor sampling, min leaf 5), fitted on A, |B| rows; "
    "scored like the marginal baseline.",
    "floor": "The real-half figure is the noise of two independent real samples of n/2 rows "
    "(of caps.reference_rows_per_half rows when n/2 is larger). "
    "For S (m rows) scored against the full wave (n rows) the sampling noise is of the "
    "same size when 1/m + 1/n is close to 4/n (e.g. m = 700, n = 2000); with many more "
    "synthetic rows the floor is conservative. A method fitted on the full wave (as the "
    "LLM prompt's statistics and examples are) can score above the floor in-sample.",
    "size_matching": "The real-half floor and the baselines are scored at the synthetic set's "
    "size: the floor is a random sample of that many rows of half A (all of A when it is "
    "smaller), each baseline draws that many rows (see rows.size_matched). The floor is scored "
    "on several seeded splits (floor_spread: min, max, sd) for Column Shapes, the "
    "gradient-boosting C2ST, cluster shares and transitions and NA shares; its summary figures "
    "are the first split's.",
    "held_out": "Runs made with --holdout are scored against the held-out respondents H (never "
    "seen by steps 1-3) instead of the wave: fidelity and TSTR against H; the baselines are "
    "fitted on the training respondents T the run saw; the floor is a sample of T scored "
    "against H; the DCR ratio compares S's and H's distances to T.",
    "membership_inference": "Distance-based membership inference: the attacker guesses 'member' "
    "when a record's closest candidate row (Gower) is nearer than a threshold. Members: the "
    "few-shot example rows (LLM output; the training respondents when examples are synthetic) or "
    "the rows a baseline was fitted on; non-members: held-out respondents (or the other real "
    "half for baselines). TPR at 1% and 10% FPR (chance 0.01, 0.10) and AUC (chance 0.5).",
    "variance_collapse": "Per item, overall and per cluster: entropy of the answers (NA left "
    "out, continuous items in the real bins) and the modal answer's share, real vs candidate; "
    "an item is collapsed when the candidate's entropy is below half the real one.",
    "caps": {
        "floor_repeats": FLOOR_REPEATS,
        "membership_rows_per_side": MIA_MAX_ROWS,
        "reference_rows_per_half": REFERENCE_MAX_ROWS,
        "c2st_rows_per_side": C2ST_MAX_ROWS,
        "quality_report_rows_per_side": QUALITY_MAX_ROWS,
        "dcr_candidate_rows": DCR_MAX_ROWS,
        "note": "above a cap a seeded random sample is used",
    },
    "diversity": "duplicate share is size-dependent; the holdout figure in the summary is computed "
    "on a random real sample of the synthetic data's size (size-matched).",
    "dcr": "Gower distance over the wave's variables: ordered items scaled by the real range (+1 "
    "when exactly one side is missing), nominal items 0/1, averaged over variables.",
    "privacy_records": "Copies and distances compare the wave's variables (not cluster labels).",
}


@dataclass
class Scorecard:
    """Every metric of one candidate."""

    name: str
    metrics: dict[str, MetricResult] = field(default_factory=dict)
    per_cluster: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: int = 0

    def score(self, key: str) -> float:
        m = self.metrics.get(key)
        return m.score if m is not None else math.nan


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


def membership_result(fig: dict[str, Any]) -> MetricResult:
    """A membership-inference figure as a metric result (score: the AUC; NaN with the reason)."""
    auc = fig.get("auc", math.nan)
    return MetricResult(
        "membership_inference",
        float(auc) if auc is not None else math.nan,
        extra={k: v for k, v in fig.items() if k != "error"},
        error=fig.get("error"),
    )


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


def score_candidate(
    name: str,
    candidate: pd.DataFrame,
    columns: EvalColumns,
    *,
    fidelity_real: pd.DataFrame,
    copy_ref: pd.DataFrame,
    dcr_ref: pd.DataFrame,
    utility_test: pd.DataFrame,
    holdout_dcr: dict[str, Any] | None,
    target: str | None,
    seed: int,
    copy_ref_half: pd.DataFrame | None = None,
    examples: pd.DataFrame | None = None,
    light: bool = False,
) -> Scorecard:
    """Run every metric on one candidate (see the module docstring for the roles of the frames).

    ``light``: the floor's repeats — a few cheap figures only (panelsynth's Column Shapes, the
    gradient-boosting C2ST, cluster shares and transitions, NA shares), so that evaluating at
    scale stays fast; no sdmetrics report, pair statistics, logistic C2ST, TSTR, copies or
    distances.
    """
    card = Scorecard(name, rows=len(candidate))
    m = card.metrics
    if light:
        return _light_scores(card, candidate, columns, fidelity_real, seed)
    m["sdmetrics_quality"] = safe_compute(SDMetricsQuality(columns, seed), fidelity_real, candidate)
    m["c2st_logistic"] = safe_compute(
        LogisticDetectionC2ST(columns, seed), fidelity_real, candidate
    )
    m["c2st_gradient_boosting"] = safe_compute(
        GradientBoostingC2ST(columns, seed), fidelity_real, candidate
    )
    m["column_shapes"] = safe_compute(ColumnShapes(columns), fidelity_real, candidate)
    pairs = _pair_statistics_or_none(columns, fidelity_real, candidate)
    m["pair_trends_unthresholded"] = safe_compute(
        PairTrends(columns, pairs), fidelity_real, candidate
    )
    m["association_similarity"] = safe_compute(
        AssociationSimilarity(columns, pairs), fidelity_real, candidate
    )
    m["cluster_shares"] = safe_compute(ClusterShares(columns), fidelity_real, candidate)
    m["transition_similarity"] = safe_compute(
        TransitionSimilarity(columns), fidelity_real, candidate
    )
    m["na_share_similarity"] = safe_compute(NAShareSimilarity(columns), fidelity_real, candidate)
    m["variance_collapse"] = safe_compute(VarianceCollapse(columns), fidelity_real, candidate)
    m["unique_row_share"] = safe_compute(UniqueRowShare(columns), fidelity_real, candidate)
    m["new_row_share"] = safe_compute(NewRowShare(columns), copy_ref, candidate)
    if copy_ref_half is not None:
        r = safe_compute(NewRowShare(columns), copy_ref_half, candidate)
        r.name = "new_row_share_half"
        m["new_row_share_half"] = r
    if examples is not None:
        r = safe_compute(NewRowShare(columns), examples, candidate)
        r.name = "example_new_row_share"
        m["example_new_row_share"] = r
    m["dcr_ratio"] = safe_compute(DCRRatio(columns, holdout_dcr, seed), dcr_ref, candidate)
    if target is not None:
        m["tstr_auc"] = safe_compute(
            TrainSyntheticTestReal(columns, target, seed), utility_test, candidate
        )
    card.per_cluster = per_cluster_scores(fidelity_real, candidate, columns)
    return card


def _light_scores(
    card: Scorecard, candidate: pd.DataFrame, columns: EvalColumns, real: pd.DataFrame, seed: int
) -> Scorecard:
    m = card.metrics
    m["column_shapes"] = safe_compute(ColumnShapes(columns), real, candidate)
    m["c2st_gradient_boosting"] = safe_compute(GradientBoostingC2ST(columns, seed), real, candidate)
    m["cluster_shares"] = safe_compute(ClusterShares(columns), real, candidate)
    m["transition_similarity"] = safe_compute(TransitionSimilarity(columns), real, candidate)
    m["na_share_similarity"] = safe_compute(NAShareSimilarity(columns), real, candidate)
    return card


def _pair_statistics_or_none(
    columns: EvalColumns, real: pd.DataFrame, candidate: pd.DataFrame
) -> pd.DataFrame | None:
    """Pair statistics shared by two metrics (None: each metric then reports its own error)."""
    try:
        return pair_statistics(columns, real, candidate)
    except Exception:  # noqa: BLE001 - safe_compute records the reason
        return None


def per_cluster_scores(
    real: pd.DataFrame, candidate: pd.DataFrame, columns: EvalColumns
) -> dict[str, dict[str, Any]]:
    """Column Shapes and unthresholded Pair Trends within each cluster."""
    c = columns.cluster
    if c is None:
        return {}
    inner = columns.without([c])
    out: dict[str, dict[str, Any]] = {}
    labels = sorted(set(real[c].dropna()) | set(candidate[c].dropna()), key=str)
    for lab in labels:
        r, s = real[real[c] == lab], candidate[candidate[c] == lab]
        key = str(int(lab)) if isinstance(lab, float) and lab.is_integer() else str(lab)
        entry: dict[str, Any] = {"rows_real": int(len(r)), "rows_candidate": int(len(s))}
        if len(r) == 0 or len(s) == 0:
            why = f"cluster {key} has no {'real' if len(r) == 0 else 'candidate'} rows"
            entry["column_shapes"] = MetricResult("column_shapes", math.nan, error=why)
            entry["pair_trends_unthresholded"] = MetricResult(
                "pair_trends_unthresholded", math.nan, error=why
            )
        else:
            entry["column_shapes"] = safe_compute(ColumnShapes(inner), r, s)
            entry["pair_trends_unthresholded"] = safe_compute(PairTrends(inner), r, s)
        out[key] = entry
    return out


def duplicate_share_sample(
    real: pd.DataFrame, columns: EvalColumns, size: int, rng: np.random.Generator
) -> float:
    """Duplicate share of a random real sample of ``size`` rows (size-matched diversity floor)."""
    size = min(size, len(real))
    if size == 0:
        return math.nan
    sample = real.iloc[rng.choice(len(real), size, replace=False)]
    r = UniqueRowShare(columns).compute(sample, sample)
    return float(r.extra.get("duplicate_share", math.nan))


# --------------------------------------------------------------------------- summary figures
#: (key, label, higher_is_better, how to read it) of the flat comparison table.
SUMMARY_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("density_shape", "Column Shapes (sdmetrics)", True),
    ("density_trend", "Column Pair Trends (sdmetrics, thresholded)", True),
    ("density_overall", "Overall quality (sdmetrics)", True),
    ("density_trend_unthresholded", "Pair Trends, every pair (unthresholded)", True),
    ("association_similarity", "Association similarity (Cramér's V / r)", True),
    ("c2st", "C2ST logistic (sdmetrics LogisticDetection)", True),
    ("c2st_gb", "C2ST gradient boosting", True),
    ("cluster_shares", "Cluster shares (1 - TV)", True),
    ("transition_similarity", "prev→current cluster table (1 - TV)", True),
    ("na_share_similarity", "NA shares (1 - mean |Δ|)", True),
    ("na_mean_abs_diff", "NA share mean |Δ|", False),
    ("duplicate_share", "Duplicate rows share", False),
    ("exact_copy_share", "Rows identical to a row of the real wave", False),
    ("exact_copy_share_half", "Rows identical to a row of a real half (size-matched)", False),
    ("example_copy_share", "Rows identical to a few-shot example", False),
    ("dcr_mean", "Mean distance to closest real record", True),
    ("dcr_ratio", "DCR ratio to real holdout (capped at 1)", True),
    ("tstr_auc", "TSTR AUC (holdout: TRTR)", True),
    ("collapsed_item_share", "Items with collapsed variance (entropy < half the real)", False),
    ("modal_share", "Mean share of each item's modal answer", False),
    ("mia_tpr_1pct_fpr", "Membership inference: TPR at 1% FPR (chance 0.01)", False),
    ("mia_tpr_10pct_fpr", "Membership inference: TPR at 10% FPR (chance 0.10)", False),
    ("mia_auc", "Membership inference AUC (chance 0.5)", False),
)
#: Summary figures whose spread over the floor's repeats is reported.
FLOOR_SPREAD_KEYS: frozenset[str] = frozenset(
    {
        "density_shape",
        "c2st_gb",
        "cluster_shares",
        "transition_similarity",
        "na_share_similarity",
    }
)


def summary_values(card: Scorecard) -> dict[str, tuple[float, str | None]]:
    """Flat ``key -> (value, reason-if-NaN)`` of a scorecard."""
    m = card.metrics

    def res(key: str) -> MetricResult | None:
        return m.get(key)

    def val(key: str, extra: str | None = None, transform=None) -> tuple[float, str | None]:
        r = res(key)
        if r is None:
            return math.nan, "not computed for this candidate"
        v = r.score if extra is None else r.extra.get(extra, math.nan)
        if isinstance(v, dict):
            v = math.nan
        v = math.nan if v is None else float(v)
        if transform is not None and not math.isnan(v):
            v = transform(v)
        reason = None
        if math.isnan(v):
            reason = r.error or r.extra.get("pair_nan_reason") or "not computed"
        return v, reason

    q = res("sdmetrics_quality")
    out: dict[str, tuple[float, str | None]] = {}
    out["density_shape"] = val("sdmetrics_quality", "column_shapes")
    trend = val("sdmetrics_quality", "column_pair_trends")
    if math.isnan(trend[0]) and q is not None and q.extra.get("pair_nan_reason"):
        trend = (trend[0], "sdmetrics Column Pair Trends is NaN: " + q.extra["pair_nan_reason"])
    out["density_trend"] = trend
    out["density_overall"] = val("sdmetrics_quality", "overall")
    out["density_trend_unthresholded"] = val("pair_trends_unthresholded")
    out["association_similarity"] = val("association_similarity")
    out["c2st"] = val("c2st_logistic")
    out["c2st_gb"] = val("c2st_gradient_boosting")
    out["cluster_shares"] = val("cluster_shares")
    out["transition_similarity"] = val("transition_similarity")
    out["na_share_similarity"] = val("na_share_similarity")
    out["na_mean_abs_diff"] = val("na_share_similarity", "mean_abs_diff")
    out["duplicate_share"] = val("unique_row_share", "duplicate_share")
    if card.name == SYNTHETIC:
        out["exact_copy_share"] = val("new_row_share", "copy_share")
        out["exact_copy_share_half"] = val("new_row_share_half", "copy_share")
    else:
        out["exact_copy_share"] = (
            math.nan,
            "references are compared with a real half, not the "
            "full wave: see exact_copy_share_half",
        )
        out["exact_copy_share_half"] = val("new_row_share", "copy_share")
    out["example_copy_share"] = (
        val("example_new_row_share", "copy_share")
        if "example_new_row_share" in m
        else (
            math.nan,
            "not applicable: only LLM output is built from few-shot examples"
            if card.name != SYNTHETIC
            else "no few-shot examples file for this model dir and wave",
        )
    )
    dcr = res("dcr_ratio")
    if dcr is not None and isinstance(dcr.extra.get("dcr"), dict):
        out["dcr_mean"] = (float(dcr.extra["dcr"]["mean"]), None)
    else:
        out["dcr_mean"] = (math.nan, (dcr.error if dcr is not None else None) or "not computed")
    out["dcr_ratio"] = val("dcr_ratio")
    if "tstr_auc" in m:
        out["tstr_auc"] = val("tstr_auc")
    vc = val("variance_collapse")
    out["collapsed_item_share"] = (1.0 - vc[0], vc[1]) if not math.isnan(vc[0]) else vc
    out["modal_share"] = val("variance_collapse", "mean_modal_share_candidate")
    for key, extra in (
        ("mia_tpr_1pct_fpr", "tpr_at_1pct_fpr"),
        ("mia_tpr_10pct_fpr", "tpr_at_10pct_fpr"),
        ("mia_auc", "auc"),
    ):
        out[key] = (
            val("membership_inference", extra)
            if "membership_inference" in m
            else (math.nan, "membership inference not computed for this candidate")
        )
    for lab, entry in card.per_cluster.items():
        for key, short in (("column_shapes", "shape"), ("pair_trends_unthresholded", "trend")):
            r = entry[key]
            out[f"cluster_{lab}_{short}"] = (r.score, r.error if math.isnan(r.score) else None)
    return out
