"""Reading, typing, selecting and clustering each wave: the part of a wave that needs no other.

Waves are independent up to the label alignment (:mod:`.align`), so large panels read and
cluster them in worker processes (:mod:`panelsynth.workers`, ``python -m
panelsynth.prepare.worker``) while the parent aligns the waves already done.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from panelsynth.config import PanelsynthConfig
from panelsynth.demographics import resolve_demographics
from panelsynth.dictionaries import VariableMeta
from panelsynth.errors import DataError, PanelsynthError
from panelsynth.missing import MissingTally, codes_for_variable
from panelsynth.prepare.clustering import (
    ClusterFit,
    EncodedItems,
    Engine,
    MissingMode,
    encode_items,
    fit_clusters,
)
from panelsynth.prepare.raw import StudyDictionary, read_raw_wave
from panelsynth.prepare.select import Selection, select_variables
from panelsynth.prepare.vartypes import KIND, explain_var_type
from panelsynth.workers import pool_size, run_in_workers

#: Raw waves of at least this size on average are read and clustered in worker processes (one
#: per core, at most :data:`MAX_FIT_WORKERS`); a worker's start-up (importing pandas, numpy and
#: scipy: ~2 s) is not worth it for small waves.
PARALLEL_MIN_RAW_BYTES = 2_000_000
MAX_FIT_WORKERS = 2
WORKER_MODULE = "panelsynth.prepare.worker"


@dataclass(frozen=True)
class FitJob:
    wave: str
    path: Path
    source: str


@dataclass(frozen=True)
class FitSettings:
    cfg: PanelsynthConfig
    dictionary: StudyDictionary
    engine: Engine
    missing: MissingMode
    max_fit_rows: int | None

    @classmethod
    def resolve(
        cls,
        cfg: PanelsynthConfig,
        dictionary: StudyDictionary,
        engine: Engine | None,
        missing: MissingMode | None,
        max_fit_rows: int | None,
    ) -> FitSettings:
        """The arguments of ``prepare_workspace``, or ``[clustering]`` where they are not given
        (``max_fit_rows=-1``: ``clustering.max_fit_rows``; ``None``: fit on everyone)."""
        cc = cfg.clustering
        rows = cc.max_fit_rows if max_fit_rows == -1 else max_fit_rows
        return cls(cfg, dictionary, engine or cc.engine, missing or cc.missing, rows)


@dataclass
class FittedWave:
    """A wave read, typed, with its variables selected and its respondents clustered."""

    frame: pd.DataFrame
    labelled: dict[str, VariableMeta]
    types_all: dict[str, str]
    sel: Selection
    enc: EncodedItems
    fit: ClusterFit
    notes: list[str]  # warnings, in the order they arose
    missing: MissingTally = field(default_factory=MissingTally)
    reasons: dict[str, str] = field(default_factory=dict)  # variable -> why its type
    demographics: list[str] = field(default_factory=list)
    demographic_notes: list[str] = field(default_factory=list)  # the same in every wave


def read_and_fit(job: FitJob, s: FitSettings) -> FittedWave:
    """The part of preparing a wave that needs no other wave (label alignment comes after)."""
    st, pr, cc = s.cfg.study, s.cfg.prepare, s.cfg.clustering
    notes: list[str] = []
    frame, labelled, measures, tally = read_raw_wave(
        job.path, st.id_column, st.missing_codes, source=job.source, dictionary=s.dictionary.meta
    )
    if frame.empty:
        raise DataError(f"{job.source} has no rows — export the wave again", path=job.source)
    demo = resolve_demographics(pr.demographics, [c for c in frame.columns if c != st.id_column])
    explained: dict[str, tuple[str, str]] = {}
    for c in frame.columns:
        if c == st.id_column:
            continue
        entry = s.dictionary.meta.get(c) or labelled.get(c)
        explained[c] = explain_var_type(
            frame[c],
            entry,
            declared=s.dictionary.declared.get(c),
            measure=measures.get(c),
            demographic=c in demo.used,
            missing_codes=codes_for_variable(entry, st.missing_codes).applied,
        )
    types_all = {c: t for c, (t, _) in explained.items()}
    sel = select_variables(
        frame,
        s.cfg,
        types_all,
        wave=job.wave,
        source=job.source,
        warn=notes.append,
        demographics=demo.used,
    )
    if not sel.cluster_items:
        raise DataError(
            f"{job.source}: no item to cluster on (every candidate is excluded, empty or "
            f"below prepare.density_threshold={pr.density_threshold}) — check "
            f"prepare.include/exclude",
            path=job.source,
        )
    kinds = {c: KIND[types_all[c]] for c in sel.cluster_items}
    enc = encode_items(frame, sel.cluster_items, kinds)
    if enc.n < cc.k:
        raise DataError(
            f"{job.source} has {enc.n} respondents — too few for {cc.k} clusters: set "
            f"clustering.k to at most {enc.n}, or add respondents",
            path=job.source,
        )
    try:
        fit = fit_clusters(
            enc,
            k=cc.k,
            method=cc.method,
            seed=cc.seed,
            n_init=cc.n_init,
            max_fit_rows=s.max_fit_rows,
            engine=s.engine,
            missing=s.missing,
        )
    except DataError as err:  # the clustering's reason, with the file it is about
        raise DataError(f"{job.source}: {err}", path=job.source) from None
    return FittedWave(
        frame,
        labelled,
        types_all,
        sel,
        enc,
        fit,
        notes,
        missing=tally,
        reasons={c: why for c, (_, why) in explained.items()},
        demographics=demo.used,
        demographic_notes=demo.notes("the raw waves"),
    )


def fit_workers(jobs: Sequence[FitJob]) -> int:
    """Worker processes for these waves: 1 (in-process) unless the raw waves are large."""
    return pool_size(
        [job.path.stat().st_size for job in jobs],
        max_workers=MAX_FIT_WORKERS,
        min_mean_bytes=PARALLEL_MIN_RAW_BYTES,
    )


def fitted_waves(
    jobs: Sequence[FitJob], settings: FitSettings
) -> Generator[FittedWave, None, None]:
    """:func:`read_and_fit` of every job, in the jobs' order: in this process, or in worker
    processes for large waves (a wave's error is raised in its turn either way; closing the
    iterator stops the workers)."""
    workers = fit_workers(jobs)
    if workers > 1:
        return run_in_workers(WORKER_MODULE, jobs, settings, workers, lost=_lost)
    return (read_and_fit(job, settings) for job in jobs)


def _lost(job: FitJob, code: int | None) -> FittedWave:
    raise PanelsynthError(
        f"the worker process preparing wave {job.wave} stopped (exit code {code}) — run "
        f"`panelsynth prepare` again"
    )
