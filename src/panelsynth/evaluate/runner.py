"""Evaluate every (model dir, wave) of a workspace: tables, metrics JSON, plots and the report.

The sequence: :func:`~.discover.plan_evaluations` picks the pairs; each pair is read
(:func:`~.pair.read_pair`), scored next to its wave's reference (:mod:`.suite`, :mod:`.scoring`),
written as a metrics JSON (:mod:`.document`) and a plot (:mod:`.plots`) — in this process, or for
large waves in worker processes (:mod:`.parallel`); then the model x wave tables (:mod:`.tables`)
and the report (:mod:`.report`) are rewritten.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from panelsynth.config import PanelsynthConfig, load_config
from panelsynth.errors import PanelsynthError
from panelsynth.evaluate.base import single_thread
from panelsynth.evaluate.discover import clean_outputs, plan_evaluations
from panelsynth.evaluate.document import build_metrics_doc
from panelsynth.evaluate.heldout import HeldOut, held_out_frames
from panelsynth.evaluate.membership import synthetic_membership
from panelsynth.evaluate.outcome import EvaluationSummary, PairOutcome, ProgressCallback
from panelsynth.evaluate.pair import Context, Pair, check_manifest, read_pair
from panelsynth.evaluate.panel_eval import evaluate_panels
from panelsynth.evaluate.parallel import (
    MAX_WORKERS,
    PARALLEL_MIN_WAVE_BYTES,
    run_parallel,
    wave_groups,
    worker_count,
)
from panelsynth.evaluate.protocol import SYNTHETIC
from panelsynth.evaluate.report import write_report
from panelsynth.evaluate.scoring import (
    Scorecard,
    duplicate_share_sample,
    membership_result,
    score_candidate,
)
from panelsynth.evaluate.suite import wave_rng
from panelsynth.evaluate.tables import (
    EXTRA_TABLE_KEYS,
    TABLE_KEYS,
    extra_table_path,
    write_tables,
)
from panelsynth.io import atomic_write_text
from panelsynth.prepare_switch import finish_interrupted_prepare
from panelsynth.workspace import Workspace

log = logging.getLogger("panelsynth")


def evaluate_workspace(
    workspace: str | Path,
    *,
    model_dirs: Sequence[str] | None = None,
    waves: Sequence[str] | None = None,
    seed: int = 42,
    progress: ProgressCallback | None = None,
) -> EvaluationSummary:
    """Evaluate the synthetic waves of a workspace (SPEC §3.6).

    For every (model dir, wave) writes ``Evaluation/<model_dir>/wave{W}_metrics.json`` and
    ``<model_dir>_wave{W}_results.png``; updates the four model x wave tables in
    ``Evaluation/Evaluation results/`` (plus ``density_trend_unthresholded.csv`` and
    ``c2st_gb.csv``), with columns ``<model_dir>``, ``_real_holdout``, ``_baseline_marginal`` and
    ``_baseline_cart``; and rewrites ``Evaluation/report.html`` from every metrics JSON present.

    The per-wave references (real halves, baselines) are cached in the workspace's
    ``.panelsynth/cache`` (see :mod:`panelsynth.evaluate.refcache`); large waves are evaluated by
    worker processes, one per core (at most :data:`MAX_WORKERS`).

    Args:
        workspace: the study folder.
        model_dirs: model dirs to evaluate (default: every one with output).
        waves: waves to evaluate (default: every generated wave).
        seed: seed of the real halves, baselines, samples and classifiers.
        progress: optional ``progress(description, completed, total)`` callback.

    Raises:
        PanelsynthError: nothing to evaluate, unknown model dir or wave, or every evaluation
            failed (the first failure's message).
    """
    t0 = time.perf_counter()
    ws = Workspace(workspace)
    if ws.root.is_dir():
        finish_interrupted_prepare(ws)  # never score a half-switched set of prepare's outputs
    pairs = plan_evaluations(ws, model_dirs, waves)
    cfg = load_config(ws.config_path)
    clean_outputs(ws, pairs)
    with single_thread():  # see single_thread(): many small models, no OpenMP spin-waiting
        return _evaluate_pairs(ws, cfg, pairs, seed, progress, t0)


def _evaluate_pairs(
    ws: Workspace,
    cfg: PanelsynthConfig,
    pairs: list[tuple[str, str]],
    seed: int,
    progress: ProgressCallback | None,
    t0: float,
) -> EvaluationSummary:
    groups = wave_groups(pairs)
    workers = worker_count(ws, groups)
    if workers > 1:
        outcomes = run_parallel(ws, pairs, groups, seed, progress, workers)
    else:
        outcomes = _run_serial(Context(ws, cfg, seed), pairs, progress)
    good = [o for o in outcomes if not o.error]
    if not good:
        raise PanelsynthError(outcomes[0].error or "evaluation failed")
    tables = write_tables(ws, good)
    panels = evaluate_panels(ws, cfg, good, seed)  # linked synthetic waves only (issue 19)
    report = write_report(ws)
    return EvaluationSummary(ws.root, outcomes, tables, report, time.perf_counter() - t0, panels)


def _run_serial(
    ctx: Context, pairs: list[tuple[str, str]], progress: ProgressCallback | None
) -> list[PairOutcome]:
    outcomes: list[PairOutcome] = []
    for i, (md, w) in enumerate(pairs):
        if progress:
            progress(f"{md} · wave {w}", i, len(pairs))
        outcomes.append(_evaluate_one(ctx, md, w))
        if progress:
            progress(f"{md} · wave {w}", i + 1, len(pairs))
    return outcomes


def _evaluate_one(ctx: Context, md: str, w: str) -> PairOutcome:
    """One (model dir, wave); a failure becomes the outcome's ``error``."""
    t1 = time.perf_counter()
    try:
        outcome = evaluate_pair(ctx, md, w)
    except PanelsynthError as err:
        log.warning("%s wave %s: %s", md, w, err)
        outcome = PairOutcome(md, w, error=str(err))
    except Exception as err:  # keep going: one broken pair must not lose the others
        log.exception("%s wave %s failed", md, w)
        outcome = PairOutcome(md, w, error=f"{type(err).__name__}: {err}")
    outcome.seconds = time.perf_counter() - t1
    return outcome


def evaluate_group(root: str, pairs: list[tuple[str, str]], seed: int) -> list[PairOutcome]:
    """Evaluate some pairs in a fresh context (the body of a worker process)."""
    ws = Workspace(root)
    ctx = Context(ws, load_config(ws.config_path), seed)
    with single_thread():
        return [_evaluate_one(ctx, md, w) for md, w in pairs]


def evaluate_pair(ctx: Context, md: str, wave: str) -> PairOutcome:
    """One (model dir, wave): read -> reference -> score -> metrics JSON -> plot."""
    pair = read_pair(ctx, md, wave)
    h, held, columns = pair.frames, pair.held, pair.columns
    ref = ctx.reference(
        h["real"],
        columns,
        wave,
        pair.target,
        size=len(h["synthetic"]),
        split=(held.training, held.held_out) if held else None,
        split_key=held.key() if held else None,
    )
    card = score_candidate(
        SYNTHETIC,
        h["synthetic"],
        columns,
        fidelity_real=pair.fidelity_real,
        copy_ref=h["real"],
        copy_ref_half=ref.half_b,
        dcr_ref=held.training if held else h["real"],
        utility_test=ref.half_b,
        holdout_dcr=ref.holdout_dcr,
        target=pair.target,
        seed=ctx.seed,
        examples=h.get("examples"),
    )
    card.metrics["membership_inference"] = membership_result(
        synthetic_membership(columns, h, held, pair.manifest, ctx.seed)
    )
    dup_matched = duplicate_share_sample(
        h["real"], columns, len(h["synthetic"]), wave_rng(ctx.seed + 1, wave)
    )
    doc = build_metrics_doc(
        md=md,
        wave=wave,
        mode=pair.mode,
        mode_source=pair.mode_source,
        meta_source=pair.meta_source,
        columns=columns,
        card=card,
        ref=ref,
        dup_matched=dup_matched,
        target=pair.target,
        target_source=pair.target_source,
        examples_path=ctx.ws.rel(pair.examples_path),
        has_examples="examples" in h,
        n_real=len(h["real"]),
        coerced=h["synthetic"].attrs.get("coerced_to_na", {}),
        extra_synth_cols=sorted(set(pair.synthetic_columns) - set(columns.names)),
        held=held,
    )
    doc["manifest_check"] = {
        "agrees": not pair.manifest_warnings,
        "warnings": pair.manifest_warnings,
    }
    out_json = ctx.ws.eval_metrics_json(md, wave)
    atomic_write_text(out_json, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return PairOutcome(
        md,
        wave,
        out_json,
        _plot(ctx.ws, pair, card),
        doc["summary"],
        floor_label="training vs held-out" if held else "real half",
    )


def _plot(ws: Workspace, pair: Pair, card: Scorecard) -> Path:
    """The pair's PNG: real vs synthetic shares per column, the collapse chart below."""
    from panelsynth.evaluate.plots import collapse_chart, plot_wave

    md, wave, h, held = pair.md, pair.wave, pair.frames, pair.held
    shapes = {
        c["column"]: c.get("score", math.nan)
        for c in card.metrics["column_shapes"].to_json().get("details", [])
    }
    return plot_wave(
        pair.fidelity_real,
        h["synthetic"],
        pair.columns,
        ws.eval_plot(md, wave),
        shapes=shapes,
        footer=_collapse_png(card, f"{md} — wave {wave}: answer entropy", collapse_chart),
        title=f"{md} — wave {wave} ({pair.mode} mode): "
        + (f"held-out n={len(held.held_out)}" if held else f"real n={len(h['real'])}")
        + f" vs synthetic n={len(h['synthetic'])}",
    )


def _collapse_png(card: Scorecard, title: str, draw: Callable[..., bytes]) -> bytes | None:
    """The variance-collapse chart of the LLM output (``None`` when it was not computed)."""
    res = card.metrics.get("variance_collapse")
    if res is None or res.details is None or res.details.empty:
        return None
    return draw(res.to_json()["details"], title=title)


# re-exported: the names the README, benchmarks and tests import from here
__all__ = [
    "EXTRA_TABLE_KEYS",
    "MAX_WORKERS",
    "PARALLEL_MIN_WAVE_BYTES",
    "TABLE_KEYS",
    "EvaluationSummary",
    "HeldOut",
    "PairOutcome",
    "ProgressCallback",
    "build_metrics_doc",
    "check_manifest",
    "clean_outputs",
    "evaluate_group",
    "evaluate_pair",
    "evaluate_workspace",
    "extra_table_path",
    "held_out_frames",
    "plan_evaluations",
    "write_tables",
]
