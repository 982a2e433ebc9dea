"""B-panel — a large synthetic panel against the OpenAI-compatible latency stub (issue 19).

A seeded real panel (``tests/panelgen.make_panel``: drop-out by cluster, re-entry, 7 waves) is
written to a temporary workspace; ``run_panel`` (the code of ``panelsynth run --panel``: the
host's draw, steps 1-2, every wave's step 3 with its checkpoint, the per-wave CSVs, the long
panel) generates ``--respondents`` synthetic respondents through every wave against the stub
(``tests/servers/openai_stub.py``, in its own process, ``--latency`` seconds per call, one valid
row per requested respondent). Steps 1-2 are cached by a small warm-up panel first, so the timed
run makes step-3 calls only.

Prints the wall time, the latency bound ``calls / concurrency x latency`` (and the rounds bound
``ceil(calls / concurrency) x latency``, which equal-latency calls cannot beat: the last round is
partial), their ratio to the wall time (1 = as fast as the bound), and the peak resident memory
of the process running the panel (the stub's process is not counted). The waves' calls run
together (a later wave's call starts once its respondents' previous rows are saved), so the
bounds are over all calls, not per wave.

Usage::

    python benchmarks/bench_panel_scale.py                        # 10,000 x 7, L = 2 s, c = 64
    python benchmarks/bench_panel_scale.py --respondents 2000 --latency 1
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "panel"), str(ROOT / "src")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--respondents", type=int, default=10_000)
    ap.add_argument("--waves", type=int, default=7)
    ap.add_argument("--latency", type=float, default=2.0, help="seconds per call (L)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--n-outputs", type=int, default=20, help="respondents per call")
    args = ap.parse_args(argv)
    from panelws import write_panel_workspace
    from servers.stub_process import load_average, stub_in_process

    from panelsynth.llm.registry import make_client
    from panelsynth.panel.run import run_panel
    from panelsynth.run.wave import RunOptions

    logging.getLogger("panelsynth").setLevel(logging.ERROR)
    logging.getLogger("instructor").setLevel(logging.CRITICAL)
    waves = [str(w) for w in range(1, args.waves + 1)]
    print(
        f"B-panel: {args.respondents} respondents x {args.waves} waves, {args.n_outputs} per "
        f"call, stub latency {args.latency} s/call, concurrency {args.concurrency}; cores "
        f"{os.cpu_count()}; {load_average()}"
    )
    with stub_in_process("panelstub:panel_responder", args.latency) as base_url:
        with tempfile.TemporaryDirectory(prefix="bench_panel_") as tmp:
            ws = write_panel_workspace(
                Path(tmp) / "ws", n=args.respondents, waves=args.waves, seed=5
            )
            client = make_client("openai/stub-model", base_url=base_url)
            warm = RunOptions(n_outputs=args.n_outputs, concurrency=args.concurrency)
            run_panel(ws, waves, client, "warmup", warm, respondents=args.n_outputs)
            opts = RunOptions(n_outputs=args.n_outputs, concurrency=args.concurrency)
            t0 = time.perf_counter()
            res = run_panel(ws, waves, client, "panel", opts, respondents=args.respondents)
            wall = time.perf_counter() - t0
            per = res.manifest_data["per_wave"]
            calls = sum(int(p["calls"]) for p in per.values())
            rounds = math.ceil(calls / args.concurrency)
            bound = calls / args.concurrency * args.latency
            rounds_bound = rounds * args.latency
            rows = sum(res.rows.values())
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"  rows {rows} in {calls} calls ({rounds} rounds of {args.concurrency})")
            print(
                f"  wall {wall:.1f} s; latency bound {bound:.1f} s -> ratio {bound / wall:.2f}; "
                f"rounds bound {rounds_bound:.1f} s -> ratio {rounds_bound / wall:.2f}"
            )
            print(f"  peak resident memory {peak_mb:.0f} MB; {load_average()}")
            print(
                json.dumps(
                    {
                        "respondents": args.respondents,
                        "waves": args.waves,
                        "rows": rows,
                        "calls": calls,
                        "wall_s": round(wall, 2),
                        "latency_bound_s": round(bound, 2),
                        "ratio": round(bound / wall, 3),
                        "rounds_bound_s": round(rounds_bound, 2),
                        "rounds_ratio": round(rounds_bound / wall, 3),
                        "peak_rss_mb": round(peak_mb),
                    }
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
