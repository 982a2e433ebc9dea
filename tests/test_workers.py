"""The one worker pool (``panelsynth.workers``): policy, order, errors, lost workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from panelsynth.errors import PanelsynthError
from panelsynth.workers import pool_size, run_in_workers

WORKER = """
import os
import sys

from panelsynth.workers import serve


def handle(job, shared):
    if job == "boom":
        raise ValueError("job boom failed")
    if job == "die":
        os._exit(3)
    return f"{shared}:{job}"


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:], handle))
"""


@pytest.fixture
def echo_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "echo_worker.py").write_text(WORKER, encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the pool adds the package's own folder
    return "echo_worker"


def test_pool_size_runs_small_or_single_jobs_in_process() -> None:
    big = 5_000_000
    assert pool_size([big], max_workers=2, min_mean_bytes=1_000, cpus=8) == 1
    assert pool_size([10, 20, 30], max_workers=2, min_mean_bytes=1_000, cpus=8) == 1
    assert pool_size([big] * 5, max_workers=2, min_mean_bytes=1_000, cpus=8) == 2
    assert pool_size([big] * 5, max_workers=4, min_mean_bytes=1_000, cpus=1) == 1
    assert pool_size([big] * 3, max_workers=8, min_mean_bytes=1_000, cpus=8) == 3


def test_results_come_back_in_the_jobs_order(echo_worker: str) -> None:
    jobs = ["a", "b", "c", "d", "e"]
    got = list(run_in_workers(echo_worker, jobs, "s", 2))
    assert got == ["s:a", "s:b", "s:c", "s:d", "s:e"]


def test_a_jobs_error_is_raised_in_its_turn(echo_worker: str) -> None:
    results = run_in_workers(echo_worker, ["a", "boom", "c"], "s", 2)
    assert next(results) == "s:a"
    with pytest.raises(ValueError, match="job boom failed"):
        next(results)


def test_a_lost_worker_is_reported_by_lost_or_as_one_line(echo_worker: str) -> None:
    got = list(
        run_in_workers(echo_worker, ["a", "die"], "s", 2, lost=lambda job, code: (job, code))
    )
    assert got == ["s:a", ("die", 3)]
    with pytest.raises(PanelsynthError, match=r"a worker process stopped \(exit code 3\)"):
        list(run_in_workers(echo_worker, ["a", "die"], "s", 2))


def test_closing_the_pool_early_stops_its_workers(echo_worker: str) -> None:
    results = run_in_workers(echo_worker, ["a", "b", "c", "d"], "s", 2)
    assert next(results) == "s:a"
    results.close()  # no hang, no error; the temporary folder is gone


def test_a_worker_interrupted_by_ctrl_c_exits_quietly(tmp_path: Path) -> None:
    import pickle

    from panelsynth.workers import serve

    def handle(job: str, shared: str) -> str:
        if job == "b":
            raise KeyboardInterrupt
        return job

    job_file = tmp_path / "jobs.pkl"
    job_file.write_bytes(pickle.dumps(([0, 1], ["a", "b"], None)))
    assert serve([str(job_file), str(tmp_path)], handle) == 130
    assert pickle.loads((tmp_path / "result-0.pkl").read_bytes()) == (True, "a")
    assert not (tmp_path / "result-1.pkl").exists()
