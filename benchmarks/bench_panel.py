"""B-panel-fidelity — the demo's synthetic panel with ``local/smollm2``, scored side by side.

Runs (or, in a folder where ``panelsynth demo`` already ran, resumes at no cost) the demo's panel
(:data:`panelsynth.demo.pipeline.DEMO_PANEL`: 60 synthetic respondents through waves 1, 3 and 5,
dense mode, model dir ``smollm2-panel``) on the demo workspace, evaluates it with
``panelsynth evaluate``'s code, and prints, for the panel, the unlinked per-wave baseline, the
CART panel baseline and the real-half floor — all from the same evaluation run:

- the stability error (mean |real - synthetic| over items and wave pairs) of the unchanged-answer
  share and of the Spearman correlation;
- the transition fidelity (1 - TVD of the joint cluster table, mean over wave pairs);
- the trajectory C2ST (1 = indistinguishable);
- the time of the panel run and of the evaluation.

Usage::

    python benchmarks/bench_panel.py                    # builds ./bench-panel-demo
    python benchmarks/bench_panel.py /path/to/panelsynth-demo   # a demo folder (resumed)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

FIGURES = (
    ("stability_error_unchanged", "stability error, unchanged share"),
    ("stability_error_spearman", "stability error, Spearman"),
    ("transition_fidelity", "transition fidelity (1 - TVD)"),
    ("c2st_trajectory", "trajectory C2ST (1 = indistinguishable)"),
)
CANDIDATES = (
    ("synthetic", "panel"),
    ("_baseline_unlinked", "unlinked"),
    ("_baseline_cart_panel", "CART panel"),
    ("_real_holdout", "real half"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", nargs="?", default="bench-panel-demo", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from panelsynth.demo.build import build_demo
    from panelsynth.demo.pipeline import DEMO_MODEL, DEMO_PANEL, _prepare_labels, _run_demo_panel
    from panelsynth.evaluate import evaluate_workspace
    from panelsynth.runner import open_client

    ws = build_demo(args.directory).workspace  # the same seeded demo as `panelsynth demo`
    _prepare_labels(ws.root)
    client = open_client(DEMO_MODEL)
    started = time.perf_counter()
    res = _run_demo_panel(ws.root, client, DEMO_PANEL, None)
    panel_s = time.perf_counter() - started
    started = time.perf_counter()
    summary = evaluate_workspace(ws.root, model_dirs=[DEMO_PANEL.model_dir])
    eval_s = time.perf_counter() - started
    panel = next(p for p in summary.panels if p.model_dir == DEMO_PANEL.model_dir)
    if panel.error:
        sys.exit(f"panel not evaluated: {panel.error}")
    load = os.getloadavg()
    print(
        f"demo panel {DEMO_PANEL.model_dir}: waves {', '.join(res.waves)}, respondents per wave "
        f"{res.rows}, {DEMO_MODEL}, {os.cpu_count()} cores, load {load[0]:.1f}"
    )
    print(f"panel run {panel_s:.1f} s (0 when resumed from a finished demo), evaluation "
          f"{eval_s:.1f} s")  # fmt: skip
    width = max(len(label) for _, label in FIGURES)
    print(f"{'':{width}}  " + "  ".join(f"{name:>10}" for _, name in CANDIDATES))
    for key, label in FIGURES:
        row = panel.summary.get(key, {})
        cells = (row.get(c) for c, _ in CANDIDATES)
        print(
            f"{label:{width}}  "
            + "  ".join("         —" if v is None else f"{v:10.3f}" for v in cells)
        )
    print(json.dumps({"summary": panel.summary, "metrics": str(panel.metrics_json)}, default=str))


if __name__ == "__main__":
    main()
