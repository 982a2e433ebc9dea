"""``Evaluation/report.html``: one self-contained page (plots embedded as base64) built from every
``wave{W}_metrics.json``, the model x wave tables and the per-variable PNGs of a workspace."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from panelsynth.evaluate.panel_report import panel_html
from panelsynth.evaluate.reading import headline, label_of_floor, verdict
from panelsynth.evaluate.tables import EXTRA_TABLE_KEYS, TABLE_KEYS, extra_table_path
from panelsynth.io import atomic_write_text
from panelsynth.workspace import Workspace, wave_sort_key

log = logging.getLogger("panelsynth")

CAND_LABELS = {
    "synthetic": "LLM synthetic",
    "_real_holdout": "real half (floor)",
    "_baseline_marginal": "marginal baseline",
    "_baseline_cart": "CART baseline",
}
TABLE_TITLES = {
    "density_shape": "Column Shapes (sdmetrics QualityReport)",
    "density_trend": "Column Pair Trends (sdmetrics, pairs above its association threshold)",
    "density_overall": "Overall quality (mean of shapes and trends, sdmetrics)",
    "c2st": "C2ST — sdmetrics LogisticDetection (1 = indistinguishable)",
    "density_trend_unthresholded": "Pair Trends over every pair (unthresholded)",
    "c2st_gb": "C2ST — gradient boosting (1 = indistinguishable)",
}

PCT_KEYS = frozenset(
    {
        "na_mean_abs_diff",
        "duplicate_share",
        "exact_copy_share",
        "exact_copy_share_half",
        "example_copy_share",
        "collapsed_item_share",
        "modal_share",
        "mia_tpr_1pct_fpr",
        "mia_tpr_10pct_fpr",
    }
)

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;
max-width:1200px;
color:#222;line-height:1.45;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}
h2{font-size:19px;border-bottom:2px solid #4C72B0;padding-bottom:3px;margin-top:34px}
h3{font-size:16px;margin-top:26px;background:#f1f4f9;padding:6px 8px;border-radius:4px}
h4{font-size:14px;margin:16px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:12.5px}
th,td{border:1px solid #d5d9e0;padding:3px 8px;text-align:right}th{background:#eef1f6}
td.l,th.l{text-align:left}.good{background:#dff3e3}.mid{background:#fff4d6}.bad{background:#fbe0df}
.na{color:#999}.muted{color:#666;font-size:12px}ul.reading li{margin:2px 0}
.warn{background:#fff3cd;border-left:4px solid #e0a800;padding:6px 10px}
img{max-width:100%;border:1px solid #ddd;margin-top:6px}
.legend span{display:inline-block;padding:1px 8px;margin-right:6px;border-radius:3px;font-size:12px}
details{margin:6px 0}summary{cursor:pointer;color:#4C72B0}
.grid{display:flex;flex-wrap:wrap;gap:18px}.grid>div{flex:0 1 auto}
"""


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, int | float):
        return f"{v:.1%}" if pct else f"{v:.3f}"
    return html.escape(str(v))


def _cls(score: float | None, floor: float | None, higher: bool = True) -> str:
    if score is None or floor is None:
        return ""
    gap = (floor - score) if higher else (score - floor)
    if gap <= 0.02:
        return "good"
    if gap <= 0.15:
        return "mid"
    return "bad"


def _table_html(df: pd.DataFrame, title: str) -> str:
    refs = [c for c in CAND_LABELS if c != "synthetic" and c in df.columns]
    head = "".join(f"<th>{html.escape(CAND_LABELS.get(c, c))}</th>" for c in df.columns)
    rows = []
    for wave, row in df.iterrows():
        floor = row.get("_real_holdout")
        floor = None if floor is None or pd.isna(floor) else float(floor)
        cells = []
        for c in df.columns:
            v = row[c]
            v = None if pd.isna(v) else float(v)
            cls = "" if c in refs else _cls(v, floor)
            if v is None:
                cells.append('<td class="na" title="NaN — see the metrics JSON">—</td>')
            else:
                cells.append(f'<td class="{cls}">{v:.3f}</td>')
        rows.append(f'<tr><td class="l">wave {html.escape(str(wave))}</td>{"".join(cells)}</tr>')
    return (
        f"<h4>{html.escape(title)}</h4><table><tr><th class='l'>wave</th>{head}</tr>"
        + "".join(rows)
        + "</table>"
    )


def _png(path: Path) -> str:
    if not path.exists():
        return '<p class="muted">plot not found</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _cand_labels(doc: dict[str, Any]) -> dict[str, str]:
    """Column headings; a ``--holdout`` run is scored against its held-out respondents."""
    if not _held_out(doc):
        return CAND_LABELS
    return {
        **CAND_LABELS,
        "synthetic": "LLM synthetic vs held-out respondents",
        "_real_holdout": "training vs held-out respondents (floor)",
    }


def _held_out(doc: dict[str, Any]) -> bool:
    return (doc.get("reference") or {}).get("label") == "held-out respondents"


def _spread_text(doc: dict[str, Any], key: str) -> str:
    """The floor's range over its seeded splits, e.g. ``0.91–0.96``."""
    sp = (doc.get("floor_spread") or {}).get(key)
    if not sp or len(sp.get("values", [])) < 2:
        return ""
    return (
        f"<br><span class='muted' title='min–max over {len(sp['values'])} seeded splits, "
        f"sd {sp['sd']:.3f}'>{sp['min']:.2f}–{sp['max']:.2f}</span>"
    )


def _summary_table(doc: dict[str, Any]) -> str:
    summary = doc["summary"]
    labels = doc.get("labels", {})
    hib = doc.get("higher_is_better", {})
    cand_labels = _cand_labels(doc)
    cands = list(CAND_LABELS)
    head = "".join(f"<th>{html.escape(cand_labels[c])}</th>" for c in cands)
    rows = []
    for key, per in summary.items():
        if key.startswith("cluster_"):
            continue
        higher = hib.get(key, True)
        pct = key in PCT_KEYS
        cells = []
        for c in cands:
            v = per.get(c)
            cls = _cls(v, per.get("_real_holdout"), higher) if c == "synthetic" else ""
            extra = _spread_text(doc, key) if c == "_real_holdout" else ""
            cells.append(f'<td class="{cls}">{_fmt(v, pct)}{extra}</td>')
        arrow = "↑" if higher else "↓"
        rows.append(
            f'<tr><td class="l">{html.escape(labels.get(key, key))} '
            f'<span class="muted">{arrow}</span></td>{"".join(cells)}</tr>'
        )
    return (
        f"<table><tr><th class='l'>figure (↑ higher is better, ↓ lower)</th>{head}</tr>"
        + "".join(rows)
        + "</table>"
    )


def _per_cluster_table(doc: dict[str, Any]) -> str:
    syn = doc["candidates"]["synthetic"].get("per_cluster", {})
    hold = doc["candidates"].get("_real_holdout", {}).get("per_cluster", {})
    shares = {
        d["cluster"]: d
        for d in doc["candidates"]["synthetic"].get("cluster_shares", {}).get("details", [])
    }
    if not syn:
        return '<p class="muted">no cluster column</p>'
    rows = []
    for lab, e in syn.items():
        h = hold.get(lab, {})
        s_shape = e["column_shapes"].get("score")
        h_shape = h.get("column_shapes", {}).get("score")
        s_tr = e["pair_trends_unthresholded"].get("score")
        h_tr = h.get("pair_trends_unthresholded", {}).get("score")
        sh = shares.get(lab, {})
        rows.append(
            f"<tr><td class='l'>cluster {html.escape(lab)}</td>"
            f"<td>{_fmt(sh.get('real_share'), True)}</td>"
            f"<td>{_fmt(sh.get('synthetic_share'), True)}</td>"
            f"<td>{e['rows_real']}</td><td>{e['rows_candidate']}</td>"
            f"<td class='{_cls(s_shape, h_shape)}'>{_fmt(s_shape)}</td><td>{_fmt(h_shape)}</td>"
            f"<td class='{_cls(s_tr, h_tr)}'>{_fmt(s_tr)}</td><td>{_fmt(h_tr)}</td></tr>"
        )
    return (
        "<table><tr><th class='l'>cluster</th><th>real share</th><th>synthetic share</th>"
        "<th>real n</th><th>synthetic n</th><th>shapes (LLM)</th><th>shapes (real half)</th>"
        "<th>trends (LLM)</th><th>trends (real half)</th></tr>" + "".join(rows) + "</table>"
    )


def _transition_table(doc: dict[str, Any]) -> str:
    t = doc["candidates"]["synthetic"].get("transition_similarity", {})
    det = t.get("details")
    if not det:
        return f'<p class="muted">{html.escape(t.get("error", "no transition table"))}</p>'
    rows = "".join(
        f"<tr><td class='l'>{html.escape(str(d.get('prev_cluster')))} → "
        f"{html.escape(str(d.get('cluster')))}</td><td>{_fmt(d.get('real_share'), True)}</td>"
        f"<td>{_fmt(d.get('synthetic_share'), True)}</td>"
        f"<td>{_fmt(d.get('real_transition_prob'), True)}</td>"
        f"<td>{_fmt(d.get('synthetic_transition_prob'), True)}</td></tr>"
        for d in det
    )
    return (
        "<table><tr><th class='l'>previous → current</th><th>real share</th>"
        "<th>synthetic share</th>"
        "<th>real P(current | prev)</th><th>synthetic P(current | prev)</th></tr>"
        + rows
        + "</table>"
    )


def _na_gap_sentence(details: list[dict[str, Any]]) -> str:
    """One sentence on item non-response: mean NA share of real vs synthetic answers."""
    real = [d["real_na_share"] for d in details if d.get("real_na_share") is not None]
    syn = [d["synthetic_na_share"] for d in details if d.get("synthetic_na_share") is not None]
    if not real or not syn:
        return ""
    r, s = sum(real) / len(real), sum(syn) / len(syn)
    if abs(r - s) < 0.005:
        verdict = "the synthetic rows match the real item non-response on average"
    elif s < r:
        verdict = (
            "the synthetic rows leave fewer answers blank than the real respondents (a gap; "
            "the calibrated mode draws each row's pattern of missing answers from the real ones)"
        )
    else:
        verdict = "the synthetic rows leave more answers blank than the real respondents"
    return (
        f"<p>Item non-response: real answers are missing in {r:.1%} of cells on average, "
        f"synthetic ones in {s:.1%} — {html.escape(verdict)}.</p>"
    )


def _na_table(doc: dict[str, Any]) -> str:
    syn = doc["candidates"]["synthetic"].get("na_share_similarity", {})
    hold = doc["candidates"].get("_real_holdout", {}).get("na_share_similarity", {})
    det = syn.get("details", [])
    if not det:
        return f'<p class="muted">{html.escape(syn.get("error", "no NA figures"))}</p>'
    hmap = {d["variable"]: d for d in hold.get("details", [])}
    rows = []
    for d in det:
        h = hmap.get(d["variable"], {})
        hd = h.get("abs_diff")
        rows.append(
            f"<tr><td class='l'>{html.escape(d['variable'])}</td>"
            f"<td>{_fmt(d.get('real_na_share'), True)}</td>"
            f"<td>{_fmt(d.get('synthetic_na_share'), True)}</td>"
            f"<td class='{_cls(d.get('abs_diff'), hd, higher=False)}'>"
            f"{_fmt(d.get('abs_diff'), True)}</td>"
            f"<td>{_fmt(hd, True)}</td></tr>"
        )
    per = syn.get("per_cluster", {})
    per_txt = "; ".join(
        f"cluster {k}: mean |Δ| {_fmt(v.get('mean_abs_diff'), True)}" for k, v in per.items()
    )
    gap = _na_gap_sentence(det)
    return (
        gap + "<table><tr><th class='l'>variable</th><th>real NA</th><th>synthetic NA</th>"
        "<th>|Δ| (LLM)</th>"
        "<th>|Δ| real half vs half</th></tr>"
        + "".join(rows)
        + "</table>"
        + (f"<p class='muted'>{html.escape(per_txt)}</p>" if per_txt else "")
    )


def _sampling_note(sampling: dict[str, Any]) -> str:
    """Says when the real-half reference and the baselines used a sample of each half."""
    if not sampling.get("sampled"):
        return ""
    if "training_rows" in sampling:  # a --holdout run
        return (
            "<p class='muted'>The floor and the baselines use a random sample of "
            f"{sampling['training_rows_used']:,} of the {sampling['training_rows']:,} training "
            f"respondents and of {sampling['rows_used_per_half']:,} of the "
            f"{sampling['rows_per_half']:,} held-out respondents (cap: "
            f"{sampling['cap_per_half']:,}); the LLM output is scored against every held-out "
            "respondent.</p>"
        )
    return (
        "<p class='muted'>The real-vs-real reference and the baselines use a random sample of "
        f"{sampling['rows_used_per_half']:,} of the {sampling['rows_per_half']:,} rows of each "
        "real half (cap per half: "
        f"{sampling['cap_per_half']:,}); the LLM output is still scored against the whole wave, "
        "its exact copies and distances to closest record against every real row.</p>"
    )


def _table_spread_note(docs: list[dict[str, Any]], key: str) -> str:
    """The floor's range over its seeded splits, per wave, under a model x wave table."""
    seen: dict[str, str] = {}
    for d in sorted(docs, key=lambda d: d["model_dir"]):  # the tables' reference model dir
        sp = (d.get("floor_spread") or {}).get(key)
        if d["wave"] not in seen and sp and len(sp.get("values", [])) > 1:
            seen[d["wave"]] = (
                f"wave {html.escape(d['wave'])} {sp['min']:.2f}–{sp['max']:.2f} (sd {sp['sd']:.3f})"
            )
    if not seen:
        return ""
    reps = len(next(iter(docs[0].get("floor_spread", {}).values()), {}).get("values", []))
    return (
        f"<p class='muted'>_real_holdout over {reps} seeded splits: "
        + "; ".join(seen[w] for w in sorted(seen, key=wave_sort_key))
        + "</p>"
    )


def _table_size_note(docs: list[dict[str, Any]]) -> str:
    """Where model dirs of one wave differ in size, whose size the tables' references match."""
    by_wave: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_wave.setdefault(d["wave"], []).append(d)
    notes = []
    for wave, group in by_wave.items():
        sizes = {d["model_dir"]: (d.get("rows") or {}).get("synthetic") for d in group}
        if len(set(sizes.values())) > 1:
            first = sorted(sizes)[0]
            others = ", ".join(f"{html.escape(m)} {n}" for m, n in sorted(sizes.items())[1:])
            notes.append(
                f"wave {html.escape(wave)}: size-matched to {html.escape(first)} "
                f"({sizes[first]} rows; {others})"
            )
    if not notes:
        return ""
    return (
        "<p class='muted'>The reference columns of these tables are size-matched to one model "
        "dir per wave; each model dir's own size-matched references are in its section below: "
        + "; ".join(notes)
        + ".</p>"
    )


def _reference_note(doc: dict[str, Any]) -> str:
    """What the figures are scored against, and at what size the floor and baselines are."""
    sm = (doc.get("rows") or {}).get("size_matched") or {}
    size = ""
    if sm.get("candidate_rows"):
        reps = sm.get("floor_repeats") or 1
        size = (
            f" The floor ({sm.get('floor_rows')} rows, {reps} seeded splits: its range is shown "
            f"under each figure) and the baselines ({sm.get('candidate_rows')} rows) are "
            "size-matched to the synthetic set."
        )
    if _held_out(doc):
        h = (doc.get("reference") or {}).get("holdout", {})
        return (
            "<p class='muted'>Reference: <b>held-out respondents</b> — "
            f"{h.get('share', '?')} of the respondents (by {html.escape(str(h.get('id_column')))}, "
            f"seed {h.get('seed')}) never reached steps 1-3; the baselines are fitted on the same "
            f"training respondents the run saw.{size}</p>"
        )
    return f"<p class='muted'>Reference: the real wave.{html.escape(size)}</p>" if size else ""


def _collapse_section(doc: dict[str, Any]) -> str:
    """Variance collapse: the collapsed share per candidate and cluster (the chart per item is
    drawn under the distributions, in the same PNG)."""
    cands = doc.get("candidates", {})
    vc = (cands.get("synthetic") or {}).get("variance_collapse") or {}
    details = vc.get("details") or []
    if not details:
        return ""
    labels = _cand_labels(doc)
    rows = []
    for c in CAND_LABELS:
        e = (cands.get(c) or {}).get("variance_collapse") or {}
        share = e.get("collapsed_share")
        per = e.get("per_cluster_collapsed_share") or {}
        cl = ", ".join(f"cluster {k}: {_fmt(v, True)}" for k, v in sorted(per.items()))
        items = ", ".join(e.get("collapsed_items") or []) or "none"
        rows.append(
            f"<tr><td class='l'>{html.escape(labels[c])}</td><td>{_fmt(share, True)}</td>"
            f"<td class='l'>{html.escape(cl)}</td><td class='l'>{html.escape(items)}</td></tr>"
        )
    return (
        "<h4>Variance collapse (answer entropy per item; chart under the distributions)</h4>"
        "<table><tr><th class='l'>candidate</th><th>collapsed items</th><th class='l'>per "
        "cluster</th><th class='l'>items</th></tr>" + "".join(rows) + "</table>"
    )


def _privacy_section(doc: dict[str, Any]) -> str:
    """Membership inference against the LLM output next to the baselines, with a reading."""
    from panelsynth.evaluate.reading import membership_sentence

    cands = doc.get("candidates", {})
    labels = _cand_labels(doc)
    rows = []
    for c in ("synthetic", "_baseline_marginal", "_baseline_cart"):
        m = (cands.get(c) or {}).get("membership_inference") or {}
        if m.get("error"):
            rows.append(
                f"<tr><td class='l'>{html.escape(labels[c])}</td><td class='l na' colspan='5'>"
                f"{html.escape(str(m['error']))}</td></tr>"
            )
            continue
        rows.append(
            f"<tr><td class='l'>{html.escape(labels[c])}</td>"
            f"<td class='l'>{html.escape(str(m.get('members_are', '')))} "
            f"({m.get('members_scored', m.get('members'))})</td>"
            f"<td class='l'>{html.escape(str(m.get('non_members_are', '')))} "
            f"({m.get('non_members_scored', m.get('non_members'))})</td>"
            f"<td>{_fmt(m.get('tpr_at_1pct_fpr'), True)}</td>"
            f"<td>{_fmt(m.get('tpr_at_10pct_fpr'), True)}</td><td>{_fmt(m.get('auc'))}</td></tr>"
        )
    line = membership_sentence(doc.get("summary", {})) or (
        "Membership inference against the LLM output is not available for this run (see the table)."
    )
    return (
        "<h4>Privacy: membership inference (closest synthetic row nearer than a threshold)</h4>"
        f"<p>{html.escape(line)}</p><table><tr><th class='l'>candidate</th>"
        "<th class='l'>members</th><th class='l'>non-members</th><th>TPR at 1% FPR ↓</th>"
        "<th>TPR at 10% FPR ↓</th><th>AUC ↓ (0.5 = chance)</th></tr>" + "".join(rows) + "</table>"
    )


def _pair_section(ws: Workspace, doc: dict[str, Any]) -> str:
    md, wave = doc["model_dir"], doc["wave"]
    rows = doc.get("rows", {})
    split = (
        f"training {rows.get('training')} / held-out {rows.get('held_out')}"
        if _held_out(doc)
        else f"halves {rows.get('real_half_a')}/{rows.get('real_half_b')}"
    )
    parts = [
        f"<h3 id='{html.escape(md)}-w{html.escape(wave)}'>{html.escape(md)} — wave "
        f"{html.escape(wave)} <span class='muted'>({html.escape(doc.get('mode', '?'))} mode, "
        f"real n={rows.get('real')}, synthetic n={rows.get('synthetic')}, "
        f"{split})"
        "</span></h3>"
    ]
    parts.append(_reference_note(doc))
    parts.append(_sampling_note(rows.get("reference_sampling") or {}))
    disagreements = (doc.get("manifest_check") or {}).get("warnings") or []
    if disagreements:
        parts.append(
            "<p class='warn'><b>The CSV and its run manifest disagree:</b> "
            + "; ".join(html.escape(w) for w in disagreements)
            + "</p>"
        )
    parts.append(
        "<h4>Reading</h4><ul class='reading'>"
        + "".join(f"<li>{html.escape(s)}</li>" for s in doc.get("reading", []))
        + "</ul>"
    )
    parts.append("<h4>Every figure next to its real-vs-real reference and the baselines</h4>")
    parts.append(_summary_table(doc))
    parts.append("<div class='grid'><div><h4>Per cluster</h4>" + _per_cluster_table(doc) + "</div>")
    parts.append(
        "<div><h4>Previous → current cluster</h4>" + _transition_table(doc) + "</div></div>"
    )
    parts.append("<h4>Missing answers (NA share per variable)</h4>" + _na_table(doc))
    parts.append(_privacy_section(doc))
    parts.append(_collapse_section(doc))
    parts.append(
        "<h4>Distributions, real vs synthetic (NA as its own bar), and answer entropy per item</h4>"
    )
    parts.append(_png(ws.eval_plot(md, wave)))
    notes = doc.get("notes", [])
    nans = doc.get("nan_explanations", [])
    if notes or nans:
        parts.append(
            "<details><summary>Notes and why some figures are missing "
            f"({len(nans)} explained NaN)</summary><ul>"
            + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
            + "".join(
                f"<li><code>{html.escape(n['path'])}</code>: {html.escape(n['reason'])}</li>"
                for n in nans[:200]
            )
            + "</ul></details>"
        )
    return "".join(parts)


def collect_docs(ws: Workspace) -> list[dict[str, Any]]:
    """Every metrics JSON of the workspace, in model-dir and wave order."""
    docs = []
    for md in ws.model_dirs_with_output():
        for w in ws.generated_waves(md):
            p = ws.eval_metrics_json(md, w)
            if p.exists():
                try:
                    docs.append(json.loads(p.read_text(encoding="utf-8")))
                except json.JSONDecodeError:
                    log.warning("skipping unreadable %s", p)
    docs.sort(key=lambda d: (d["model_dir"], wave_sort_key(d["wave"])))
    return docs


def write_report(ws: Workspace) -> Path:
    """Write ``Evaluation/report.html`` from what is on disk; returns its path."""
    docs = collect_docs(ws)
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>panelsynth evaluation — {html.escape(ws.root.name)}</title>"
        f"<style>{CSS}</style></head><body>"
    ]
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    versions = docs[0]["versions"] if docs else {}
    parts.append(
        f"<h1>Synthetic data evaluation — {html.escape(ws.root.name)}</h1>"
        f"<p class='muted'>{html.escape(str(ws.root))} · generated {now} · panelsynth "
        f"{html.escape(str(versions.get('panelsynth', '?')))} · sdmetrics "
        f"{html.escape(str(versions.get('sdmetrics', '?')))}</p>"
    )
    parts.append(
        "<p>Every score is in [0, 1] and higher is better unless marked ↓. Each LLM figure is "
        "shown next to the <b>real half</b> column: a random half of the real wave scored against "
        "the other half with the same code — the sampling-noise floor, the best a synthetic set "
        "can expect. Two statistical baselines (independent per-cluster marginals; sequential "
        "CART as in synthpop) show what simple methods reach. "
        "<span class='legend'><span class='good'>within 0.02 of the floor</span>"
        "<span class='mid'>within 0.15</span><span class='bad'>further</span></span></p>"
    )
    if docs:
        parts.append("<h2>At a glance</h2><ul class='reading'>")
        for d in docs:
            first = headline(d["summary"], label_of_floor(_held_out(d)))
            parts.append(
                f"<li><a href='#{html.escape(d['model_dir'])}-w{html.escape(d['wave'])}'>"
                f"{html.escape(d['model_dir'])}, wave {html.escape(d['wave'])}</a>: "
                f"{html.escape(first)}</li>"
            )
        parts.append("</ul>")
    parts.append(
        "<h2>Model × wave tables</h2><p class='muted'>Files in Evaluation/Evaluation "
        "results/. Rows are waves; columns the model dirs, then the references.</p>"
    )
    specs = [(n, ws.eval_table(n)) for n in TABLE_KEYS] + [
        (n, extra_table_path(ws, n)) for n in EXTRA_TABLE_KEYS
    ]
    for name, path in specs:
        if path.exists():
            df = pd.read_csv(path, dtype={"wave": str}).set_index("wave")
            parts.append(_table_html(df, TABLE_TITLES.get(name, name)))
            parts.append(_table_spread_note(docs, name))
    parts.append(_table_size_note(docs))
    trend_nan = [d for d in docs if d["summary"].get("density_trend", {}).get("synthetic") is None]
    if trend_nan:
        parts.append(
            "<p class='muted'>sdmetrics Column Pair Trends is empty for "
            + ", ".join(
                f"{html.escape(d['model_dir'])} wave {html.escape(d['wave'])}" for d in trend_nan
            )
            + ": no column pair's real association exceeds sdmetrics' threshold (Cramér's "
            "V &gt; 0.3, |r| &gt; 0.5). The unthresholded table scores every pair.</p>"
        )
    parts.append(panel_html(ws, docs))  # "" unless a synthetic panel was evaluated
    parts.append("<h2>Per model and wave</h2>")
    for d in docs:
        parts.append(_pair_section(ws, d))
    parts.append("<h2>Method notes</h2><ul>")
    if docs:
        for k, v in docs[0].get("protocol", {}).items():
            if isinstance(v, str):
                parts.append(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>")
        parts.append(f"<li><b>sdtypes</b>: {html.escape(docs[0].get('sdtype_choice', ''))}</li>")
    parts.append("</ul></body></html>")
    path = ws.report_html()
    atomic_write_text(path, "".join(parts))
    return path


__all__ = ["collect_docs", "verdict", "write_report"]
