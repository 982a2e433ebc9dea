"""One (model dir, wave) read for scoring: the synthetic CSV and its manifest next to the real
wave (same missing codes, same evaluation columns and dtypes), the few-shot examples, the target
variable, a ``--holdout`` run's split, and the wave's size-matched reference (cached)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from panelsynth.config import PanelsynthConfig
from panelsynth.data import WaveData, clean_missing_by_variable, load_wave, read_csv_any
from panelsynth.dictionaries import VariableMeta, load_var_types
from panelsynth.errors import WorkspaceError
from panelsynth.evaluate.columns import (
    EvalColumns,
    columns_from_var_types,
    eval_meta_dict,
    harmonise,
    read_eval_meta,
    resolve_columns,
)
from panelsynth.evaluate.document import read_json
from panelsynth.evaluate.heldout import HeldOut, held_out_frames
from panelsynth.evaluate.refcache import load_reference, reference_key, store_reference
from panelsynth.evaluate.suite import Reference, build_reference
from panelsynth.io import atomic_write_text
from panelsynth.workspace import MODES, Mode, Workspace

log = logging.getLogger("panelsynth")


@dataclass
class Pair:
    """A (model dir, wave) ready to score: harmonised frames and what they were read as."""

    md: str
    wave: str
    manifest: dict
    manifest_warnings: list[str]
    mode: Mode
    mode_source: str
    meta_source: str
    columns: EvalColumns
    #: "real", "synthetic" and, when the run's examples file exists, "examples".
    frames: dict[str, pd.DataFrame]
    synthetic_columns: list[str]
    examples_path: Path
    target: str | None
    target_source: str
    held: HeldOut | None

    @property
    def fidelity_real(self) -> pd.DataFrame:
        """What the synthetic figures are read against: the held-out respondents or the wave."""
        return self.held.held_out if self.held else self.frames["real"]


class Context:
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


def read_pair(ctx: Context, md: str, wave: str) -> Pair:
    """Read a (model dir, wave): the synthetic CSV (with its manifest's checks logged), the real
    wave in the run's mode, both with the wave's missing codes, harmonised on the evaluation
    columns; the examples file, the target variable and a ``--holdout`` run's split.

    Raises:
        WorkspaceError: the CSV has no rows or none of the wave's variables.
    """
    ws = ctx.ws
    synth_path = ws.output_csv(md, wave)
    synth_raw = read_csv_any(synth_path)  # missing codes: below, with the wave's metadata
    if synth_raw.empty:
        raise WorkspaceError(f"{ws.rel(synth_path)} has no rows — re-run generation")
    manifest = read_json(ws.manifest(md, wave))
    manifest_warnings = check_manifest(ws, md, wave, manifest, len(synth_raw))
    for warning in manifest_warnings:
        log.warning("%s", warning)
    mode, mode_source = ctx.infer_mode(wave, list(synth_raw.columns), manifest)
    real = ctx.real_wave(wave, mode)
    codes = ctx.cfg.study.missing_codes
    synth_raw = clean_missing_by_variable(synth_raw, codes, real.metadata)[0]
    meta, meta_source = ctx.eval_meta(wave, real)
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
        frames["examples"] = ctx.read_frame(ex_path, real.metadata)
    h = harmonise(frames, columns)
    target, target_source = ctx.target(columns, manifest)
    held = held_out_frames(ws, wave, h["real"], manifest)
    return Pair(
        md,
        wave,
        manifest,
        manifest_warnings,
        mode,
        mode_source,
        meta_source,
        columns,
        h,
        list(synth_raw.columns),
        ex_path,
        target,
        target_source,
        held,
    )


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
