"""``panelsynth evaluate-imputation``: every method on the same masked panels (issue 15).

Per mask ``r`` (seed ``seed + r``): :func:`mask_panel` hides a share of the observed answers and
the last observed wave of a share of the respondents; every requested method imputes the masked
panel ``m`` times by the same code as ``panelsynth impute``; :func:`score_imputations` scores
them against the hidden answers. On the demo workspace the simulator's true parameters give the
Bayes-optimal imputation of one item (:mod:`panelsynth.impute.demo_reference`) and each method's
distance from it. Writes ``Evaluation/<model_dir>/imputation_metrics.json`` and
``imputation_report.html``.
"""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from panelsynth.config import load_config
from panelsynth.errors import PanelsynthError
from panelsynth.impute.gaps import Panel, find_gaps, load_panel
from panelsynth.impute.mask import mask_panel
from panelsynth.impute.run import ImputeOptions, check_m, check_method, llm_books, make_imputer
from panelsynth.impute.score import pool_coverage, score_imputations
from panelsynth.io import atomic_write_text
from panelsynth.llm.keys import scrub_data
from panelsynth.workspace import Workspace

log = logging.getLogger("panelsynth")

#: The columns of the summary table: label -> how to read it from the per-mask results.
TABLE = [
    ("accuracy (hidden answers)", "item", "accuracy"),
    ("accuracy (hidden waves)", "wave", "accuracy"),
    ("MAE ordinal", "all", "mae"),
    ("TVD", "all", "tvd"),
    ("mean |corr diff|", "all", "corr_diff"),
    ("coverage 95% (Rubin)", None, "covered"),
    ("coverage, between-imputation interval", None, "covered_between"),
    ("mean |pooled - real mean|", "all", "interval_abs_bias"),
    ("FMI", "all", "fmi"),
]
BAYES_KEYS = [
    "accuracy",
    "mae",
    "tvd_hidden",
    "bayes_mode_accuracy",
    "mode_agreement",
    "expectation_gap",
    "pooled_tvd",
    "excess_log_loss",
]


@dataclass
class EvalSettings:
    masks: int = 1
    cell_share: float = 0.10
    wave_share: float = 0.10
    bayes_item: str | None = "vaccimportant"


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def summary_row(method: str, results: list[dict], seconds: float) -> dict[str, Any]:
    """One row of the summary table: each metric averaged over masks, coverage pooled."""
    row: dict[str, Any] = {"method": method}
    for label, kind, key in TABLE:
        if kind is None:
            row[label] = pool_coverage(results, key)
        else:
            row[label] = _mean([r["summary"][kind][key] for r in results])
    row["seconds per mask"] = seconds / max(1, len(results))
    return row


def bayes_row(method: str, rows: list[dict]) -> dict[str, Any]:
    """Distance from the Bayes-optimal imputation, averaged over masks."""
    return {
        "method": method,
        **{k: _mean([r[k] for r in rows]) for k in BAYES_KEYS},
        "n_cells": int(sum(r["n_cells"] for r in rows)),
    }


def demo_reference(ws: Workspace, panel: Panel, item: str | None) -> tuple[Any, str | None]:
    """The Bayes-optimal reference of ``item`` when ``ws`` is an unchanged demo workspace.

    Returns ``(reference, None)`` or ``(None, why not)``.
    """
    if not item:
        return None, "no item asked for"
    from panelsynth.demo.build import demo_marker

    try:
        marker = json.loads(demo_marker(ws).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, "not a demo workspace (its generating process is unknown)"
    if not any(item in pw.var_types for pw in panel.waves.values()):
        return None, f"{item} is not among the imputed variables"
    from panelsynth.demo import simulate_panel
    from panelsynth.impute.demo_reference import BayesReference

    sim = simulate_panel(int(marker["n_respondents"]), seed=int(marker["seed"]))
    try:
        return BayesReference(sim, item), None
    except ValueError as err:
        return None, str(err)


def evaluate_imputation(
    workspace: str | Path,
    methods: list[str],
    client: Any,
    model_dir: str,
    options: ImputeOptions,
    settings: EvalSettings,
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Mask, impute with every method, score; write the JSON and the HTML report.

    Returns:
        The JSON document (also written to ``Evaluation/<model_dir>/imputation_metrics.json``).
    """
    ws = Workspace(workspace)
    ws.must_exist()
    config = load_config(ws.config_path)
    check_m(options.m)
    for meth in methods:
        check_method(meth)
    if settings.masks < 1:
        raise PanelsynthError(f"--masks must be at least 1, not {settings.masks}")
    for name, share in (
        ("--cell-share", settings.cell_share),
        ("--wave-share", settings.wave_share),
    ):
        if not 0.0 <= share < 1.0:
            raise PanelsynthError(f"{name} must be in [0, 1), not {share}")
    panel = load_panel(ws, options.waves, mode="full", items=options.items, config=config)
    ref, ref_note = demo_reference(ws, panel, settings.bayes_item)
    folder = ws.root / "Evaluation" / model_dir
    ws.refuse_links(folder)
    started = time.time()
    results: dict[str, list[dict]] = {}
    seconds: dict[str, float] = {}
    bayes: dict[str, list[dict]] = {}
    books: dict[str, Any] = {}
    hidden = []
    for r in range(settings.masks):
        masked = mask_panel(
            panel,
            cell_share=settings.cell_share,
            wave_share=settings.wave_share,
            seed=options.seed + r,
        )
        hidden.append(masked.truth["kind"].value_counts().to_dict())
        gaps = find_gaps(masked.panel, dropouts=True)
        pred = None
        if ref is not None:
            from panelsynth.impute.demo_reference import distance_from_bayes

            pred = ref.predictive(masked.panel, masked.truth)
            own = ref.impute_item(pred, options.m, seed=options.seed + r)
            bayes.setdefault(ref.name, []).append(
                distance_from_bayes(pred, masked.truth, own, ref.item)
            )
        for meth in methods:
            ckpt_dir = folder / "imputation_checkpoints" / f"mask{r + 1}"
            if meth == "llm" and not options.llm.resume:
                _set_aside(ckpt_dir)
            imputer = make_imputer(meth, ws, client, config, ckpt_dir, options.llm)
            if progress:
                progress(f"mask {r + 1}/{settings.masks}: {imputer.name}")
            t0 = time.time()
            sets = imputer.impute(masked.panel, gaps, options.m, options.seed + r)
            seconds[imputer.name] = seconds.get(imputer.name, 0.0) + time.time() - t0
            res = score_imputations(panel, masked.panel, masked.truth, sets, method=imputer.name)
            results.setdefault(imputer.name, []).append(res)
            if meth == "llm":
                books[f"mask{r + 1}"] = llm_books(imputer, config, client)
            if pred is not None:
                bayes.setdefault(imputer.name, []).append(
                    distance_from_bayes(pred, masked.truth, sets, ref.item)
                )
    table = [summary_row(name, res, seconds[name]) for name, res in results.items()]
    doc = {
        "kind": "imputation evaluation",
        "workspace_waves": panel.order,
        "items": options.items,
        "respondents": {w: int(len(pw.frame)) for w, pw in panel.waves.items()},
        "settings": {
            **asdict(settings),
            "m": options.m,
            "seed": options.seed,
            "methods": methods,
            "model": getattr(client, "label", None) if "llm" in methods else None,
        },
        "hidden_per_mask": hidden,
        "table": table,
        "bayes_item": (
            {
                "item": ref.item,
                "rows": [bayes_row(n, rows) for n, rows in bayes.items()],
            }
            if ref is not None
            else {"item": settings.bayes_item, "skipped": ref_note}
        ),
        "per_mask": results,
        "llm_books": books,
        "wall_seconds": round(time.time() - started, 3),
    }
    json_path = folder / "imputation_metrics.json"
    atomic_write_text(json_path, json.dumps(scrub_data(doc), indent=1, default=str) + "\n")
    html_path = folder / "imputation_report.html"
    atomic_write_text(html_path, report_html(doc))
    doc["paths"] = {"json": ws.rel(json_path), "report": ws.rel(html_path)}
    return doc


def _set_aside(folder: Path) -> None:
    """Keep the checkpoints of an earlier evaluation aside (renamed, never deleted)."""
    from panelsynth.impute._runpath import Checkpoint

    for path in sorted(folder.glob("*.checkpoint.jsonl")):
        moved = Checkpoint(path).archive()
        log.info("earlier evaluation checkpoint kept as %s", moved)


def _cell(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v))


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No rows.</p>"
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r.values()) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(doc: dict[str, Any]) -> str:
    """The report section: the summary table, the Bayes-optimal distance, what was hidden."""
    s = doc["settings"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Imputation evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:"
        "collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
        "td:first-child,th:first-child{text-align:left}</style></head><body>",
        "<h1>Imputation of the panel's gaps, evaluated by masking</h1>",
        f"<p>Waves {', '.join(doc['workspace_waves'])}; respondents per wave "
        f"{html.escape(json.dumps(doc['respondents']))}; {s['masks']} mask(s) hiding "
        f"{s['cell_share']:.0%} of the observed answers and the last observed wave of "
        f"{s['wave_share']:.0%} of the respondents who have an earlier one; m = {s['m']} "
        f"completed sets per method; seed {s['seed']}.</p>",
        f"<p>Hidden per mask: {html.escape(json.dumps(doc['hidden_per_mask']))}</p>",
        "<h2>Every method on the same hidden answers</h2>",
        _table(doc["table"]),
        "<p>Accuracy and MAE: means over variables of the share of hidden cells imputed exactly "
        "and the mean absolute error (ordinal items). TVD: imputed against hidden values. "
        "Coverage: Rubin's rules interval of each item's mean against the real (before masking) "
        "mean; see docs/imputation.md.</p>",
        "<h2>Distance from the Bayes-optimal imputation</h2>",
    ]
    b = doc["bayes_item"]
    if "rows" in b:
        parts += [
            f"<p>Item <code>{html.escape(b['item'])}</code>: the posterior predictive under the "
            f"demo simulator's true parameters.</p>",
            _table(b["rows"]),
        ]
    else:
        parts.append(f"<p>Not computed: {html.escape(str(b['skipped']))}.</p>")
    if doc["llm_books"]:
        rows = []
        for mask, books in doc["llm_books"].items():
            cost = books["cost"].get("usd")
            rows.append(
                {
                    "mask": mask,
                    "calls": sum(p["calls"] for p in books["passes"]),
                    "invalid replies": sum(p["invalid_rows"] for p in books["passes"]),
                    "input tokens": books["tokens"]["input"],
                    "output tokens": books["tokens"]["output"],
                    "cost (USD)": cost,
                }
            )
        parts += ["<h2>What the LLM imputation cost</h2>", _table(rows)]
    parts.append("</body></html>\n")
    return "\n".join(parts)
