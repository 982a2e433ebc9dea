"""Large workspaces evaluate their waves in worker processes, with the same figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from evalhelpers import synthetic_like, write_synthetic, write_workspace

import panelsynth.evaluate.parallel as eval_parallel
from panelsynth.evaluate import evaluate_workspace


def test_parallel_waves_give_the_serial_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_workspace(tmp_path / "ws", n=300)
    for w in (1, 2):
        write_synthetic(root, "m1", w, synthetic_like(root, w, 100, seed=w))
    serial = evaluate_workspace(root)
    monkeypatch.setattr(eval_parallel, "PARALLEL_MIN_WAVE_BYTES", 0)
    calls: list[tuple[str, int, int]] = []
    parallel = evaluate_workspace(root, progress=lambda d, i, n: calls.append((d, i, n)))
    assert [(o.model_dir, o.wave) for o in parallel.outcomes] == [("m1", "1"), ("m1", "2")]
    for a, b in zip(serial.outcomes, parallel.outcomes, strict=True):
        assert not b.error
        assert a.summary == b.summary
    assert calls[0][1] == 0 and calls[-1][1:] == (2, 2)


def test_a_dead_worker_fails_its_pairs_with_a_reason(tmp_path: Path) -> None:
    outcomes = eval_parallel.lost_outcomes([("m1", "1")], -9)
    assert outcomes[0].error and "exit code -9" in outcomes[0].error
