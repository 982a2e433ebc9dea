"""``panelsynth demo``: build the demo workspace, run the pipeline with the local model, evaluate.

Sized to finish in a few minutes on 2 CPU cores with SmolLM2-135M: the dense mode for waves 1
and 3 and the full mode for wave 1, plus wave 1 dense in the calibrated mode (model dir
``smollm2-calibrated``, same size as the plain run) so the report shows both side by side, and a
small synthetic panel (:data:`DEMO_PANEL`: the same synthetic respondents through waves 1, 3 and
5, dense mode, model dir ``smollm2-panel``; issue 19). The panel's waves 1 and 3 take their
steps 1-2 from the step cache the per-wave runs filled (same prompts), so only wave 5's are new.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from panelsynth.demo.build import DemoResult, build_demo
from panelsynth.llm.base import LLMClient
from panelsynth.panel.run import PanelRunResult, run_panel
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
    DemoRun("1", "dense", "smollm2", n_outputs=10, n_batches=6),
    DemoRun("3", "dense", "smollm2", n_outputs=10, n_batches=6),
    DemoRun("1", "full", "smollm2-full", n_outputs=5, n_batches=6, n_examples=10),
    DemoRun("1", "dense", "smollm2-calibrated", n_outputs=10, n_batches=6, calibrate=True),
)


@dataclass(frozen=True)
class DemoPanel:
    """The demo's synthetic panel (``panelsynth run --panel``): who, which waves, how."""

    waves: tuple[str, ...]
    model_dir: str
    respondents: int
    mode: str = "dense"
    n_outputs: int = 10


#: The demo's panel: 60 synthetic respondents followed through waves 1, 3 and 5 (the host draws
#: their cluster paths and presence through waves 2 and 4 as well).
DEMO_PANEL = DemoPanel(("1", "3", "5"), "smollm2-panel", respondents=60)


@dataclass
class DemoOutcome:
    demo: DemoResult
    runs: list[RunResult] = field(default_factory=list)
    panel: PanelRunResult | None = None
    evaluation: Any = None


RunHook = Callable[[Path, str, LLMClient, str, RunOptions], RunResult]
#: (workspace root, waves, client, model dir, options, respondents) -> the panel's result.
PanelHook = Callable[[Path, Sequence[str], LLMClient, str, RunOptions, int], PanelRunResult]


def run_demo(
    directory: str | Path,
    *,
    seed: int = 2024,
    n_respondents: int = 2000,
    client: LLMClient | None = None,
    plan: tuple[DemoRun, ...] = DEMO_PLAN,
    run: RunHook | None = None,
    evaluate: bool = True,
    panel: DemoPanel | None = DEMO_PANEL,
    run_panel_hook: PanelHook | None = None,
) -> DemoOutcome:
    """Build the demo, generate the waves of ``plan`` and the synthetic ``panel`` (None: no
    panel), and evaluate them.

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
    if panel is not None:
        outcome.panel = _run_demo_panel(ws.root, client, panel, run_panel_hook)
    if evaluate:
        outcome.evaluation = _evaluate(ws.root)
    return outcome


def _run_demo_panel(
    root: Path, client: LLMClient, panel: DemoPanel, hook: PanelHook | None
) -> PanelRunResult:
    """The demo's panel, resumed when its checkpoints match, else generated anew."""
    from panelsynth.errors import CheckpointMismatchError

    runner = hook or (
        lambda r, waves, c, md, opts, n: run_panel(r, waves, c, md, opts, respondents=n)
    )
    base = dict(mode=panel.mode, n_outputs=panel.n_outputs)
    waves = list(panel.waves)
    try:
        return runner(
            root, waves, client, panel.model_dir, RunOptions(**base, resume=True), panel.respondents
        )
    except CheckpointMismatchError:
        return runner(
            root,
            waves,
            client,
            panel.model_dir,
            RunOptions(**base, restart=True),
            panel.respondents,
        )


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
