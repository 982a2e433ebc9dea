"""B4 — non-LLM work at scale: prepare + step-1 statistics + evaluate (SPEC §5).

Simulates a FluPaths-like panel (default 100,000 respondents x 30 items x 14 waves) with the demo
simulator and writes it as raw waves (setup, reusing ``benchmarks/bench_prepare.py``). Then, each
stage in its own child process so that its peak memory (max RSS) is its own:

1. ``prepare_workspace`` — cleaning, variable selection, latent class clustering, label alignment;
2. step-1 statistics of every wave in the full mode — loading and checking the wave, the
   per-cluster statistics of every variable, the step-1 prompt and the seeded examples (all of
   step 1 except the one LLM call);
3. ``evaluate_workspace`` on one synthetic wave per wave (``--synthetic-rows`` rows drawn from the
   real wave by shuffling each column within its cluster: the evaluation's cost does not depend
   on where the rows come from).

Prints the wall time and peak memory per stage and in total, next to the target (<= 2 min and
<= 4 GB on 2 cores) and the load average.

Usage::

    python benchmarks/bench_scale.py                                   # 100k x 30 x 14
    python benchmarks/bench_scale.py --respondents 20000 --waves 4 --skip-evaluate
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]


def _load() -> str:
    return "load {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _children_peak_mib() -> float:
    """Largest peak of the stage's own worker processes (the evaluation's parallel waves)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _stage_prepare(root: str) -> dict[str, Any]:
    from panelsynth.prepare import prepare_workspace

    t0 = time.perf_counter()
    result = prepare_workspace(root)
    return {"wall_s": time.perf_counter() - t0, "waves": len(result.waves)}


def _stage_statistics(root: str) -> dict[str, Any]:
    from panelsynth.config import load_config
    from panelsynth.describe import cluster_statistics, describe_messages, sample_examples
    from panelsynth.run.wave import load_wave_for_run
    from panelsynth.workspace import Workspace

    t0 = time.perf_counter()
    ws = Workspace(root)
    cfg = load_config(ws.config_path)
    waves = cfg.study.waves or ws.waves_with_data()
    n_vars = 0
    for w in waves:
        wd = load_wave_for_run(ws, w, cfg, "full")
        stats = cluster_statistics(wd)
        describe_messages(wd, stats)
        sample_examples(wd, 30, 42)
        n_vars += len(wd.variables)
    return {"wall_s": time.perf_counter() - t0, "waves": len(waves), "variables": n_vars}


def _stage_evaluate(root: str) -> dict[str, Any]:
    from panelsynth.evaluate import evaluate_workspace

    t0 = time.perf_counter()
    summary = evaluate_workspace(root, model_dirs=["bench"])
    failed = [o for o in summary.outcomes if getattr(o, "error", None)]
    return {
        "wall_s": time.perf_counter() - t0,
        "pairs": len(summary.outcomes),
        "failed": [f"{o.wave}: {o.error}" for o in failed][:3],
    }


def _child(stage: str, root: str, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    import logging

    logging.getLogger("panelsynth").setLevel(logging.ERROR)
    fn = {"prepare": _stage_prepare, "statistics": _stage_statistics, "evaluate": _stage_evaluate}
    try:
        out = fn[stage](root)
    except Exception as exc:  # noqa: BLE001 - report, do not hang the parent
        out = {"error": f"{type(exc).__name__}: {exc}"}
    out["peak_rss_mib"] = _peak_mib()
    workers = _children_peak_mib()
    if workers:
        from panelsynth.evaluate.runner import MAX_WORKERS

        # upper bound: the stage process plus every worker at the largest worker's peak
        out["workers_peak_rss_mib"] = workers
        out["peak_rss_mib"] += MAX_WORKERS * workers
    queue.put(out)


def _run_stage(stage: str, root: Path) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    proc = ctx.Process(target=_child, args=(stage, str(root), queue))
    t0 = time.perf_counter()
    proc.start()
    res = queue.get()
    proc.join()
    res["process_s"] = time.perf_counter() - t0  # with interpreter start and imports
    res["load"] = _load()
    return res


def _write_contexts(root: Path) -> None:
    """Wave contexts (steps 1-3 need one per wave; ``prepare`` does not write them)."""
    from panelsynth.config import load_config
    from panelsynth.workspace import Workspace

    ws = Workspace(root)
    waves = load_config(ws.config_path).study.waves
    for i, w in enumerate(waves):
        prev = waves[i - 1] if i else "none"
        ws.wave_context(w).parent.mkdir(parents=True, exist_ok=True)
        ws.wave_context(w).write_text(
            f"Wave {w} of a simulated flu vaccination panel. Target variable: vaccimportant. "
            f"Previous wave: {prev}.",
            encoding="utf-8",
        )


def _write_synthetic(root: Path, rows: int, seed: int) -> int:
    """One synthetic full-mode wave per wave: real rows with columns shuffled within clusters."""
    import numpy as np
    import pandas as pd

    from panelsynth.config import load_config
    from panelsynth.run.wave import load_wave_for_run
    from panelsynth.workspace import Workspace

    ws = Workspace(root)
    cfg = load_config(ws.config_path)
    rng = np.random.default_rng(seed)
    waves = cfg.study.waves or ws.waves_with_data()
    for w in waves:
        wd = load_wave_for_run(ws, w, cfg, "full")
        real = wd.frame[wd.columns]
        parts = []
        for _, sub in real.groupby(wd.cluster_column):
            n = max(1, round(rows * len(sub) / len(real)))
            pick = sub.sample(n=n, replace=len(sub) < n, random_state=int(rng.integers(1 << 31)))
            shuffled = pick.copy()
            for col in shuffled.columns:
                if col != wd.cluster_column:
                    shuffled[col] = rng.permutation(shuffled[col].to_numpy())
            parts.append(shuffled)
        out = ws.output_csv("bench", w)
        out.parent.mkdir(parents=True, exist_ok=True)
        pd.concat(parts).to_csv(out, index=False)
        manifest = ws.manifest("bench", w)
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps({"wave": w, "mode": "full", "model_dir": "bench"}))
    return len(waves)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--respondents", type=int, default=100_000)
    ap.add_argument("--waves", type=int, default=14)
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--synthetic-rows", type=int, default=700)
    ap.add_argument("--skip-evaluate", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the workspace here")
    args = ap.parse_args(argv)

    from bench_prepare import _write_workspace

    tmp = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="bench_scale_")
        root = Path(tmp) / "ws"
    else:
        root = args.workdir
        if root.exists():
            shutil.rmtree(root)
    try:
        print(
            f"B4: {args.respondents:,} respondents x {args.items} items x {args.waves} waves; "
            f"cores {os.cpu_count()}; {_load()}"
        )
        setup = _write_workspace(root, args.respondents, args.waves, args.items, args.seed)
        _write_contexts(root)
        print(
            f"  setup: simulate {setup['simulate_s']:.1f} s, "
            f"write raw CSV {setup['write_raw_s']:.1f} s"
        )
        stages = {}
        for stage in ("prepare", "statistics", "evaluate"):
            if stage == "evaluate":
                if args.skip_evaluate:
                    continue
                t0 = time.perf_counter()
                n = _write_synthetic(root, args.synthetic_rows, args.seed)
                print(
                    f"  setup: {n} synthetic waves of {args.synthetic_rows} rows "
                    f"({time.perf_counter() - t0:.1f} s)"
                )
            res = _run_stage(stage, root)
            stages[stage] = res
            if "error" in res:
                print(f"  {stage:<10} FAILED: {res['error']}")
                continue
            extra = f"; failed: {res['failed']}" if res.get("failed") else ""
            print(
                f"  {stage:<10} wall {res['wall_s']:6.1f} s (process {res['process_s']:.1f} s), "
                f"peak memory {res['peak_rss_mib']:,.0f} MiB ({res['load']}){extra}"
            )
        ok = [s for s in stages.values() if "error" not in s]
        total = sum(s["wall_s"] for s in ok)
        peak = max((s["peak_rss_mib"] for s in ok), default=0.0)
        print(
            f"  total {total:.1f} s (target <= 120 s: {total <= 120}), peak memory {peak:,.0f} MiB "
            f"(target <= 4096 MiB: {peak <= 4096}); {_load()}"
        )
        print(json.dumps({"setup": setup, "stages": stages, "total_s": total, "peak_mib": peak}))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
