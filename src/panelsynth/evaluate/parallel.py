"""Large waves evaluated in parallel worker processes (``python -m panelsynth.evaluate.worker``),
one wave group each."""

from __future__ import annotations

import json
import os
from pathlib import Path

from panelsynth.evaluate.outcome import PairOutcome, ProgressCallback
from panelsynth.workers import worker_env
from panelsynth.workspace import Workspace

#: Mean size of the real wave files above which waves are evaluated in parallel worker processes
#: (one per core, at most :data:`MAX_WORKERS`). A worker's start-up (importing pandas and
#: scikit-learn, ~3 s) only pays off for large waves (~25,000 respondents and more).
PARALLEL_MIN_WAVE_BYTES = 2_000_000
MAX_WORKERS = 2


def wave_groups(pairs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Pairs grouped by wave (a wave's reference is then built once, in one process)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for md, w in pairs:
        groups.setdefault(w, []).append((md, w))
    return list(groups.values())


def worker_count(ws: Workspace, groups: list[list[tuple[str, str]]]) -> int:
    """Worker processes for these waves: 1 (in-process) unless the real waves are large."""
    if len(groups) < 2:
        return 1
    sizes = [ws.original_data(g[0][1]).stat().st_size for g in groups]
    if sum(sizes) / len(sizes) < PARALLEL_MIN_WAVE_BYTES:
        return 1
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1, len(groups)))


def run_parallel(
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
