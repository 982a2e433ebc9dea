"""The one worker pool: independent jobs of a stage run in ``python -m <module>`` processes.

Large workspaces spread independent, CPU-bound jobs over the cores: ``prepare`` reads and
clusters each raw wave in a worker (:mod:`panelsynth.prepare.fit`), ``evaluate`` evaluates each
wave group in one (:mod:`panelsynth.evaluate.parallel`; a lost worker's pairs become failed
outcomes through ``lost=``).

How it works:

- :func:`pool_size` is the worker-count policy: one process (no pool) for a single job or small
  inputs, otherwise one worker per core, at most ``max_workers`` and at most one per job.
- :func:`run_in_workers` (the parent) starts ``workers`` processes as ``python -m <module>
  JOBFILE OUTDIR`` — not :mod:`multiprocessing`, whose spawn start method re-imports the caller's
  main script — with this package importable (:func:`worker_env`). Worker ``i`` takes every
  ``workers``-th job, so it pays its start-up (importing pandas, numpy, scipy: ~2 s) once. Each
  result is handed over as a file as soon as it is done and yielded in the jobs' order, so the
  caller works on job 1 while later jobs still run. A job's error is raised in its turn, as it
  would be in one process; a worker that died is reported by ``lost`` (by default a one-line
  :class:`~panelsynth.errors.PanelsynthError`).
- :func:`serve` (the worker module's body) runs its share of the jobs in order and writes each
  result, or the error that stopped it, atomically to ``OUTDIR/result-{N}.pkl``.
- Closing the iterator (the caller is done, raised, or was interrupted with Ctrl-C) kills the
  workers still running and removes the private temporary folder of job and result files.

Job and result files are pickles that only our own parent and worker processes write and read,
in a private (``0700``) temporary folder; nothing is ever unpickled from a workspace.

A worker module is three lines::

    from panelsynth.workers import serve
    if __name__ == "__main__":
        sys.exit(serve(sys.argv[1:], handle))  # handle(job, shared) -> result
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from panelsynth.errors import PanelsynthError
from panelsynth.io import atomic_write_bytes

J = TypeVar("J")
R = TypeVar("R")

#: How often the parent looks for the next result file (seconds).
POLL_SECONDS = 0.02


def worker_env() -> dict[str, str]:
    """The environment with this package importable (also when it is run from a source tree)."""
    import panelsynth

    env = dict(os.environ)
    src = str(Path(panelsynth.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def pool_size(
    sizes: Sequence[int], *, max_workers: int, min_mean_bytes: int, cpus: int | None = None
) -> int:
    """Worker processes for jobs whose inputs have these sizes (bytes); 1 = run in-process.

    A worker's start-up is only worth it for large inputs: below ``min_mean_bytes`` on average,
    or with fewer than two jobs, the jobs run in the calling process.
    """
    if len(sizes) < 2 or sum(sizes) / len(sizes) < min_mean_bytes:
        return 1
    cores = cpus if cpus is not None else os.cpu_count() or 1
    return max(1, min(max_workers, cores, len(sizes)))


def _lost_worker(job: object, code: int | None) -> Any:
    raise PanelsynthError(
        f"a worker process stopped (exit code {code}) before finishing its job — run the "
        f"command again"
    )


def run_in_workers(
    module: str,
    jobs: Sequence[J],
    shared: object,
    workers: int,
    *,
    lost: Callable[[J, int | None], R] = _lost_worker,
) -> Generator[R, None, None]:
    """Run ``handle(job, shared)`` of ``module``'s :func:`serve` for every job in ``workers``
    processes; yield the results in the jobs' order.

    Args:
        module: The worker module, run as ``python -m module JOBFILE OUTDIR``.
        jobs: Picklable jobs.
        shared: Picklable settings every job needs (sent once per worker).
        workers: Processes to start (see :func:`pool_size`).
        lost: Called with a job and the exit code when its worker died without a result; its
            return value stands in for the result, or it raises.

    Raises:
        The error a job raised, in the job's turn.
    """
    with tempfile.TemporaryDirectory(prefix="panelsynth-workers-") as tmp:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for i in range(workers):
                mine = list(range(i, len(jobs), workers))
                job_file = Path(tmp) / f"jobs{i}.pkl"
                job_file.write_bytes(pickle.dumps((mine, [jobs[n] for n in mine], shared)))
                cmd = [sys.executable, "-m", module, str(job_file), tmp]
                procs.append(subprocess.Popen(cmd, env=worker_env()))
            for n, job in enumerate(jobs):
                proc, out = procs[n % workers], Path(tmp) / f"result-{n}.pkl"
                while not out.exists():
                    if proc.poll() is not None and not out.exists():
                        break
                    time.sleep(POLL_SECONDS)
                if not out.exists():
                    yield lost(job, proc.returncode)
                    continue
                ok, value = pickle.loads(out.read_bytes())
                out.unlink()
                if not ok:
                    raise value
                yield value
        finally:  # done, an error, Ctrl-C or the caller closed us: no worker outlives the pool
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()


def serve(argv: Sequence[str], handle: Callable[[Any, Any], Any]) -> int:
    """Body of a worker module run as ``python -m module JOBFILE OUTDIR``.

    Runs ``handle(job, shared)`` for the jobs of ``JOBFILE`` in order and writes each result
    (or the error that stopped it, after which the worker stops) to ``OUTDIR/result-{N}.pkl``.

    Returns:
        The exit code: 0, 1 after a job's error, 130 when interrupted (Ctrl-C, quietly: the
        parent reports the interruption).
    """
    try:
        return _serve(argv, handle)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it
        return 130


def _serve(argv: Sequence[str], handle: Callable[[Any, Any], Any]) -> int:
    job_file, out_dir = argv
    numbers, jobs, shared = pickle.loads(Path(job_file).read_bytes())
    for n, job in zip(numbers, jobs, strict=True):
        ok = True
        try:
            payload = pickle.dumps((True, handle(job, shared)))
        except Exception as err:  # noqa: BLE001 - handed to the parent, which raises it
            ok = False
            try:
                payload = pickle.dumps((False, err))
            except Exception:  # noqa: BLE001 - an error that cannot be pickled
                payload = pickle.dumps((False, RuntimeError(f"{type(err).__name__}: {err}")))
        atomic_write_bytes(Path(out_dir) / f"result-{n}.pkl", payload)
        if not ok:
            return 1
    return 0
