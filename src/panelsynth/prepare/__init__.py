"""Step 0/1a (SPEC §3.1): from raw wave files to ``Original data/`` with aligned cluster labels.

:func:`prepare_workspace` reads the raw waves (``.csv``, ``.sav``/``.zsav``, ``.dta``; folder and
file pattern from ``[prepare]`` in ``panelsynth.toml``), links respondents across waves by the id
column, replaces survey missing codes with NA, selects variables, clusters each wave with a latent
class model (:mod:`.clustering`), aligns the labels across waves and writes:

- ``Original data/wave{W}.csv`` — id, the wave's selected variables, ``cluster`` (1..k, the same
  meaning in every wave) and, after the first wave, ``prev_cluster`` (the respondent's label in the
  previous wave, empty if the respondent did not take part in it);
- ``Dictionaries/var_types/types_wave{W}.json`` (dense mode) and ``.../full/types_wave{W}.json``
  (full mode), and the matching ``Dictionaries/json_metadata/[full/]metadata_wave{W}.json`` cut from
  the study dictionary ``Dictionaries/dictionary.csv`` (so metadata keys == var-type keys);
- reports in ``Prepare/``: ``fit_wave{W}.json`` and ``fit_report.csv`` (class sizes, average
  posterior, entropy, BIC for k = 1..4), ``transitions.csv``, ``item_ranking.csv``,
  ``selection.csv``, ``types.csv`` (every variable's type, role and why), ``missing_codes.csv``
  (per wave, variable and missing code: values set to NA, or codes kept because the dictionary
  lists them as answers), ``warnings.txt`` and, when the workspace has a ``Ground truth/`` folder
  (the demo), ``truth_check.csv``.

The stage's modules, in the order of its steps: :mod:`.raw` (finding and reading the raw waves,
ids, missing codes, the study dictionary), :mod:`.vartypes` (variable types and metadata),
:mod:`.select` (variable selection, the cross-wave ranking), :mod:`.fit` (one wave read and
clustered, in worker processes for large panels: :mod:`.worker`), :mod:`.clustering` and
:mod:`.lca` (the latent class model), :mod:`.align` (labels aligned across waves, previous labels
by id), :mod:`.waves` (the per-wave sequence), :mod:`.reports` (dictionaries and ``Prepare/``),
:mod:`.safety` (the manifest, never replacing foreign files), :mod:`.truth` (the demo's check).
The lock and the all-or-nothing switch of the outputs are :mod:`panelsynth.prepare_switch`,
outside this package: ``run`` and ``evaluate`` finish an interrupted switch without importing the
stage.

Variable selection
------------------
- The id column, ``cluster``/``prev_cluster`` columns of the raw file and ``prepare.exclude`` are
  never used. Demographics (``prepare.demographics``; one the data lacks is matched to a column
  of its kind, e.g. ``gender`` for ``sex``: :mod:`panelsynth.demographics`) and the outcome
  (``study.outcome``) are carried into both modes where a wave has them, but are not clustered
  on.
- Items: ``prepare.include`` when given (these bypass the density threshold), otherwise every other
  variable whose response density — the share of the wave's respondents who answered — is at least
  ``prepare.density_threshold``. Free-text columns (non-numeric with more than 20 distinct answers)
  are skipped. A variable with no answer at all in a wave is dropped with a warning naming it.
- Full mode: every item of the wave + demographics + outcome. Dense mode: the wave's top
  ``prepare.n_dense_items`` items of the cross-wave ranking + demographics + outcome.
- Clustering uses the wave's items that have at least two distinct answers.

Variable types
--------------
A ``type`` column of the study dictionary (``ordinal``, ``categorical``, ``continuous``, ``binary``,
SPSS's ``nominal`` and ``scale``, or the phrases ``"an ordinal"``, ...) wins; a row with only a
name and a type keeps a labelled file's texts. Next, an SPSS file's measurement level:
``nominal`` → ``a categorical``, ``ordinal`` → ``an ordinal``, ``scale`` → ``a continuous`` (two
codes: ``a binary``; text: ``a categorical``). Otherwise the dictionary's codes (or the file's
value labels) and the observed codes decide together (:mod:`.vartypes`): a range (``18-90``) is
``a continuous``, or ``an ordinal`` when it has at most 11 whole-number points (a count
``0-7``); codes are ``a binary`` when there are two, ``an ordinal`` when there are three or more
numbers (``a categorical`` for a demographic) and ``a categorical`` when they are text. Without a
dictionary entry the answers decide: two distinct values → binary, text → categorical, whole
numbers with at most 11 distinct values → ordinal, anything else → continuous.
``Prepare/types.csv`` lists every variable's type and why;
:meth:`PrepareResult.assumed_ordinals` names the variables whose numeric codes were taken as
ordered without a type or a level (``panelsynth prepare`` prints them). Metadata for a variable
the dictionary lacks is built from SPSS/Stata labels, or from the observed codes/range, with a
warning.

Cross-wave ranking
------------------
For every item and wave: the mutual information (bits) of its answers with the cluster label, and
— after the first wave — with the trajectory (previous label, current label) of the respondents
who took part in both waves. Each is averaged over the waves that have the item; the score is the
mean of the two averages (the label average alone if there is a single wave). Written to
``Prepare/item_ranking.csv`` with the per-wave values.

Safety
------
Nothing is written until every wave has been read and clustered. ``Original data/`` files, var
types and metadata that ``prepare`` did not write (or that were edited since) are not replaced
unless ``force=True``; with ``force`` the old file is first copied to ``Prepare/replaced/``.
``Prepare/manifest.json`` records what ``prepare`` wrote (a SHA-256 per file). One ``prepare``
runs per workspace (an OS lock), and its outputs are staged and switched in all at once, the
manifest last: a kill part-way leaves the old set, or a switch the next run completes
(:mod:`panelsynth.prepare_switch`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from panelsynth.config import PanelsynthConfig, load_config
from panelsynth.io import remove_old_temporaries, remove_stale_temporaries_of
from panelsynth.prepare.align import Alignment
from panelsynth.prepare.clustering import Engine, MissingMode
from panelsynth.prepare.fit import FitJob, FitSettings, fitted_waves
from panelsynth.prepare.raw import StudyDictionary, find_raw_files, read_raw_wave
from panelsynth.prepare.reports import write_dictionaries, write_reports
from panelsynth.prepare.results import PrepareResult, WaveReport
from panelsynth.prepare.safety import (
    backup,
    check_targets,
    manifest_path,
    output_targets,
    relposix,
    stale_outputs,
    warn_missing_contexts,
    write_manifest,
)
from panelsynth.prepare.select import rank_items, select_variables
from panelsynth.prepare.truth import TruthCheck
from panelsynth.prepare.vartypes import infer_var_type
from panelsynth.prepare.waves import check_names, choose_dense, prepare_waves
from panelsynth.prepare_switch import StagedOutputs, finish_interrupted_prepare, prepare_lock
from panelsynth.progress import Progress, emit
from panelsynth.workspace import Workspace

__all__ = [
    "PrepareResult",
    "TruthCheck",
    "WaveReport",
    "find_raw_files",
    "infer_var_type",
    "prepare_workspace",
    "rank_items",
    "read_raw_wave",
    "select_variables",
]

log = logging.getLogger("panelsynth")


def prepare_workspace(
    workspace: str | Path | Workspace,
    config: PanelsynthConfig | None = None,
    *,
    progress: Progress | None = None,
    force: bool = False,
    engine: Engine | None = None,
    missing: MissingMode | None = None,
    max_fit_rows: int | None = -1,
) -> PrepareResult:
    """Prepare a workspace from its raw waves (SPEC §3.1); see the module docstring.

    Args:
        workspace: The workspace folder.
        config: The study configuration (default: the workspace's ``panelsynth.toml``).
        progress: Called with event dicts (``{"stage": "wave", "wave": "3", "done": 2,
            "total": 7}``, ``{"stage": "write"}``).
        force: Replace ``Original data/``, var types and metadata files that ``prepare`` did not
            write (they are copied to ``Prepare/replaced/`` first).
        engine: LCA estimator (``numpy`` or ``stepmix``); default: ``clustering.engine``.
        missing: ``auto``, ``fiml`` or ``category`` (see
            :func:`panelsynth.prepare.clustering.fit_clusters`); default: ``clustering.missing``.
        max_fit_rows: Fit on a seeded subsample of at most this many respondents per wave;
            default (-1): ``clustering.max_fit_rows``; ``None``: fit on everyone.

    Returns:
        Per-wave reports, the item ranking, the transitions and the files written.

    Raises:
        WorkspaceError / DataError / ConfigError: one actionable line; nothing is written then.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.must_exist()
    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        log.warning(msg)

    with prepare_lock(ws):  # one prepare per workspace; outputs switched in all at once
        finish_interrupted_prepare(ws, locked=True)
        cfg = config if config is not None else load_config(ws.config_path)
        files = find_raw_files(ws, cfg)
        targets = output_targets(ws, list(files))
        foreign = check_targets(ws, targets, force=force)
        # what killed predecessors left: hidden temporaries full of real rows
        remove_stale_temporaries_of([*targets, manifest_path(ws)])
        remove_old_temporaries(ws.prepare_dir(), older_than=0)
        dictionary = StudyDictionary.load(ws)
        if not dictionary.found:
            warn(
                f"{dictionary.source} not found — metadata has the labels of .sav/.dta waves, "
                f"else only observed codes; write it (variable, question, responses) for "
                f"question texts"
            )
        settings = FitSettings.resolve(cfg, dictionary, engine, missing, max_fit_rows)
        staging = StagedOutputs(ws)
        fitted = fitted_waves([FitJob(w, p, ws.rel(p)) for w, p in files.items()], settings)
        try:
            alignment = Alignment(cfg, warn)
            works = prepare_waves(
                ws, cfg, files, fitted, dictionary, alignment, staging, warn, progress
            )
            fitted.close()  # the workers' files and processes are gone
            check_names(cfg, works, alignment, warn)
            ranking = choose_dense(cfg, works)
            emit(progress, {"stage": "write", "done": len(files), "total": len(files)})
            write_dictionaries(ws, works, staging)
            replaced = [relposix(ws, backup(ws, p)) for p in foreign]
            warn_missing_contexts(ws, list(files), warn)
            stale_outputs(ws, list(files), warn)
            reports = [w.report for w in works]
            transitions = alignment.transition_counts()
            write_reports(
                ws,
                reports,
                ranking,
                transitions,
                cfg,
                settings.engine,
                settings.missing,
                warnings,
                staging,
            )
            write_manifest(ws, staging.targets(), staging)
        except BaseException:
            staging.discard()
            fitted.close()  # stops the fitting workers, if any
            raise
        written = [p for p in staging.switch() if p != manifest_path(ws)]  # the manifest last
    return PrepareResult(
        workspace=ws,
        waves=reports,
        ranking=ranking,
        transitions=transitions,
        written=[relposix(ws, p) for p in written],
        replaced=replaced,
        warnings=warnings,
    )
