"""``panelsynth demo``: build the demo workspace, run the pipeline with the local model, evaluate.

Sized to finish in a few minutes on 2 CPU cores with SmolLM2-135M: the dense mode for waves 1
and 3 and the full mode for wave 1, plus wave 1 dense in the calibrated mode (model dir
``smollm2-calibrated``, same size as the plain run) so the report shows both side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from panelsynth.demo.build import DemoResult, build_demo
from panelsynth.llm.base import LLMClient
from panelsynth.run.plan import RunOptions
from panelsynth.run.wave import RunResult, run_wave

log = logging.getLogger("panelsynth")

DEMO_MODEL = "local/smollm2"


@dataclass(frozen=True)
class DemoRun:
    """One (mode, wave) run of the demo."""

    wave: str
    mode: str
    model_dir: str
    n_outputs: int
    n_batches: int
    n_examples: int | None = None
    calibrate: bool = False


#: What the demo generates (rows = n_outputs * n_batches).
DEMO_PLAN: tuple[DemoRun, ...] = (
    DemoRun("1", "dense", "smollm2", n_outputs=10, n_batches=10),
    DemoRun("3", "dense", "smollm2", n_outputs=10, n_batches=10),
    DemoRun("1", "full", "smollm2-full", n_outputs=5, n_batches=10, n_examples=10),
    DemoRun("1", "dense", "smollm2-calibrated", n_outputs=10, n_batches=10, calibrate=True),
)


@dataclass
class DemoOutcome:
    demo: DemoResult
    runs: list[RunResult] = field(default_factory=list)
    evaluation: Any = None


RunHook = Callable[[Path, str, LLMClient, str, RunOptions], RunResult]


def run_demo(
    directory: str | Path,
    *,
    seed: int = 2024,
    n_respondents: int = 2000,
    client: LLMClient | None = None,
    plan: tuple[DemoRun, ...] = DEMO_PLAN,
    run: RunHook | None = None,
    evaluate: bool = True,
) -> DemoOutcome:
    """Build the demo, generate the waves of ``plan`` and evaluate them.

    A demo folder can be run again: finished waves are re-written from their checkpoints, and a
    checkpoint made with other settings is set aside and generated anew.
    """
    from panelsynth.errors import CheckpointMismatchError

    demo = build_demo(directory, seed=seed, n_respondents=n_respondents)
    ws = demo.workspace
    _prepare_labels(ws.root)
    if client is None:
        from panelsynth.runner import open_client

        client = open_client(DEMO_MODEL)
    runner = run or (lambda root, wave, c, md, opts: run_wave(root, wave, c, md, opts))
    outcome = DemoOutcome(demo)
    for item in plan:
        base = dict(
            mode=item.mode,
            n_outputs=item.n_outputs,
            n_batches=item.n_batches,
            n_examples=item.n_examples,
            calibrate=item.calibrate or None,
        )
        try:
            res = runner(
                ws.root, item.wave, client, item.model_dir, RunOptions(**base, resume=True)
            )
        except CheckpointMismatchError:
            res = runner(
                ws.root, item.wave, client, item.model_dir, RunOptions(**base, restart=True)
            )
        outcome.runs.append(res)
    if evaluate:
        outcome.evaluation = _evaluate(ws.root)
    return outcome


def _prepare_labels(root: Path) -> None:
    """Replace the true classes by computed latent-class labels when clustering is available."""
    try:
        from panelsynth.prepare import prepare_workspace  # type: ignore[attr-defined]
    except ImportError:
        log.info("clustering not available: the demo keeps the simulator's true classes")
        return
    prepare_workspace(root, force=True)


def _evaluate(root: Path) -> Any:
    try:
        from panelsynth.evaluate import evaluate_workspace  # type: ignore[attr-defined]
    except ImportError:
        log.info("evaluation not available in this version")
        return None
    return evaluate_workspace(root)
