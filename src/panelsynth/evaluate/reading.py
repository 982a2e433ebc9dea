"""Plain-language reading of the figures: each synthetic score next to its real-vs-real floor."""

from __future__ import annotations

import math
from collections.abc import Mapping

Summary = Mapping[str, Mapping[str, float | None]]

_FIDELITY = (
    ("density_shape", "Column Shapes"),
    ("density_trend_unthresholded", "Pair Trends (every pair)"),
    ("density_trend", "Pair Trends (sdmetrics)"),
    ("c2st", "Logistic C2ST"),
    ("c2st_gb", "Gradient-boosting C2ST"),
    ("cluster_shares", "Cluster shares"),
    ("transition_similarity", "Cluster transitions"),
    ("na_share_similarity", "NA shares"),
    ("tstr_auc", "TSTR AUC"),
)


def _v(summary: Summary, key: str, cand: str) -> float:
    v = summary.get(key, {}).get(cand)
    return math.nan if v is None else float(v)


def verdict(score: float, floor: float) -> str:
    """How far a higher-is-better score is from the real-vs-real floor."""
    if math.isnan(score) or math.isnan(floor):
        return "not comparable"
    gap = floor - score
    if gap <= 0.02:
        return "at the sampling floor"
    if gap <= 0.05:
        return "close to the sampling floor"
    if gap <= 0.15:
        return "noticeably below the sampling floor"
    return "far from the sampling floor"


#: How the reading names the floor: a real half, or (``--holdout`` runs) the training respondents.
FLOOR_LABELS = {
    False: "a real half",
    True: "training respondents scored against the held-out respondents",
}


def label_of_floor(held_out: bool) -> str:
    return FLOOR_LABELS[bool(held_out)]


def fidelity_sentence(
    summary: Summary, key: str, label: str, floor_label: str = FLOOR_LABELS[False]
) -> str | None:
    s = _v(summary, key, "synthetic")
    h = _v(summary, key, "_real_holdout")
    if math.isnan(s):
        return None
    if math.isnan(h):
        return f"{label} {s:.2f} (no real-vs-real reference)."
    text = f"{label} {s:.2f} vs {h:.2f} for {floor_label}: {verdict(s, h)}"
    b = _v(summary, key, "_baseline_marginal")
    if not math.isnan(b):
        if s >= b + 0.01:
            text += f"; better than independent per-cluster marginals ({b:.2f})"
        elif s <= b - 0.01:
            text += f"; worse than independent per-cluster marginals ({b:.2f})"
        else:
            text += f"; level with independent per-cluster marginals ({b:.2f})"
    return text + "."


def read_summary(summary: Summary, floor_label: str = FLOOR_LABELS[False]) -> list[str]:
    """Sentences a survey researcher can read without knowing the metrics."""
    out: list[str] = []
    for key, label in _FIDELITY:
        s = fidelity_sentence(summary, key, label, floor_label)
        if s:
            out.append(s)
    collapse = collapse_sentence(summary)
    if collapse:
        out.append(collapse)
    cart = _v(summary, "c2st_gb", "_baseline_cart")
    syn = _v(summary, "c2st_gb", "synthetic")
    if not (math.isnan(cart) or math.isnan(syn)):
        word = "harder" if syn > cart + 0.01 else ("easier" if syn < cart - 0.01 else "as hard")
        out.append(
            f"A gradient-boosting classifier finds the LLM rows {word} to tell from real "
            f"ones than rows of a sequential-CART synthesiser ({syn:.2f} vs {cart:.2f})."
        )
    dup, dup_ref = (
        _v(summary, "duplicate_share", "synthetic"),
        _v(summary, "duplicate_share", "_real_holdout"),
    )
    if not math.isnan(dup):
        ref = (
            f" ({dup_ref:.0%} in a same-size sample of real respondents)"
            if not math.isnan(dup_ref)
            else ""
        )
        tone = (
            "more repetitive than real answers"
            if not math.isnan(dup_ref) and dup > dup_ref + 0.05
            else "about as varied as real answers"
            if not math.isnan(dup_ref)
            else ""
        )
        out.append(
            f"Diversity: {dup:.0%} of synthetic rows repeat another synthetic row{ref}"
            + (f" — {tone}." if tone else ".")
        )
    cp = _v(summary, "exact_copy_share", "synthetic")
    cp_ref = _v(summary, "exact_copy_share_half", "_real_holdout")
    cph = _v(summary, "exact_copy_share_half", "synthetic")
    if not math.isnan(cp):
        text = f"Privacy: {cp:.0%} of synthetic rows are identical to a real respondent's answers"
        if not (math.isnan(cph) or math.isnan(cp_ref)):
            text += (
                f"; against one real half it is {cph:.0%}, while {cp_ref:.0%} of real "
                f"respondents have an identical twin in the other half"
            )
            if cph > cp_ref + 0.05:
                text += " — more copies than chance alone explains."
            elif cp_ref >= 0.05:
                text += (
                    " — no more frequent than the chance coincidences between real respondents "
                    "(expected when a wave has few items)."
                )
            else:
                text += "."
        else:
            text += "."
        out.append(text)
    ex = _v(summary, "example_copy_share", "synthetic")
    if not math.isnan(ex):
        out.append(
            f"{ex:.0%} of synthetic rows reproduce a few-shot example verbatim"
            + (" — the model is copying its prompt." if ex > 0.1 else ".")
        )
    mia = membership_sentence(summary)
    if mia:
        out.append(mia)
    dr = _v(summary, "dcr_ratio", "synthetic")
    if not math.isnan(dr):
        out.append(
            f"Distance to the closest real record is {dr:.2f}× that of an unseen real "
            "respondent (capped at 1; 1 = no closer to real people than a new respondent)."
        )
    return out


def collapse_sentence(summary: Summary) -> str | None:
    """Variance collapse: the share of items whose synthetic answers spread less than half as
    much as the real ones (entropy), against a real sample of the same size."""
    c = _v(summary, "collapsed_item_share", "synthetic")
    if math.isnan(c):
        return None
    ref = _v(summary, "collapsed_item_share", "_real_holdout")
    mode_s = _v(summary, "modal_share", "synthetic")
    mode_r = _v(summary, "modal_share", "_real_holdout")
    text = f"Variance: {c:.0%} of items collapsed (synthetic answer entropy below half the real)"
    if not math.isnan(ref):
        text += f", {ref:.0%} for real respondents"
    if not (math.isnan(mode_s) or math.isnan(mode_r)):
        text += f"; the modal answer takes {mode_s:.0%} of answers on average ({mode_r:.0%} real)"
    if c >= 0.25:
        text += " — the synthetic respondents answer too uniformly."
    elif c > 0:
        text += " — some items are answered too uniformly."
    else:
        text += " — no item collapsed."
    return text


def membership_sentence(summary: Summary) -> str | None:
    """One line on the membership-inference attack against the LLM output and the baselines."""
    t = _v(summary, "mia_tpr_1pct_fpr", "synthetic")
    if math.isnan(t):
        return None
    auc = _v(summary, "mia_auc", "synthetic")
    text = (
        f"Membership inference: at a 1% false-alarm rate, an attacker who knows a person's "
        f"answers and sees the synthetic rows flags {t:.0%} of the members (chance: 1%; AUC "
        f"{auc:.2f})"
    )
    cart = _v(summary, "mia_tpr_1pct_fpr", "_baseline_cart")
    if not math.isnan(cart):
        text += f", the CART baseline {cart:.0%}"
    if t >= 0.1:
        text += " — the rows in the prompt leak: identifiable respondents."
    elif t >= 0.03:
        text += " — a measurable leak above chance."
    else:
        text += " — no better than chance."
    return text


def headline(summary: Summary, floor_label: str = FLOOR_LABELS[False]) -> str:
    """Column Shapes against the floor, plus the fidelity figure furthest below its floor."""
    first = fidelity_sentence(summary, "density_shape", "Column Shapes", floor_label)
    out = first or "Column Shapes could not be computed."
    worst: tuple[float, str, str] | None = None
    for key, label in _FIDELITY:
        s, h = _v(summary, key, "synthetic"), _v(summary, key, "_real_holdout")
        if key != "density_shape" and not (math.isnan(s) or math.isnan(h)):
            if worst is None or h - s > worst[0]:
                worst = (h - s, key, label)
    if worst is not None and worst[0] > 0.02:
        weakest = fidelity_sentence(summary, worst[1], worst[2], floor_label)
        out += f" Weakest: {weakest}"
    collapse = collapse_sentence(summary)
    if collapse:
        out += f" {collapse}"
    return out
