"""The ``panel`` section of an evaluation (issue 19, item 4): found, scored and written by itself.

After the per-wave evaluation, for every model dir whose evaluated synthetic waves carry the
study's id column (``study.id_column``) with ids that link respondents between consecutive
generated waves, :func:`evaluate_panels` scores the synthetic panel with
:func:`~panelsynth.evaluate.longitudinal.panel_section` against the real waves (the prepared
``Original data``, linked by their own ids) and writes:

- the whole-panel section under ``panel`` in the **last** linked wave's ``wave{W}_metrics.json``,
  and in the other linked waves' JSONs a pointer (``panel.section_in``, ``panel.waves``);
- ``Evaluation/<model_dir>/panel_stability.png`` (real vs synthetic unchanged share per item).

Per-wave (unlinked) output has no id column, so nothing is added and nothing fails. When the ids
link only part of the waves (a pair of consecutive waves shares no id), the longest linked run
of waves is scored and the others are named in the section's notes.

A ``--holdout`` run is scored against its held-out respondents, as its cross-sectional figures
are: the split is by respondent id with a seeded hash, so the same people are held out in every
wave and the held-out waves form a real panel of their own.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from panelsynth.config import PanelsynthConfig
from panelsynth.data import clean_missing_by_variable, read_csv_any
from panelsynth.errors import PanelsynthError, WorkspaceError
from panelsynth.evaluate.document import read_json
from panelsynth.evaluate.heldout import held_out_frames
from panelsynth.evaluate.longitudinal import keyed, panel_section, wave_pairs
from panelsynth.evaluate.outcome import PairOutcome
from panelsynth.evaluate.pair import Context
from panelsynth.io import atomic_write_bytes, atomic_write_text, remove_stale_temporaries
from panelsynth.workspace import Workspace, wave_sort_key

log = logging.getLogger("panelsynth")

PANEL_PLOT = "panel_stability.png"


@dataclass
class PanelOutcome:
    """The panel evaluation of one model dir (``error``: it failed; nothing was written)."""

    model_dir: str
    waves: list[str]
    #: ``panel_section``'s summary: figure -> candidate -> value.
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics_json: Path | None = None
    plot: Path | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    #: What the synthetic panel is read against ("real panel" or "held-out respondents").
    reference: str = "real panel"


def panel_plot_path(ws: Workspace, model_dir: str) -> Path:
    return ws.eval_dir(model_dir) / PANEL_PLOT


def evaluate_panels(
    ws: Workspace, cfg: PanelsynthConfig, outcomes: list[PairOutcome], seed: int
) -> list[PanelOutcome]:
    """Score every model dir whose evaluated waves form a linked synthetic panel.

    A failure is logged and returned as the outcome's ``error``: the per-wave figures already
    written stay valid.
    """
    by_md: dict[str, list[str]] = {}
    for o in outcomes:
        if not o.error:
            by_md.setdefault(o.model_dir, []).append(o.wave)
    ctx = Context(ws, cfg, seed)
    results = []
    for md, waves in by_md.items():
        waves = sorted(waves, key=wave_sort_key)
        try:
            out = panel_for(ctx, md, waves)
        except PanelsynthError as err:
            log.warning("%s panel: %s", md, err)
            out = PanelOutcome(md, waves, error=str(err))
        except Exception as err:  # the per-wave figures stand without the panel's
            log.exception("%s panel evaluation failed", md)
            out = PanelOutcome(md, waves, error=f"{type(err).__name__}: {err}")
        if out is not None:
            results.append(out)
        _drop_dangling_pointers(ws, md)
    return results


def _drop_dangling_pointers(ws: Workspace, md: str) -> None:
    """Remove ``panel`` pointers to a metrics JSON that no longer holds that panel's section (a
    later evaluation of fewer waves rewrote it)."""
    for w in ws.generated_waves(md):
        path = ws.eval_metrics_json(md, w)
        doc = read_json(path)
        pointer = doc.get("panel") or {}
        if "section_in" not in pointer:
            continue
        target = read_json(path.parent / str(pointer["section_in"]))
        if (target.get("panel") or {}).get("waves") != pointer.get("waves"):
            del doc["panel"]
            atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")
            log.info("%s: removed the stale panel pointer of %s", md, ws.rel(path))


def linked_runs(
    frames: dict[str, pd.DataFrame], waves: list[str], id_column: str
) -> list[list[str]]:
    """Runs of consecutive waves (in ``waves``' order) whose ids link at least one respondent
    between each pair; waves whose frame lacks the id column break a run."""
    runs: list[list[str]] = []
    current: list[str] = []
    for w in waves:
        if w not in frames:
            current = []
            continue
        if current:
            prev = keyed(frames[current[-1]], id_column).index
            if len(prev.intersection(keyed(frames[w], id_column).index)) == 0:
                current = []
        if not current:
            current = [w]
            runs.append(current)
        else:
            current.append(w)
    return [r for r in runs if len(r) >= 2]


def panel_for(ctx: Context, md: str, waves: list[str]) -> PanelOutcome | None:
    """The panel evaluation of one model dir (``None``: its output is not a linked panel)."""
    ws, study = ctx.ws, ctx.cfg.study
    id_col = study.id_column
    raw: dict[str, pd.DataFrame] = {}
    for w in waves:
        df = read_csv_any(ws.output_csv(md, w))
        if id_col in df.columns and df[id_col].notna().any():
            raw[w] = df[df[id_col].notna()]
    runs = linked_runs(raw, waves, id_col)
    if not runs:
        if len(raw) >= 2:
            log.info("%s: the synthetic waves carry %r but its ids link nobody", md, id_col)
        return None
    run = max(runs, key=len)  # the first of the longest runs
    log.info("%s: scoring the synthetic panel of waves %s", md, ", ".join(run))
    notes = []
    others = [w for w in waves if w not in run]
    if others:
        notes.append(
            f"scored waves {', '.join(run)}; wave(s) {', '.join(others)} are not linked to them "
            f"by {id_col!r} (no id column, or no id shared with the neighbouring wave)"
        )
    real, synthetic, items, var_types, held = {}, {}, [], {}, []
    train: dict[str, pd.DataFrame] = {}
    for w in run:
        manifest = read_json(ws.manifest(md, w))
        mode = ctx.infer_mode(w, list(raw[w].columns), manifest)[0]
        wd = ctx.real_wave(w, mode)
        real[w] = _real_with_ids(ws, w, wd.frame, id_col)
        h = held_out_frames(ws, w, real[w], manifest)
        if h is not None:
            real[w], train[w] = h.held_out, h.training.reset_index(drop=True)
            held.append(w)
        synthetic[w] = clean_missing_by_variable(raw[w], study.missing_codes, wd.metadata)[
            0
        ].reset_index(drop=True)
        real[w] = real[w].reset_index(drop=True)
        for v, t in wd.var_types.items():
            if v != id_col and v in synthetic[w].columns and v not in var_types:
                items.append(v)
                var_types[v] = t
    reference = "real panel"
    if held:
        reference = "held-out respondents"
        notes.append(
            f"--holdout run: the real panel is the held-out respondents of wave(s) "
            f"{', '.join(held)} (split by {id_col!r}, so the same people in every wave), as in "
            f"the cross-sectional figures"
            + (
                "; the floor is as many training respondents scored against them and the CART "
                "panel is fitted on the training respondents"
                if len(held) == len(run)
                else ""
            )
            + (
                f"; wave(s) {', '.join(w for w in run if w not in held)} use all real respondents"
                if len(held) < len(run)
                else ""
            )
        )
    for a, b in wave_pairs(run):
        if len(keyed(real[a], id_col).index.intersection(keyed(real[b], id_col).index)) == 0:
            raise WorkspaceError(
                f"the real waves {a} and {b} share no {id_col!r} — the panel figures need the "
                f"real respondents linked (check the id column of Original data)"
            )
    section = panel_section(
        real,
        synthetic,
        id_column=id_col,
        items=items,
        waves=run,
        cluster_column=study.cluster_column,
        prev_cluster_column=study.prev_cluster_column,
        var_types=var_types,
        seed=ctx.seed,
        # the CART panel and the floor from the training respondents (every wave held out)
        train=train if len(held) == len(run) else None,
    )
    section["model_dir"] = md
    section["reference"] = reference
    section["notes"] = [*section.get("notes", []), *notes]
    return _write(ws, md, run, section, reference)


def _real_with_ids(ws: Workspace, wave: str, frame: pd.DataFrame, id_col: str) -> pd.DataFrame:
    """The prepared real wave with its id column (``load_wave`` keeps the file's row index)."""
    path = ws.original_data(wave)
    ids = read_csv_any(path)
    if id_col not in ids.columns:
        raise WorkspaceError(
            f"{ws.rel(path)} has no id column {id_col!r} (study.id_column) — the synthetic panel "
            f"carries ids but the real wave cannot be linked"
        )
    out = frame.copy()
    out[id_col] = ids[id_col].reindex(frame.index).to_numpy()
    return out[out[id_col].notna()]


def _write(
    ws: Workspace, md: str, run: list[str], section: dict[str, Any], reference: str
) -> PanelOutcome:
    from panelsynth.evaluate.panel_plot import stability_plot

    last = run[-1]
    target = ws.eval_metrics_json(md, last)
    plot = panel_plot_path(ws, md)
    ws.refuse_links(plot)
    remove_stale_temporaries(plot)  # left by a killed evaluation
    for w in run:
        path = ws.eval_metrics_json(md, w)
        doc = read_json(path)
        if not doc:
            raise WorkspaceError(f"{ws.rel(path)} is missing or unreadable — re-run the evaluation")
        doc["panel"] = (
            section if w == last else {"section_in": target.name, "waves": run, "model_dir": md}
        )
        atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    png = stability_plot(
        section, title=f"{md} — synthetic panel, waves {', '.join(run)} (vs {reference})"
    )
    atomic_write_bytes(plot, png)
    log.info("%s: panel figures of waves %s in %s", md, ", ".join(run), ws.rel(target))
    return PanelOutcome(
        md,
        run,
        summary=section["summary"],
        metrics_json=target,
        plot=plot,
        notes=list(section["notes"]),
        reference=reference,
    )
