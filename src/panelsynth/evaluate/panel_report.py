"""The "Panel" section of ``report.html`` and the plain-language reading of the panel figures
(the ``panel`` section a linked synthetic panel gets in its last wave's metrics JSON)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from typing import Any

from panelsynth.evaluate.longitudinal import (
    CART_PANEL,
    FLOOR_HELD_OUT,
    HOLDOUT,
    SYNTHETIC,
    UNLINKED,
)
from panelsynth.workspace import Workspace

PANEL_CANDIDATES = {
    SYNTHETIC: "LLM synthetic panel",
    HOLDOUT: "real half (floor)",
    UNLINKED: "unlinked per-wave rows",
    CART_PANEL: "CART panel",
}

#: (summary key, label, higher is better)
PANEL_FIGURES = (
    ("stability_error_unchanged", "Stability error: unchanged share ↓", False),
    ("stability_error_spearman", "Stability error: Spearman ↓", False),
    ("transition_fidelity", "Transition fidelity (1 − TVD)", True),
    ("retention_mean_abs_diff", "Retention difference, mean per cluster ↓", False),
    ("retention_max_abs_diff", "Retention difference, largest ↓", False),
    ("c2st_trajectory", "Trajectory C2ST (1 = indistinguishable)", True),
)


def _v(summary: Mapping[str, Mapping[str, Any]], key: str, cand: str) -> float:
    v = (summary.get(key) or {}).get(cand)
    return math.nan if v is None else float(v)


def _floor_max(section: Mapping[str, Any], key: str, lower_better: bool) -> float:
    """The floor's worst value over its seeded splits (the first split's when no spread)."""
    spread = (section.get("candidates", {}).get(HOLDOUT, {}).get("floor_spread") or {}).get(key)
    if spread:
        return float(spread["max"] if lower_better else spread["min"])
    return _v(section.get("summary", {}), key, HOLDOUT)


def _floor_name(section: Mapping[str, Any]) -> str:
    """How the reading names the floor: two real halves, or (``--holdout``) training
    respondents scored against the held-out ones."""
    return (
        "training-respondents floor"
        if section.get("floor") == FLOOR_HELD_OUT
        else ("real-half floor")
    )


def _f(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.3f}"


def _error_sentence(section: Mapping[str, Any], key: str, what: str, real_key: str) -> str | None:
    s = section.get("summary", {})
    err, unl = _v(s, key, SYNTHETIC), _v(s, key, UNLINKED)
    if math.isnan(err):
        return None
    c = section["candidates"][SYNTHETIC]
    real, syn = c.get(f"mean_{real_key}_real"), c.get(f"mean_{real_key}_synthetic")
    level = (
        f"{what} is {syn:.2f} on average for the synthetic respondents and {real:.2f} for the "
        f"real ones"
        if real is not None and syn is not None
        else what
    )
    floor = _floor_max(section, key, True)
    if not math.isnan(floor) and err <= floor + 0.02:
        verdict = "the synthetic panel is as stable as the real one, within sampling noise"
    elif not math.isnan(unl) and err < unl - 0.02:
        verdict = "the links carry part of the real persistence, more than unlinked per-wave rows"
    elif not math.isnan(unl):
        verdict = "no better than pairing per-wave rows at random (the links carry no persistence)"
    else:
        verdict = "above the sampling noise"
    return (
        f"{level}; stability error {_f(err)} ({_floor_name(section)} "
        f"{_f(_v(s, key, HOLDOUT))}, up to {_f(floor)} over its splits; unlinked {_f(unl)}): "
        f"{verdict}."
    )


def panel_reading(section: Mapping[str, Any]) -> list[str]:
    """One plain-language sentence per panel figure."""
    s = section.get("summary", {})
    out = [
        _error_sentence(
            section,
            "stability_error_unchanged",
            "The share of answers kept between waves",
            "unchanged",
        ),
        _error_sentence(
            section,
            "stability_error_spearman",
            "The correlation of an item with itself",
            "spearman",
        ),
    ]
    tf, tf_floor = (
        _v(s, "transition_fidelity", SYNTHETIC),
        _floor_max(section, "transition_fidelity", False),
    )
    if not math.isnan(tf):
        ok = not math.isnan(tf_floor) and tf >= tf_floor - 0.05
        out.append(
            f"Moves between clusters from one wave to the next match the real ones at {_f(tf)} "
            f"(1 = identical; {_floor_name(section)} {_f(_v(s, 'transition_fidelity', HOLDOUT))}, "
            f"down to {_f(tf_floor)} over its splits): "
            + ("within sampling noise." if ok else "further than sampling noise explains.")
        )
    rd = _v(s, "retention_mean_abs_diff", SYNTHETIC)
    if not math.isnan(rd):
        out.append(
            f"Who stays in the panel differs from the real retention by {rd:.1%} on average per "
            f"previous cluster (largest {_v(s, 'retention_max_abs_diff', SYNTHETIC):.1%}; "
            f"{_floor_name(section)} {_v(s, 'retention_mean_abs_diff', HOLDOUT):.1%})"
            + (": within 5 points." if rd <= 0.05 else ": more than 5 points.")
        )
    c2, c2_floor = _v(s, "c2st_trajectory", SYNTHETIC), _v(s, "c2st_trajectory", HOLDOUT)
    if not math.isnan(c2):
        unl = _v(s, "c2st_trajectory", UNLINKED)
        out.append(
            f"A classifier that sees each respondent's waves side by side tells synthetic from "
            f"real trajectories with a score of {_f(c2)} (1 = cannot tell them apart; "
            f"{_floor_name(section)} {_f(c2_floor)}, unlinked {_f(unl)})"
            + (
                ": the whole trajectories look real."
                if not math.isnan(c2_floor) and c2 >= c2_floor - 0.05
                else ": the trajectories are told apart from real ones."
            )
        )
    return [x for x in out if x]


def _cell(section: Mapping[str, Any], key: str, cand: str) -> str:
    v = _v(section.get("summary", {}), key, cand)
    text = _f(v)
    if cand == HOLDOUT:
        sp = (section["candidates"].get(HOLDOUT, {}).get("floor_spread") or {}).get(key)
        if sp and len(sp.get("values", [])) > 1:
            text += (
                f"<br><span class='muted' title='min–max over {len(sp['values'])} seeded "
                f"splits, sd {sp['sd']:.3f}'>{sp['min']:.3f}–{sp['max']:.3f}</span>"
            )
    return f"<td{' class=na' if math.isnan(v) else ''}>{text}</td>"


def panel_html(ws: Workspace, docs: list[dict[str, Any]]) -> str:
    """The report's "Panel" section ("" when no metrics JSON carries a panel section)."""
    from panelsynth.evaluate.panel_eval import panel_plot_path

    sections = [d["panel"] for d in docs if (d.get("panel") or {}).get("candidates")]
    if not sections:
        return ""
    parts = [
        "<h2 id='panel'>Panel</h2><p>Synthetic respondents linked across waves by their ids, "
        "per pair of consecutive generated waves: how often an answer stays the same and how "
        "an item correlates with itself (stability), the moves between clusters, who stays in "
        "the panel, and a classifier on whole trajectories. Each figure is shown next to two "
        "halves of the real panel (the floor), the same synthetic rows paired at random within "
        "their cluster path (<b>unlinked</b>: what per-wave generation gives) and a sequential "
        "CART panel.</p>"
    ]
    for sec in sections:
        md = str(sec.get("model_dir", "?"))
        waves = ", ".join(str(w) for w in sec.get("waves", []))
        resp = sec.get("respondents", {})
        parts.append(
            f"<h3 id='{html.escape(md)}-panel'>{html.escape(md)} — waves {html.escape(waves)} "
            f"<span class='muted'>(real first wave n={resp.get('real_first_wave')}, synthetic "
            f"n={resp.get('synthetic_first_wave')}, read against the "
            f"{html.escape(str(sec.get('reference', 'real panel')))}; "
            f"{len(sec.get('items', []))} items)</span></h3>"
        )
        if resp.get("training_first_wave") is not None:  # a --holdout run's floor
            parts.append(f"<p class='muted'>Floor: {html.escape(str(sec.get('floor')))}</p>")
        parts.append(
            "<h4>Reading</h4><ul class='reading'>"
            + "".join(f"<li>{html.escape(t)}</li>" for t in panel_reading(sec))
            + "</ul>"
        )
        head = "".join(f"<th>{html.escape(v)}</th>" for v in PANEL_CANDIDATES.values())
        rows = "".join(
            f"<tr><td class='l'>{html.escape(label)}</td>"
            + "".join(_cell(sec, key, c) for c in PANEL_CANDIDATES)
            + "</tr>"
            for key, label, _ in PANEL_FIGURES
        )
        parts.append(f"<table><tr><th class='l'>figure</th>{head}</tr>{rows}</table>")
        plot = panel_plot_path(ws, md)
        if plot.exists():
            data = base64.b64encode(plot.read_bytes()).decode("ascii")
            parts.append(
                "<h4>Unchanged answers between consecutive waves, real vs synthetic, per item</h4>"
                f'<img alt="{html.escape(plot.name)}" src="data:image/png;base64,{data}">'
            )
        if sec.get("notes"):
            parts.append(
                "<details><summary>Notes</summary><ul>"
                + "".join(f"<li>{html.escape(str(n))}</li>" for n in sec["notes"])
                + "</ul></details>"
            )
    return "".join(parts)
