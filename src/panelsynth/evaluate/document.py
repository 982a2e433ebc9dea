"""The metrics JSON of one (model dir, wave): built from the scorecards, every null explained,
with the reading in words (:mod:`.reading`); and the tolerant reader of a JSON object on disk."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from panelsynth.evaluate.base import MetricResult
from panelsynth.evaluate.columns import ORDINAL_SDTYPE_NOTE, EvalColumns
from panelsynth.evaluate.heldout import HeldOut
from panelsynth.evaluate.protocol import CANDIDATES, HOLDOUT, PROTOCOL, SUMMARY_METRICS, SYNTHETIC
from panelsynth.evaluate.reading import label_of_floor, read_summary
from panelsynth.evaluate.scoring import Scorecard, summary_values
from panelsynth.evaluate.suite import Reference

log = logging.getLogger("panelsynth")


def build_metrics_doc(
    *,
    md: str,
    wave: str,
    mode: str,
    mode_source: str,
    meta_source: str,
    columns: EvalColumns,
    card: Scorecard,
    ref: Reference,
    dup_matched: float,
    target: str | None,
    target_source: str,
    examples_path: str,
    has_examples: bool,
    n_real: int,
    coerced: dict[str, int],
    extra_synth_cols: list[str],
    held: HeldOut | None = None,
) -> dict[str, Any]:
    """The machine-readable record of one (model dir, wave); every null is explained."""
    from panelsynth import __version__ as ps_version
    from panelsynth.evaluate.sdm import sdmetrics_version

    cards = {SYNTHETIC: card, **ref.cards}
    values = {name: summary_values(c) for name, c in cards.items()}
    # size-matched diversity floor for this synthetic set
    values[HOLDOUT]["duplicate_share"] = (
        dup_matched,
        None if not math.isnan(dup_matched) else "no real rows",
    )
    keys = [k for k, _, _ in SUMMARY_METRICS] + sorted(
        {k for v in values.values() for k in v if k.startswith("cluster_")}
    )
    summary: dict[str, dict[str, float | None]] = {}
    explanations: list[dict[str, str]] = []
    for k in keys:
        row: dict[str, float | None] = {}
        for cand in CANDIDATES:
            v, why = values[cand].get(k, (math.nan, "not computed for this candidate"))
            row[cand] = _clean(v)
            if row[cand] is None:
                explanations.append(
                    {"path": f"summary.{k}.{cand}", "reason": why or "not computed"}
                )
        if all(x is None for x in row.values()) and k == "tstr_auc":
            continue
        summary[k] = row
    if target is None:
        explanations.append({"path": "summary.tstr_auc", "reason": target_source})
    candidates_json = {}
    for name, c in cards.items():
        entry: dict[str, Any] = {"rows": c.rows}
        for key, res in c.metrics.items():
            with_details = name == SYNTHETIC or key in (
                "variance_collapse",
                "column_shapes",
                "cluster_shares",
                "transition_similarity",
                "na_share_similarity",
            )
            entry[key] = _metric_json(res, with_details)
        entry["per_cluster"] = {
            lab: {
                "rows_real": e["rows_real"],
                "rows_candidate": e["rows_candidate"],
                "column_shapes": _metric_json(e["column_shapes"], name == SYNTHETIC),
                "pair_trends_unthresholded": _metric_json(e["pair_trends_unthresholded"], False),
            }
            for lab, e in c.per_cluster.items()
        }
        candidates_json[name] = entry
    notes = list(columns.notes)
    if coerced:
        notes.append(
            "synthetic values that are not numbers in numeric columns were read as NA: "
            + ", ".join(f"{k} ({v})" for k, v in coerced.items())
        )
    if extra_synth_cols:
        notes.append("synthetic columns not evaluated: " + ", ".join(extra_synth_cols))
    if not has_examples:
        notes.append(
            f"no few-shot examples file ({examples_path}): example-copy share not computed"
        )
    if held is not None and held.note:
        notes.append(held.note)
    label = "held-out respondents" if held is not None else "the real wave"
    doc: dict[str, Any] = {
        "model_dir": md,
        "wave": wave,
        "mode": mode,
        "mode_source": mode_source,
        "evaluated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": {"panelsynth": ps_version, "sdmetrics": sdmetrics_version()},
        "rows": {
            "real": n_real,
            "synthetic": card.rows,
            "real_half_a": len(ref.half_a),
            "real_half_b": len(ref.half_b),
            "reference_sampling": ref.sampling,
            "size_matched": ref.size_matched,
            **(
                {"training": len(held.training), "held_out": len(held.held_out)}
                if held is not None
                else {}
            ),
        },
        "reference": {
            "label": label,
            "floor": "training vs held-out respondents" if held is not None else "a real half",
            **({"holdout": held.spec.to_json()} if held is not None else {}),
        },
        "floor_spread": ref.floor_spread,
        "columns": columns.describe(),
        "evaluation_metadata": meta_source,
        "sdtype_choice": ORDINAL_SDTYPE_NOTE,
        "notes": notes,
        "target": {"variable": target, "source": target_source}
        if target
        else {"skipped": target_source},
        "protocol": PROTOCOL,
        "higher_is_better": {k: hib for k, _, hib in SUMMARY_METRICS},
        "labels": {k: lab for k, lab, _ in SUMMARY_METRICS},
        "summary": summary,
        "reading": read_summary(summary, floor_label=label_of_floor(held is not None)),
        "candidates": candidates_json,
    }
    explanations.extend(_explain_nulls(doc["candidates"], "candidates"))
    doc["nan_explanations"] = explanations
    return doc


def _metric_json(res: MetricResult, with_details: bool) -> dict[str, Any]:
    d = res.to_json(with_details=with_details)
    return _strip(d)


def _strip(obj: Any) -> Any:
    """NaN -> None in metric scores; drop other None/NaN leaves (they mean 'not applicable')."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            v2 = _strip(v)
            if v2 is None and k != "score":
                continue
            out[k] = v2
        return out
    if isinstance(obj, list | tuple):
        return [_strip(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else round(obj, 6)
    return obj


def _clean(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 6)


def _explain_nulls(obj: Any, path: str) -> list[dict[str, str]]:
    """Every null below ``obj`` with the reason found next to it (its ``error``)."""
    out: list[dict[str, str]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}.{k}"
            if v is None:
                out.append({"path": p, "reason": str(obj.get("error") or "unexplained")})
            else:
                out.extend(_explain_nulls(v, p))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_explain_nulls(v, f"{path}[{i}]"))
    return out


def read_json(path: Path) -> dict:
    """The JSON object in ``path`` (``{}``: missing, unreadable or not an object)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("ignoring unreadable %s", path)
        return {}
    return data if isinstance(data, dict) else {}
