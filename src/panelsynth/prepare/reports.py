"""What ``prepare`` writes besides the waves: var types and metadata per mode, and ``Prepare/``.

- ``Dictionaries/var_types/[full/]types_wave{W}.json`` and the matching
  ``Dictionaries/json_metadata/[full/]metadata_wave{W}.json`` (so metadata keys == var-type keys);
- ``Prepare/``: ``fit_wave{W}.json`` and ``fit_report.csv`` (class sizes, average posterior,
  entropy, BIC for k = 1..4), ``selection.csv``, ``types.csv`` (every variable's type, role and
  why), ``missing_codes.csv``, ``item_ranking.csv``, ``transitions.csv``, ``warnings.txt`` and,
  for the demo, ``truth_check.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from panelsynth.config import PanelsynthConfig
from panelsynth.dictionaries import metadata_to_json
from panelsynth.io import atomic_write_text
from panelsynth.prepare.csvtext import csv_text
from panelsynth.prepare.results import WaveReport
from panelsynth.prepare.safety import relposix
from panelsynth.prepare_switch import StagedOutputs
from panelsynth.workspace import Workspace

if TYPE_CHECKING:
    from panelsynth.prepare.waves import WaveWork


def write_dictionaries(ws: Workspace, works: list[WaveWork], staging: StagedOutputs) -> None:
    """Var types and metadata of every wave, dense mode and full mode."""
    for w in works:
        r = w.report
        dense_types = {c: w.types[c] for c in r.dense_vars}
        for mode, types in ((None, dense_types), ("full", w.types)):
            meta = {c: w.meta[c] for c in types}
            staging.write(ws.var_types_for_write(r.wave, mode), json.dumps(types, indent=2) + "\n")
            staging.write(ws.metadata_json_for_write(r.wave, mode), metadata_to_json(meta) + "\n")


def write_reports(
    ws: Workspace,
    reports: list[WaveReport],
    ranking: pd.DataFrame,
    transitions: pd.DataFrame,
    cfg: PanelsynthConfig,
    engine: str,
    missing: str,
    warnings: list[str],
    staging: StagedOutputs | None = None,
) -> list[Path]:
    d = ws.prepare_dir()
    written: list[Path] = []

    def put(name: str, text: str) -> None:
        p = d / name
        if staging is not None:
            staging.write(p, text)
        else:
            atomic_write_text(p, text)
        written.append(p)

    rows = []
    sel_rows = []
    for r in reports:
        doc = {
            "wave": r.wave,
            "source": relposix(ws, r.source),
            "method": r.method,
            "engine": engine if r.method == "lca" else r.method,
            "missing": missing,
            "k": cfg.clustering.k,
            "seed": cfg.clustering.seed,
            "n_init": cfg.clustering.n_init,
            "n_respondents": r.n_respondents,
            "n_fit": r.n_fit,
            "n_linked_to_previous_wave": r.n_linked,
            "items": r.items,
            "class_sizes": {str(c): n for c, n in r.class_sizes.items()},
            "class_shares": {str(c): s for c, s in r.class_shares().items()},
            "average_posterior": {str(c): _round(a) for c, a in r.average_posterior.items()},
            "relative_entropy": _round(r.entropy),
            "bic": {str(k): _round(b, 2) for k, b in r.bic.items()},
            "bic_n": r.bic_n,
            "best_k_by_bic": min(r.bic, key=r.bic.get) if r.bic else None,
            "converged": r.converged,
            "alignment": r.alignment,
            "dense_vars": r.dense_vars,
            "full_vars": r.full_vars,
            "dropped_all_na": r.dropped,
            "demographics": r.demographics,
        }
        if r.truth is not None:
            doc["truth_check"] = r.truth.as_row()
        put(f"fit_wave{r.wave}.json", json.dumps(doc, indent=2) + "\n")
        row: dict[str, Any] = {
            "wave": r.wave,
            "method": r.method,
            "n_respondents": r.n_respondents,
            "n_items": len(r.items),
        }
        shares = r.class_shares()
        for c, n in r.class_sizes.items():
            row[f"cluster{c}_n"] = n
            row[f"cluster{c}_share"] = shares[c]
        for c, a in r.average_posterior.items():
            row[f"cluster{c}_avg_posterior"] = _round(a)
        row["relative_entropy"] = _round(r.entropy)
        for k, b in r.bic.items():
            row[f"bic_k{k}"] = _round(b, 2)
        row["best_k_by_bic"] = doc["best_k_by_bic"]
        row["alignment"] = r.alignment
        rows.append(row)
        for v in r.full_vars:
            sel_rows.append(
                {
                    "wave": r.wave,
                    "variable": v,
                    "clustered": v in r.items,
                    "dense": v in r.dense_vars,
                    "full": True,
                }
            )
        for v in r.dropped:
            sel_rows.append(
                {"wave": r.wave, "variable": v, "clustered": False, "dense": False, "full": False}
            )
    put("fit_report.csv", csv_text(pd.DataFrame(rows)))
    put("selection.csv", csv_text(pd.DataFrame(sel_rows)))
    put("types.csv", csv_text(_types_table(reports, cfg)))
    missing_rows = [row for r in reports for row in r.missing_codes]
    columns = ["wave", "variable", "code", "action", "n", "share", "why"]
    put("missing_codes.csv", csv_text(pd.DataFrame(missing_rows, columns=columns)))
    put("item_ranking.csv", csv_text(ranking))
    put("transitions.csv", csv_text(transitions))
    checks = [r.truth.as_row() for r in reports if r.truth is not None]
    if checks:
        put("truth_check.csv", csv_text(pd.DataFrame(checks)))
    put("warnings.txt", "".join(f"{w}\n" for w in warnings))
    return written


def _types_table(reports: list[WaveReport], cfg: PanelsynthConfig) -> pd.DataFrame:
    """``Prepare/types.csv``: every variable of every wave, its type, its role and why."""
    rows = []
    for r in reports:
        for v in r.full_vars:
            if v in r.demographics:
                role = "demographic"
            elif v == cfg.study.outcome:
                role = "outcome"
            else:
                role = "item (clustered)" if v in r.items else "item"
            rows.append(
                {
                    "wave": r.wave,
                    "variable": v,
                    "type": r.var_types.get(v, ""),
                    "role": role,
                    "dense": v in r.dense_vars,
                    "why": r.type_reasons.get(v, ""),
                }
            )
    return pd.DataFrame(rows, columns=["wave", "variable", "type", "role", "dense", "why"])


def _round(x: float | None, digits: int = 4) -> float | None:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return None
    return round(float(x), digits)
