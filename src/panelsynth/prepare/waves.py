"""One wave after another: fitted (:mod:`.fit`), aligned (:mod:`.align`), written, described;
then the names the configuration gives checked and the dense mode chosen across waves.

For each wave, in study order: the fit's warnings, the aligned labels, ``Original data/wave{W}.csv``
(staged), the association of every item with the label and the trajectory (for the ranking), the
wave's types and metadata, and its :class:`~panelsynth.prepare.results.WaveReport`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from panelsynth.config import PanelsynthConfig
from panelsynth.dictionaries import VariableMeta
from panelsynth.errors import ConfigError
from panelsynth.missing import codes_for_variable, kept_warning
from panelsynth.prepare.align import Alignment, Link
from panelsynth.prepare.clustering import ClusterFit, EncodedItems, mutual_information
from panelsynth.prepare.csvtext import csv_text
from panelsynth.prepare.fit import FittedWave
from panelsynth.prepare.raw import StudyDictionary
from panelsynth.prepare.results import WaveReport
from panelsynth.prepare.select import dense_variables, rank_items
from panelsynth.prepare.truth import truth_check
from panelsynth.prepare.vartypes import build_metadata
from panelsynth.prepare_switch import StagedOutputs
from panelsynth.progress import Progress, emit
from panelsynth.workspace import Workspace


@dataclass
class WaveWork:
    """A wave prepared: its report, types and metadata (full mode) and item associations."""

    report: WaveReport
    types: dict[str, str]
    meta: dict[str, VariableMeta]
    mi_cluster: dict[str, float]
    mi_traj: dict[str, float] = field(default_factory=dict)


@dataclass
class _Told:
    """Warnings that are given once per run, not once per wave."""

    missing_meta: set[str] = field(default_factory=set)
    notes: set[str] = field(default_factory=set)
    kept: set[str] = field(default_factory=set)


def prepare_waves(
    ws: Workspace,
    cfg: PanelsynthConfig,
    files: dict[str, Path],
    fitted: Iterator[FittedWave],
    dictionary: StudyDictionary,
    alignment: Alignment,
    staging: StagedOutputs,
    warn: Callable[[str], None],
    progress: Progress | None,
) -> list[WaveWork]:
    """Align, write and describe every fitted wave (``fitted`` yields them in ``files``' order)."""
    told = _Told()
    works: list[WaveWork] = []
    for i, (wave, path) in enumerate(files.items()):
        emit(progress, {"stage": "wave", "wave": wave, "done": i, "total": len(files)})
        one = next(fitted)  # in this process, or from a worker
        source = ws.rel(path)
        _fit_warnings(one, dictionary, source, told, warn)
        fit, how = alignment.order(wave, source, one.frame, one.enc, one.fit)
        labels = fit.labels + 1
        ids = one.frame[cfg.study.id_column]
        link = alignment.link(wave, ids, labels)
        staging.write(ws.original_data(wave), csv_text(_wave_table(cfg, one, ids, labels, link)))
        types = {c: one.types_all[c] for c in one.sel.full_vars}
        meta = _metadata(cfg, one, types, dictionary, wave, warn, told)
        report = _report(ws, cfg, wave, path, one, fit, how, link, ids, labels)
        works.append(WaveWork(report, types, meta, *_associations(one.enc, fit, link, cfg)))
        if not fit.converged:
            warn(f"wave {wave}: the latent class model did not converge — see the fit report")
        del one
    return works


def _fit_warnings(
    one: FittedWave,
    dictionary: StudyDictionary,
    source: str,
    told: _Told,
    warn: Callable[[str], None],
) -> None:
    for note in one.notes:
        warn(note)
    for note in one.demographic_notes:
        if note not in told.notes:
            told.notes.add(note)
            warn(note)
    for var, kept in one.missing.kept.items():
        if var not in told.kept:
            told.kept.add(var)
            where = dictionary.source if var in dictionary.meta else f"{source}'s labels"
            warn(kept_warning(var, kept, where))


def _wave_table(
    cfg: PanelsynthConfig, one: FittedWave, ids: pd.Series, labels: np.ndarray, link: Link
) -> pd.DataFrame:
    """``Original data/wave{W}.csv``: id, the full mode's variables, cluster, prev_cluster."""
    st = cfg.study
    out = pd.DataFrame({st.id_column: ids})
    for c in one.sel.full_vars:
        out[c] = one.frame[c]  # whole-number floats are written as integers
    out[st.cluster_column] = pd.array(labels, dtype="Int64")
    if link.prev_labels is not None:
        out[st.prev_cluster_column] = link.prev_labels.to_numpy()
    return out


def _associations(
    enc: EncodedItems, fit: ClusterFit, link: Link, cfg: PanelsynthConfig
) -> tuple[dict[str, float], dict[str, float]]:
    """Mutual information of every item with the label and with the trajectory (previous
    label, label) of the respondents linked to the previous wave."""
    mi_cluster = {
        item: mutual_information(enc.codes[:, j], fit.labels) for j, item in enumerate(enc.items)
    }
    mi_traj: dict[str, float] = {}
    if link.prev_labels is not None and link.n_linked:
        k = cfg.clustering.k
        p = link.prev_labels.fillna(0).astype(int).to_numpy() - 1
        traj = np.where(p >= 0, p * k + fit.labels, -1)
        mi_traj = {
            item: mutual_information(enc.codes[:, j], traj) for j, item in enumerate(enc.items)
        }
    return mi_cluster, mi_traj


def _metadata(
    cfg: PanelsynthConfig,
    one: FittedWave,
    types: dict[str, str],
    dictionary: StudyDictionary,
    wave: str,
    warn: Callable[[str], None],
    told: _Told,
) -> dict[str, VariableMeta]:
    return {
        c: build_metadata(
            c,
            one.frame[c],
            types[c],
            dictionary,
            one.labelled,
            missing_codes=codes_for_variable(
                dictionary.meta.get(c) or one.labelled.get(c), cfg.study.missing_codes
            ).applied,
            wave=wave,
            warn=warn,
            told=told.missing_meta,
        )
        for c in one.sel.full_vars
    }


def _report(
    ws: Workspace,
    cfg: PanelsynthConfig,
    wave: str,
    path: Path,
    one: FittedWave,
    fit: ClusterFit,
    how: str,
    link: Link,
    ids: pd.Series,
    labels: np.ndarray,
) -> WaveReport:
    sel = one.sel
    return WaveReport(
        wave=wave,
        source=path,
        n_respondents=len(one.frame),
        items=list(sel.cluster_items),
        full_vars=list(sel.full_vars),
        dropped=list(sel.dropped),
        class_sizes={c + 1: int(n) for c, n in enumerate(fit.sizes)},
        average_posterior={c + 1: float(a) for c, a in enumerate(fit.average_posterior())},
        entropy=fit.relative_entropy(),
        bic=dict(fit.bic),
        bic_n=fit.bic_n,
        n_fit=fit.n_fit,
        method=fit.method,
        converged=fit.converged,
        alignment=how,
        n_linked=link.n_linked,
        truth=truth_check(ws, wave, ids, labels, cfg.study.id_column),
        demographics=[c for c in one.demographics if c in sel.full_vars],
        missing_codes=one.missing.rows(wave, len(one.frame)),
        type_reasons={c: one.reasons.get(c, "") for c in sel.full_vars},
        var_types={c: one.types_all[c] for c in sel.full_vars},
    )


def check_names(
    cfg: PanelsynthConfig, works: list[WaveWork], alignment: Alignment, warn: Callable[[str], None]
) -> None:
    """The orientation item and ``prepare.include`` name columns some raw wave has.

    Raises:
        ConfigError: no raw wave has the orientation item.
    """
    orient = cfg.clustering.orientation_item
    if orient and not alignment.orientation_seen:
        raise ConfigError(
            f"clustering.orientation_item {orient!r} is not a column of any raw wave — check "
            f"its spelling or remove it"
        )
    for name in cfg.prepare.include:
        if not any(name in w.report.full_vars or name in w.report.dropped for w in works):
            warn(f"prepare.include lists {name!r} but no raw wave has it — check the spelling")


def choose_dense(cfg: PanelsynthConfig, works: list[WaveWork]) -> pd.DataFrame:
    """Rank the items across waves and give every wave its dense-mode variables.

    Returns:
        The ranking (``Prepare/item_ranking.csv``).
    """
    ranking = rank_items(
        {w.report.wave: w.mi_cluster for w in works},
        {w.report.wave: w.mi_traj for w in works},
    )
    scores = dict(zip(ranking["item"], ranking["score"], strict=True))
    for w in works:
        r = w.report
        r.dense_vars = dense_variables(r.items, r.full_vars, scores, cfg.prepare.n_dense_items)
    return ranking
