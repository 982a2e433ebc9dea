"""Large waves evaluated in worker processes of the one pool (:mod:`panelsynth.workers`), one
wave group per job (a wave's reference is then built once, in one process)."""

from __future__ import annotations

from panelsynth.evaluate.outcome import PairOutcome, ProgressCallback
from panelsynth.workers import pool_size, run_in_workers
from panelsynth.workspace import Workspace

#: Mean size of the real wave files above which waves are evaluated in parallel worker processes
#: (one per core, at most :data:`MAX_WORKERS`). A worker's start-up (importing pandas and
#: scikit-learn, ~3 s) only pays off for large waves (~25,000 respondents and more).
PARALLEL_MIN_WAVE_BYTES = 2_000_000
MAX_WORKERS = 2
WORKER_MODULE = "panelsynth.evaluate.worker"

Group = list[tuple[str, str]]


def wave_groups(pairs: list[tuple[str, str]]) -> list[Group]:
    """Pairs grouped by wave (a wave's reference is then built once, in one process)."""
    groups: dict[str, Group] = {}
    for md, w in pairs:
        groups.setdefault(w, []).append((md, w))
    return list(groups.values())


def worker_count(ws: Workspace, groups: list[Group]) -> int:
    """Worker processes for these waves: 1 (in-process) unless the real waves are large."""
    return pool_size(
        [ws.original_data(g[0][1]).stat().st_size for g in groups],
        max_workers=MAX_WORKERS,
        min_mean_bytes=PARALLEL_MIN_WAVE_BYTES,
    )


def run_parallel(
    ws: Workspace,
    pairs: list[tuple[str, str]],
    groups: list[Group],
    seed: int,
    progress: ProgressCallback | None,
    workers: int,
) -> list[PairOutcome]:
    """Evaluate the wave groups in ``workers`` processes; outcomes in the order of the pairs.

    A worker that dies fails its groups' pairs with the reason (the other waves still count).
    """
    done: dict[tuple[str, str], PairOutcome] = {}
    if progress:
        progress(f"{len(groups)} waves in {workers} processes", 0, len(pairs))
    results = run_in_workers(
        WORKER_MODULE, groups, (str(ws.root), seed), workers, lost=lost_outcomes
    )
    for group, outcomes in zip(groups, results, strict=True):
        for o in outcomes:
            done[(o.model_dir, o.wave)] = o
        if progress:
            progress(f"wave {group[-1][1]}", len(done), len(pairs))
    return [done[p] for p in pairs]


def lost_outcomes(group: Group, code: int | None) -> list[PairOutcome]:
    """The outcomes of a group whose worker died: every pair fails with the reason."""
    why = f"evaluation worker process failed (exit code {code}); re-run the evaluation"
    return [PairOutcome(md, w, error=why) for md, w in group]
