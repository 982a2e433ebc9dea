"""Distance-based membership inference (issue 16).

The attacker holds a real record and the synthetic rows, and guesses "this person's row was used to
make them" when the closest synthetic row (Gower distance over the wave's variables) is nearer
than a threshold. Over members (respondents whose rows were used: the few-shot examples pasted
into prompts, or every respondent behind the statistics) and non-members (held-out respondents
the run never saw), sweeping the threshold gives an ROC curve; the figures are its AUC (0.5 =
chance) and the true-positive rate at 1% and 10% false-positive rate (chance: 0.01 and 0.10).
The low-FPR rates are what matters for privacy: an attack that is right about a few people with
near certainty is a leak even when its AUC is close to 0.5. Ties (equal distances, common when a
wave has few items) are resolved as a randomised threshold (the ROC curve interpolated), so a
chance attack scores TPR = FPR.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.evaluate.columns import EvalColumns
from panelsynth.evaluate.encoding import nearest_gower, row_keys
from panelsynth.evaluate.heldout import HeldOut

#: Records per side (members, non-members) scored by the attack (a seeded sample above it).
MIA_MAX_ROWS = 2_000
FPR_POINTS: tuple[float, ...] = (0.01, 0.10)


def attack(
    columns: EvalColumns,
    candidate: pd.DataFrame,
    members: pd.DataFrame,
    non_members: pd.DataFrame,
    *,
    seed: int = 42,
    members_are: str = "",
    non_members_are: str = "",
) -> dict[str, Any]:
    """TPR at 1% and 10% FPR and AUC of the closest-synthetic-row attack.

    Returns a JSON-ready dict; ``error`` (and NaN figures) when it cannot be computed.
    """
    out: dict[str, Any] = {
        "tpr_at_1pct_fpr": math.nan,
        "tpr_at_10pct_fpr": math.nan,
        "auc": math.nan,
        "members": int(len(members)),
        "non_members": int(len(non_members)),
        "members_are": members_are,
        "non_members_are": non_members_are,
    }
    items = columns.subset(columns.variables)
    if not items.columns:
        return {**out, "error": "no variables"}
    if len(candidate) == 0 or len(members) == 0 or len(non_members) == 0:
        side = (
            "candidate" if len(candidate) == 0 else "member" if len(members) == 0 else "non-member"
        )
        return {**out, "error": f"no {side} rows"}
    rng = np.random.default_rng(seed)
    mem, non = _cap(members, rng), _cap(non_members, rng)
    d_mem = nearest_gower(items, mem, candidate)
    d_non = nearest_gower(items, non, candidate)
    out.update(roc_figures(d_mem, d_non))
    out["members_scored"] = int(len(mem))
    out["non_members_scored"] = int(len(non))
    out["median_distance_members"] = float(np.median(d_mem))
    out["median_distance_non_members"] = float(np.median(d_non))
    return out


def roc_figures(d_members: np.ndarray, d_non_members: np.ndarray) -> dict[str, float]:
    """AUC and TPR at :data:`FPR_POINTS` when a smaller distance means "member"."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.r_[np.ones(len(d_members)), np.zeros(len(d_non_members))]
    score = -np.r_[d_members, d_non_members]
    fpr, tpr, _ = roc_curve(y, score, drop_intermediate=False)
    out = {"auc": float(roc_auc_score(y, score))}
    for point in FPR_POINTS:
        out[f"tpr_at_{round(point * 100)}pct_fpr"] = float(np.interp(point, fpr, tpr))
    return out


def _cap(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    if len(frame) <= MIA_MAX_ROWS:
        return frame
    return frame.iloc[np.sort(rng.choice(len(frame), MIA_MAX_ROWS, replace=False))]


def synthetic_membership(
    columns: EvalColumns,
    h: dict[str, pd.DataFrame],
    held: HeldOut | None,
    manifest: dict,
    seed: int,
) -> dict[str, Any]:
    """Membership inference against the LLM output (see :mod:`.membership`).

    Members are the real few-shot examples (their rows were pasted into prompts) or, when the
    examples were synthetic, every training respondent (behind the statistics). Non-members are
    the held-out respondents; a run without --holdout has none, so only its examples can be
    told apart from the wave's other respondents (who all informed the statistics).
    """
    source = (manifest.get("examples") or {}).get("source") or (
        (manifest.get("settings") or {}).get("examples") or "real"
    )
    examples = h.get("examples") if source == "real" else None
    syn = h["synthetic"]
    if held is not None:
        if examples is not None and len(examples):
            return attack(
                columns,
                syn,
                examples,
                held.held_out,
                seed=seed,
                members_are="few-shot examples (real rows pasted into prompts)",
                non_members_are="held-out respondents",
            )
        return attack(
            columns,
            syn,
            held.training,
            held.held_out,
            seed=seed,
            members_are="training respondents (behind the prompt's statistics)",
            non_members_are="held-out respondents",
        )
    if examples is None or not len(examples):
        why = (
            "unavailable: the run held no respondent out (every respondent informed the prompt's "
            "statistics) and sent no real example rows — run with --holdout 0.3 to measure it"
        )
        return {"error": why, "auc": math.nan}
    names = columns.variables
    others = h["real"][~np.isin(row_keys(h["real"], names), row_keys(examples, names))]
    return attack(
        columns,
        syn,
        examples,
        others,
        seed=seed,
        members_are="few-shot examples (real rows pasted into prompts)",
        non_members_are="the wave's other respondents (no held-out respondents: they informed "
        "the statistics, not the examples)",
    )
