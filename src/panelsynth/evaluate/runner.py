"""Evaluate every (model dir, wave) of a workspace: tables, metrics JSON, plots and the report."""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.config import PanelsynthConfig, load_config
from panelsynth.data import (
    WaveData,
    clean_missing_by_variable,
    load_wave,
    read_csv_any,
)
from panelsynth.dictionaries import VariableMeta, load_var_types
from panelsynth.errors import PanelsynthError, WorkspaceError
from panelsynth.evaluate.columns import (
    ORDINAL_SDTYPE_NOTE,
    EvalColumns,
    columns_from_var_types,
    eval_meta_dict,
    harmonise,
    read_eval_meta,
    resolve_columns,
)
from panelsynth.evaluate.encoding import row_keys
from panelsynth.evaluate.membership import attack
from panelsynth.evaluate.metrics import MetricResult
from panelsynth.evaluate.reading import label_of_floor, read_summary
from panelsynth.evaluate.refcache import load_reference, reference_key, store_reference
from panelsynth.evaluate.suite import (
    CANDIDATES,
    HOLDOUT,
    PROTOCOL,
    SUMMARY_METRICS,
    SYNTHETIC,
    Reference,
    Scorecard,
    build_reference,
    duplicate_share_sample,
    membership_result,
    score_candidate,
    summary_values,
    wave_rng,
)
from panelsynth.holdout import HoldoutSpec, apply_split, spec_from_manifest, wave_split
from panelsynth.io import atomic_write_text, remove_old_temporaries, remove_stale_temporaries_of
from panelsynth.oslock import OsLock
from panelsynth.prepare_switch import finish_interrupted_prepare
from panelsynth.workers import worker_env
from panelsynth.workspace import (
    EVAL_TABLES,
    EXTRA_EVAL_TABLES,
    MODES,
    Mode,
    Workspace,
    check_model_dir,
    check_wave_id,
    wave_sort_key,
)

log = logging.getLogger("panelsynth")

ProgressCallback = Callable[[str, int, int], None]
"""``progress(description, completed, total)`` — called before and after each (model dir, wave)."""

#: The four tables of the reference study -> summary key.
TABLE_KEYS: dict[str, str] = {
    "c2st": "c2st",
    "density_overall": "density_overall",
    "density_shape": "density_shape",
    "density_trend": "density_trend",
}
#: Extra tables (same layout) so that no table is silently empty and the non-linear C2ST is kept.
EXTRA_TABLE_KEYS: dict[str, str] = {
    "density_trend_unthresholded": "density_trend_unthresholded",
    "c2st_gb": "c2st_gb",
}


def extra_table_path(ws: Workspace, name: str) -> Path:
    """Path of an extra evaluation table (see ``workspace.EXTRA_EVAL_TABLES``)."""
    if name not in EXTRA_TABLE_KEYS:
        raise ValueError(f"unknown extra table {name!r}")
    return ws.eval_table(name)


@dataclass
class PairOutcome:
    """Result of one (model dir, wave)."""

    model_dir: str
    wave: str
    metrics_json: Path | None = None
    plot: Path | None = None
    summary: dict[str, dict[str, float | None]] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    #: What the synthetic figures are read against (``--holdout`` runs: held-out respondents).
    floor_label: str = "real half"


@dataclass
class EvaluationSummary:
    """What :func:`evaluate_workspace` produced."""

    workspace: Path
    outcomes: list[PairOutcome]
    tables: dict[str, Path]
    report: Path | None
    seconds: float

    @property
    def failures(self) -> list[PairOutcome]:
        return [o for o in self.outcomes if o.error]

    @property
    def evaluated(self) -> list[tuple[str, str]]:
        return [(o.model_dir, o.wave) for o in self.outcomes if not o.error]

    def scores(self) -> pd.DataFrame:
        """Long table: model_dir, wave, metric, candidate, value."""
        rows = []
        for o in self.outcomes:
            for metric, per in o.summary.items():
                for cand, v in per.items():
                    rows.append(
                        {
                            "model_dir": o.model_dir,
                            "wave": o.wave,
                            "metric": metric,
                            "candidate": cand,
                            "value": v,
                        }
                    )
        return pd.DataFrame(rows, columns=["model_dir", "wave", "metric", "candidate", "value"])


# --------------------------------------------------------------------------- discovery
def plan_evaluations(
    ws: Workspace, model_dirs: Sequence[str] | None, waves: Sequence[str] | None
) -> list[tuple[str, str]]:
    """The (model dir, wave) pairs to evaluate; raises one actionable line when there are none."""
    ws.must_exist()
    available = ws.model_dirs_with_output()
    if model_dirs:
        for md in model_dirs:
            check_model_dir(md)
            if md not in available:
                known = ", ".join(available) or "none"
                raise WorkspaceError(
                    f"model dir {md!r} has no synthetic data "
                    f"(Final_gen_data/{md}/gen_data_wave*.csv) — model dirs with output: {known}"
                )
        dirs = list(dict.fromkeys(model_dirs))
    else:
        dirs = available
    if not dirs:
        raise WorkspaceError(
            f"nothing to evaluate: no Final_gen_data/<model_dir>/gen_data_wave{{W}}.csv in "
            f"{ws.root} — run `panelsynth run` first"
        )
    wanted = [check_wave_id(w) for w in waves] if waves else None
    pairs = []
    for md in dirs:
        for w in ws.generated_waves(md):
            if wanted is None or w in wanted:
                pairs.append((md, w))
    if wanted:
        for w in wanted:
            if not any(p[1] == w for p in pairs):
                gen = sorted(
                    {w2 for md in dirs for w2 in ws.generated_waves(md)}, key=wave_sort_key
                )
                raise WorkspaceError(
                    f"unknown wave {w!r}: no synthetic data for it in "
                    f"{', '.join(dirs)} (generated waves: {', '.join(gen) or 'none'})"
                )
    for _, w in pairs:
        if not ws.original_data(w).exists():
            raise WorkspaceError(
                f"unknown wave {w!r}: {ws.rel(ws.original_data(w))} does not exist — the real "
                f"wave is needed to evaluate its synthetic data"
            )
    return sorted(pairs, key=lambda p: (p[0], wave_sort_key(p[1])))


# --------------------------------------------------------------------------- main entry
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
    from panelsynth.evaluate.metrics import single_thread

    t0 = time.perf_counter()
    ws = Workspace(workspace)
    if ws.root.is_dir():
        finish_interrupted_prepare(ws)  # never score a half-switched set of prepare's outputs
    pairs = plan_evaluations(ws, model_dirs, waves)
    cfg = load_config(ws.config_path)
    clean_outputs(ws, pairs)
    with single_thread():  # see single_thread(): many small models, no OpenMP spin-waiting
        return _evaluate_pairs(ws, cfg, pairs, seed, progress, t0)


def clean_outputs(ws: Workspace, pairs: list[tuple[str, str]]) -> None:
    """Before an evaluation writes: refuse symbolic links among its outputs and remove the
    temporary files a killed evaluation left next to them (the tables, the report, each pair's
    metrics JSON and plot, the evaluation metadata) and old ones in the cache."""
    outputs = [ws.report_html(), *(ws.eval_table(n) for n in EVAL_TABLES + EXTRA_EVAL_TABLES)]
    for md, wave in pairs:
        outputs += [ws.eval_metrics_json(md, wave), ws.eval_plot(md, wave), ws.eval_meta(wave)]
    ws.refuse_links(*outputs, ws.cache_dir())
    remove_stale_temporaries_of(outputs)
    remove_old_temporaries(ws.cache_dir())


#: Mean size of the real wave files above which waves are evaluated in parallel worker processes
#: (one per core, at most :data:`MAX_WORKERS`). A worker's start-up (importing pandas and
#: scikit-learn, ~3 s) only pays off for large waves (~25,000 respondents and more).
PARALLEL_MIN_WAVE_BYTES = 2_000_000
MAX_WORKERS = 2


def _evaluate_pairs(
    ws: Workspace,
    cfg: PanelsynthConfig,
    pairs: list[tuple[str, str]],
    seed: int,
    progress: ProgressCallback | None,
    t0: float,
) -> EvaluationSummary:
    groups = _wave_groups(pairs)
    workers = _workers(ws, groups)
    if workers > 1:
        outcomes = _run_parallel(ws, pairs, groups, seed, progress, workers)
    else:
        outcomes = _run_serial(_Context(ws, cfg, seed), pairs, progress)
    good = [o for o in outcomes if not o.error]
    if not good:
        raise PanelsynthError(outcomes[0].error or "evaluation failed")
    tables = write_tables(ws, good)
    from panelsynth.evaluate.report import write_report

    report = write_report(ws)
    return EvaluationSummary(ws.root, outcomes, tables, report, time.perf_counter() - t0)


def _run_serial(
    ctx: _Context, pairs: list[tuple[str, str]], progress: ProgressCallback | None
) -> list[PairOutcome]:
    outcomes: list[PairOutcome] = []
    for i, (md, w) in enumerate(pairs):
        if progress:
            progress(f"{md} · wave {w}", i, len(pairs))
        outcomes.append(_evaluate_one(ctx, md, w))
        if progress:
            progress(f"{md} · wave {w}", i + 1, len(pairs))
    return outcomes


def _evaluate_one(ctx: _Context, md: str, w: str) -> PairOutcome:
    """One (model dir, wave); a failure becomes the outcome's ``error``."""
    t1 = time.perf_counter()
    try:
        outcome = ctx.evaluate_pair(md, w)
    except PanelsynthError as err:
        log.warning("%s wave %s: %s", md, w, err)
        outcome = PairOutcome(md, w, error=str(err))
    except Exception as err:  # keep going: one broken pair must not lose the others
        log.exception("%s wave %s failed", md, w)
        outcome = PairOutcome(md, w, error=f"{type(err).__name__}: {err}")
    outcome.seconds = time.perf_counter() - t1
    return outcome


def _wave_groups(pairs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Pairs grouped by wave (a wave's reference is then built once, in one process)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for md, w in pairs:
        groups.setdefault(w, []).append((md, w))
    return list(groups.values())


def _workers(ws: Workspace, groups: list[list[tuple[str, str]]]) -> int:
    """Worker processes for these waves: 1 (in-process) unless the real waves are large."""
    if len(groups) < 2:
        return 1
    sizes = [ws.original_data(g[0][1]).stat().st_size for g in groups]
    if sum(sizes) / len(sizes) < PARALLEL_MIN_WAVE_BYTES:
        return 1
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1, len(groups)))


def _run_parallel(
    ws: Workspace,
    pairs: list[tuple[str, str]],
    groups: list[list[tuple[str, str]]],
    seed: int,
    progress: ProgressCallback | None,
    workers: int,
) -> list[PairOutcome]:
    """Evaluate the wave groups in ``workers`` processes; outcomes in the order of the pairs.

    Workers are started as ``python -m panelsynth.evaluate.worker`` (not multiprocessing, whose
    spawn start method re-imports the caller's main script) and each takes every
    ``workers``-th wave, so each pays its start-up once.
    """
    import subprocess
    import sys
    import tempfile

    done: dict[tuple[str, str], PairOutcome] = {}
    if progress:
        progress(f"{len(groups)} waves in {workers} processes", 0, len(pairs))
    with tempfile.TemporaryDirectory(prefix="panelsynth-eval-") as tmp:
        jobs = []
        for i in range(workers):
            share = [p for g in groups[i::workers] for p in g]
            out = Path(tmp) / f"worker{i}.pkl"
            cmd = [sys.executable, "-m", "panelsynth.evaluate.worker", str(ws.root), str(seed)]
            proc = subprocess.Popen([*cmd, json.dumps(share), str(out)], env=worker_env())
            jobs.append((proc, share, out))
        for proc, share, out in jobs:
            proc.wait()
            for o in _worker_outcomes(proc.returncode, share, out):
                done[(o.model_dir, o.wave)] = o
            if progress:
                progress(f"wave {share[-1][1]}", len(done), len(pairs))
    return [done[p] for p in pairs]


def _worker_outcomes(code: int, share: list[tuple[str, str]], out: Path) -> list[PairOutcome]:
    """A worker's outcomes; every pair fails with the reason if the worker died."""
    import pickle

    if code == 0 and out.exists():
        return pickle.loads(out.read_bytes())
    why = f"evaluation worker process failed (exit code {code}); re-run the evaluation"
    return [PairOutcome(md, w, error=why) for md, w in share]


def evaluate_group(root: str, pairs: list[tuple[str, str]], seed: int) -> list[PairOutcome]:
    """Evaluate some pairs in a fresh context (the body of a worker process)."""
    from panelsynth.evaluate.metrics import single_thread

    ws = Workspace(root)
    ctx = _Context(ws, load_config(ws.config_path), seed)
    with single_thread():
        return [_evaluate_one(ctx, md, w) for md, w in pairs]


class _Context:
    """Caches real waves, evaluation metadata and per-wave references across model dirs."""

    def __init__(self, ws: Workspace, cfg: PanelsynthConfig, seed: int) -> None:
        self.ws = ws
        self.cfg = cfg
        self.seed = seed
        self.waves: dict[tuple[str, str], WaveData] = {}
        self.meta: dict[str, dict[str, str]] = {}
        self.refs: dict[str, Reference] = {}

    # ---- inputs
    def real_wave(self, wave: str, mode: Mode) -> WaveData:
        key = (wave, mode)
        if key not in self.waves:
            study = self.cfg.study
            self.waves[key] = load_wave(
                self.ws,
                wave,
                mode=mode,
                missing_codes=study.missing_codes,
                study_waves=study.waves or self.ws.waves_with_data(),
                cluster_column=study.cluster_column,
                prev_cluster_column=study.prev_cluster_column,
                k=self.cfg.clustering.k,
            )
        return self.waves[key]

    def var_types(self, wave: str, mode: Mode) -> dict[str, str] | None:
        p = self.ws.var_types(wave, mode)
        return load_var_types(p) if p.exists() else None

    def infer_mode(self, wave: str, columns: Sequence[str], manifest: dict) -> tuple[Mode, str]:
        m = manifest.get("mode")
        if m in MODES:
            return m, "manifest"
        cols = set(columns)
        best: tuple[float, Mode] | None = None
        for mode in MODES:
            vt = self.var_types(wave, mode)
            if not vt:
                continue
            inside = sum(v in cols for v in vt)
            score = inside / len(vt) + (0.5 if inside == len(vt) else 0) + 1e-3 * len(vt)
            if best is None or score > best[0]:
                best = (score, mode)
        if best is None:
            return "dense", "default (no var types found)"
        return best[1], "inferred from the synthetic CSV's columns"

    def eval_meta(self, wave: str, real: WaveData) -> tuple[dict[str, str], str]:
        if wave in self.meta:
            return self.meta[wave], "cached"
        path = self.ws.eval_meta(wave)
        if path.exists():
            self.meta[wave] = read_eval_meta(path)
            return self.meta[wave], "read"
        merged: dict[str, str] = {}
        for mode in MODES:
            vt = self.var_types(wave, mode)
            if vt:
                merged.update({k: v for k, v in vt.items() if k not in merged})
        cols = columns_from_var_types(
            merged, cluster_column=real.cluster_column, prev_cluster_column=real.prev_cluster_column
        )
        atomic_write_text(path, json.dumps(eval_meta_dict(cols), indent=2) + "\n")
        log.info("wrote %s (from the var types)", self.ws.rel(path))
        self.meta[wave] = {c.name: c.sdtype for c in cols}
        return self.meta[wave], "created from the var types"

    def read_frame(self, path: Path, metadata: Mapping[str, VariableMeta]) -> pd.DataFrame:
        """A CSV with the study's missing codes as NA, except where the wave's metadata lists a
        code as a variable's answer (-1 = Disagree): as in the real wave."""
        codes = self.cfg.study.missing_codes
        return clean_missing_by_variable(read_csv_any(path), codes, metadata)[0]

    # ---- one pair
    def evaluate_pair(self, md: str, wave: str) -> PairOutcome:
        ws = self.ws
        synth_path = ws.output_csv(md, wave)
        synth_raw = read_csv_any(synth_path)  # missing codes: below, with the wave's metadata
        if synth_raw.empty:
            raise WorkspaceError(f"{ws.rel(synth_path)} has no rows — re-run generation")
        manifest = _read_json(ws.manifest(md, wave))
        manifest_warnings = check_manifest(ws, md, wave, manifest, len(synth_raw))
        for warning in manifest_warnings:
            log.warning("%s", warning)
        mode, mode_source = self.infer_mode(wave, list(synth_raw.columns), manifest)
        real = self.real_wave(wave, mode)
        codes = self.cfg.study.missing_codes
        synth_raw = clean_missing_by_variable(synth_raw, codes, real.metadata)[0]
        meta, meta_source = self.eval_meta(wave, real)
        available = set(real.frame.columns) & set(synth_raw.columns)
        columns = resolve_columns(
            meta,
            real.var_types,
            available,
            cluster_column=real.cluster_column,
            prev_cluster_column=real.prev_cluster_column,
        )
        if not columns.variables:
            raise WorkspaceError(
                f"{ws.rel(synth_path)} has none of the wave's variables "
                f"({', '.join(real.var_types)}) — check the file or the var types"
            )
        ex_path = ws.examples_csv(md, wave)
        frames = {"real": real.frame, "synthetic": synth_raw}
        if ex_path.exists():
            frames["examples"] = self.read_frame(ex_path, real.metadata)
        h = harmonise(frames, columns)
        target, target_source = self.target(columns, manifest)
        held = held_out_frames(ws, wave, h["real"], manifest)
        ref = self.reference(
            h["real"],
            columns,
            wave,
            target,
            size=len(h["synthetic"]),
            split=(held.training, held.held_out) if held else None,
            split_key=held.key() if held else None,
        )
        card = score_candidate(
            SYNTHETIC,
            h["synthetic"],
            columns,
            fidelity_real=held.held_out if held else h["real"],
            copy_ref=h["real"],
            copy_ref_half=ref.half_b,
            dcr_ref=held.training if held else h["real"],
            utility_test=ref.half_b,
            holdout_dcr=ref.holdout_dcr,
            target=target,
            seed=self.seed,
            examples=h.get("examples"),
        )
        card.metrics["membership_inference"] = membership_result(
            synthetic_membership(columns, h, held, manifest, self.seed)
        )
        dup_matched = duplicate_share_sample(
            h["real"], columns, len(h["synthetic"]), wave_rng(self.seed + 1, wave)
        )
        doc = build_metrics_doc(
            md=md,
            wave=wave,
            mode=mode,
            mode_source=mode_source,
            meta_source=meta_source,
            columns=columns,
            card=card,
            ref=ref,
            dup_matched=dup_matched,
            target=target,
            target_source=target_source,
            examples_path=ws.rel(ex_path),
            has_examples="examples" in h,
            n_real=len(h["real"]),
            coerced=h["synthetic"].attrs.get("coerced_to_na", {}),
            extra_synth_cols=sorted(set(synth_raw.columns) - set(columns.names)),
            held=held,
        )
        doc["manifest_check"] = {"agrees": not manifest_warnings, "warnings": manifest_warnings}
        out_json = ws.eval_metrics_json(md, wave)
        atomic_write_text(out_json, json.dumps(doc, indent=2, allow_nan=False) + "\n")
        from panelsynth.evaluate.plots import collapse_chart, plot_wave

        shapes = {
            c["column"]: c.get("score", math.nan)
            for c in card.metrics["column_shapes"].to_json().get("details", [])
        }
        plot = plot_wave(
            held.held_out if held else h["real"],
            h["synthetic"],
            columns,
            ws.eval_plot(md, wave),
            shapes=shapes,
            footer=_collapse_png(card, f"{md} — wave {wave}: answer entropy", collapse_chart),
            title=f"{md} — wave {wave} ({mode} mode): "
            + (f"held-out n={len(held.held_out)}" if held else f"real n={len(h['real'])}")
            + f" vs synthetic n={len(h['synthetic'])}",
        )
        return PairOutcome(
            md,
            wave,
            out_json,
            plot,
            doc["summary"],
            floor_label="training vs held-out" if held else "real half",
        )

    def reference(
        self,
        real: pd.DataFrame,
        columns: EvalColumns,
        wave: str,
        target: str | None,
        *,
        size: int | None = None,
        split: tuple[pd.DataFrame, pd.DataFrame] | None = None,
        split_key: dict[str, Any] | None = None,
    ) -> Reference:
        """The wave's reference: from memory, else the on-disk cache, else built and cached.

        It depends on the synthetic set's size (the floor and baselines are size-matched) and,
        for a ``--holdout`` run, on its split.
        """
        key = reference_key(
            real, columns, wave=wave, seed=self.seed, target=target, size=size, split=split_key
        )
        if key not in self.refs:
            folder = self.ws.cache_dir()
            ref = load_reference(folder, key)
            if ref is None:
                ref = build_reference(
                    real, columns, wave=wave, seed=self.seed, target=target, size=size, split=split
                )
                store_reference(folder, key, ref)
            else:
                log.info("wave %s: real-vs-real reference and baselines from the cache", wave)
            self.refs[key] = ref
        return self.refs[key]

    def target(self, columns: EvalColumns, manifest: dict) -> tuple[str | None, str]:
        outcome = self.cfg.study.outcome
        tv = manifest.get("target_variable")
        for name, source in (
            (outcome, "panelsynth.toml study.outcome"),
            (tv, "manifest target_variable"),
        ):
            if name and name in columns.variables:
                col = columns.get(name)
                if not col.discrete:
                    return None, (
                        f"{name!r} ({source}) is continuous; TSTR uses a classifier — skipped"
                    )
                return name, source
        tried = [
            f"study.outcome={outcome!r}" if outcome else "no study.outcome in panelsynth.toml",
            f"manifest target_variable={tv!r}" if tv else "no manifest target_variable",
        ]
        return None, "TSTR skipped: no target variable in this wave's data (" + "; ".join(
            tried
        ) + ")"


def check_manifest(ws: Workspace, md: str, wave: str, manifest: dict, rows: int) -> list[str]:
    """Where a synthetic CSV and its run manifest disagree (empty when they agree).

    A CSV without a manifest, a manifest of an incomplete or failed run (e.g. a ``--restart``
    that failed next to the previous run's CSV), or a different row count mean the figures may
    not describe the run the manifest (settings, tokens, cost) describes.
    """
    csv_name = ws.rel(ws.output_csv(md, wave))
    path = ws.manifest(md, wave)
    if not manifest:
        why = "is missing" if not path.exists() else "is unreadable"
        return [
            f"{csv_name}: its manifest {ws.rel(path)} {why} — the run's settings and books are "
            f"unknown (rerun with --resume to rebuild it from the checkpoint)"
        ]
    out = []
    status = manifest.get("status")
    if status != "complete":
        out.append(
            f"{csv_name}: its manifest says the run is {status or 'of unknown status'} "
            f"({manifest.get('error') or 'no output recorded'}) — the CSV is from another run"
        )
    n = manifest.get("rows")
    if isinstance(n, int) and n != rows:
        out.append(f"{csv_name} has {rows} rows but its manifest records {n}")
    return out


@dataclass
class HeldOut:
    """A ``--holdout`` run's real respondents: training (seen by steps 1-3) and held out."""

    spec: HoldoutSpec
    training: pd.DataFrame
    held_out: pd.DataFrame
    note: str | None = None

    def key(self) -> dict[str, Any]:
        rows = hashlib.sha256(np.asarray(self.held_out.index, dtype="int64").tobytes()).hexdigest()
        return {**self.spec.to_json(), "held_out_rows": rows}


def held_out_frames(ws: Workspace, wave: str, real: pd.DataFrame, manifest: dict) -> HeldOut | None:
    """The training and held-out respondents of a ``--holdout`` run (``None`` for other runs).

    The split is recomputed from the manifest (share, seed, id column) exactly as the run made
    it; ``real`` keeps the wave file's row index.

    Raises:
        DataError: the wave file lost its id column since the run.
    """
    spec = spec_from_manifest(manifest)
    if spec is None:
        return None
    path = ws.original_data(wave)
    split = wave_split(path, wave, spec, ws.rel(path))
    training = apply_split(real, split, keep_held_out=False)
    held = apply_split(real, split, keep_held_out=True)
    if len(held) == 0 or len(training) == 0:
        raise WorkspaceError(
            f"wave {wave}: the run's holdout split leaves no "
            f"{'held-out' if len(held) == 0 else 'training'} respondent in {ws.rel(path)} — "
            f"re-run generation with another --holdout"
        )
    note = None
    recorded = manifest.get("holdout", {}).get("held_out_respondents")
    if isinstance(recorded, int) and recorded != int(split.held_out.sum()):
        note = (
            f"the run held out {recorded} respondents but the real wave now gives "
            f"{int(split.held_out.sum())}: {ws.rel(path)} changed since the run"
        )
        log.warning("wave %s: %s", wave, note)
    return HeldOut(spec, training, held, note)


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


def _collapse_png(card: Scorecard, title: str, draw: Callable[..., bytes]) -> bytes | None:
    """The variance-collapse chart of the LLM output (``None`` when it was not computed)."""
    res = card.metrics.get("variance_collapse")
    if res is None or res.details is None or res.details.empty:
        return None
    return draw(res.to_json()["details"], title=title)


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("ignoring unreadable %s", path)
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- metrics JSON
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


# --------------------------------------------------------------------------- tables
def write_tables(ws: Workspace, outcomes: Sequence[PairOutcome]) -> dict[str, Path]:
    """Merge this run's figures into the model x wave tables (other cells are kept).

    The reference columns hold one figure per wave while the references are size-matched per
    model dir: they are taken from the wave's first model dir (in name order) with a metrics
    JSON, so they do not depend on which model dirs an evaluation run included.
    """
    paths: dict[str, Path] = {}
    specs = [(name, ws.eval_table(name), key) for name, key in TABLE_KEYS.items()]
    specs += [(name, extra_table_path(ws, name), key) for name, key in EXTRA_TABLE_KEYS.items()]
    # Another evaluate may merge its own columns at the same time: read-modify-write under an OS
    # lock (waiting for it), or one run's columns would be lost.
    with OsLock(ws.eval_tables_lock(), _tables_busy, wait=True):
        refs = _table_references(ws, outcomes)  # read under the lock: other runs' JSONs too
        _merge_tables(specs, outcomes, paths, refs)
    return paths


def _tables_busy(holder: dict[str, Any] | None) -> PanelsynthError:  # pragma: no cover - waits
    return PanelsynthError("the results tables are locked by another evaluate")


def _merge_tables(
    specs: list[tuple[str, Path, str]],
    outcomes: Sequence[PairOutcome],
    paths: dict[str, Path],
    refs: dict[str, dict[str, dict[str, float | None]]],
) -> None:
    for name, path, key in specs:
        table = _read_table(path)
        for o in outcomes:
            row = o.summary.get(key, {})
            table.loc[o.wave, o.model_dir] = _nan(row.get(SYNTHETIC))
            ref_row = refs.get(o.wave, {}).get(key, row)
            for cand in CANDIDATES[1:]:
                table.loc[o.wave, cand] = _nan(ref_row.get(cand))
        table = _order(table)
        buf = io.StringIO()
        table.to_csv(buf, index_label="wave", float_format="%.4f")
        atomic_write_text(path, buf.getvalue())
        paths[name] = path


def _table_references(
    ws: Workspace, outcomes: Sequence[PairOutcome]
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per wave, the summary whose reference figures go into the tables (see write_tables)."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    mine = {(o.model_dir, o.wave): o.summary for o in outcomes}
    for wave in {o.wave for o in outcomes}:
        for md in sorted({*ws.model_dirs_with_output(), *(m for m, _ in mine)}):
            if (md, wave) in mine:
                out[wave] = mine[(md, wave)]
                break
            doc = _read_json(ws.eval_metrics_json(md, wave))
            if isinstance(doc.get("summary"), dict):
                out[wave] = doc["summary"]
                break
    return out


def _nan(v: float | None) -> float:
    return math.nan if v is None else float(v)


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(dtype="float64")
    try:
        t = pd.read_csv(path, dtype={"wave": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        log.warning("rewriting unreadable table %s", path)
        return pd.DataFrame(dtype="float64")
    if "wave" not in t.columns:
        return pd.DataFrame(dtype="float64")
    return t.set_index("wave").astype("float64")


def _order(table: pd.DataFrame) -> pd.DataFrame:
    refs = [c for c in CANDIDATES[1:] if c in table.columns]
    models = sorted(c for c in table.columns if c not in refs)
    rows = sorted(table.index.astype(str), key=wave_sort_key)
    table.index = table.index.astype(str)
    return table.loc[rows, models + refs]


# re-exported for the report and tests
__all__ = [
    "EXTRA_TABLE_KEYS",
    "EvaluationSummary",
    "PairOutcome",
    "ProgressCallback",
    "TABLE_KEYS",
    "build_metrics_doc",
    "evaluate_workspace",
    "extra_table_path",
    "plan_evaluations",
    "write_tables",
]
