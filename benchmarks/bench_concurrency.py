"""B1 — concurrent step 3 against an OpenAI-compatible stub with a fixed latency per call (SPEC §5).

A local stub server (``tests/servers/openai_stub.py``, run in its own process so that it does not
share the benchmark's interpreter lock, as a real server would not) sleeps ``L`` seconds per call
and answers valid rows. One wave of ``n_batches`` calls is generated through the real pipeline
(``run_wave``, HTTP client, Instructor, validation, checkpoint) twice, side by side:

* sequentially (``--concurrency 1``: the original's behaviour), and
* with ``--concurrency 8``;

steps 1-2 are cached beforehand so that only step 3 is timed. Each side runs ``--repeat`` times
(default 3) and its fastest run counts (on a shared machine, other processes only add time).
Prints both wall times, the ratio
and the bound ``min(8, n_batches / ceil(n_batches / 8))`` (equal-latency calls finish in rounds),
and checks that both runs wrote the same CSV.

Usage::

    python benchmarks/bench_concurrency.py                 # L = 0.2 s, 70 batches
    python benchmarks/bench_concurrency.py --latency 0.5 --batches 140 --concurrency 16
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2, help="seconds per call (L)")
    ap.add_argument("--batches", type=int, default=70)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--n-outputs", type=int, default=10)
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per side; the fastest counts (noise only adds)"
    )
    args = ap.parse_args(argv)
    import logging

    from fakes import write_tiny_workspace
    from servers.stub_process import load_average, stub_in_process

    from panelsynth.llm.registry import make_client
    from panelsynth.run.wave import RunOptions, run_wave

    logging.getLogger("panelsynth").setLevel(logging.ERROR)
    logging.getLogger("instructor").setLevel(logging.CRITICAL)
    print(
        f"B1: {args.batches} calls of {args.n_outputs} rows, stub latency {args.latency} s/call; "
        f"cores {os.cpu_count()}; {load_average()}"
    )
    with stub_in_process("fakes:varied_rows", args.latency) as base_url:
        with tempfile.TemporaryDirectory(prefix="bench_concurrency_") as tmp:
            ws = write_tiny_workspace(Path(tmp) / "ws", n=400)
            client = make_client("openai/stub-model", base_url=base_url)
            # steps 1-2 once, into the cache: the timed runs make step-3 calls only
            run_wave(ws, "2", client, "warmup", RunOptions(n_outputs=args.n_outputs, n_batches=1))
            results = {}
            for label, conc in (
                ("sequential", 1),
                (f"concurrency {args.concurrency}", args.concurrency),
            ):
                walls = []
                for rep in range(max(1, args.repeat)):
                    opts = RunOptions(
                        n_outputs=args.n_outputs, n_batches=args.batches, concurrency=conc
                    )
                    t0 = time.perf_counter()
                    res = run_wave(ws, "2", client, f"c{conc}-{rep}", opts)
                    walls.append(time.perf_counter() - t0)
                    steps = res.manifest_data["tokens"]["per_stage"]
                    assert steps["step1"]["calls"] == 0 and steps["step2"]["calls"] == 0
                wall = min(walls)
                results[label] = (wall, res.output.read_bytes(), res.rows)
                print(
                    f"  {label:<16} {wall:7.2f} s  ({res.rows} rows, {args.batches} calls; "
                    f"runs: {', '.join(f'{w:.2f}' for w in walls)} s)"
                )
            (t_seq, csv_seq, _), (t_conc, csv_conc, _) = results.values()
            rounds = math.ceil(args.batches / args.concurrency)
            bound = args.batches / rounds
            ratio = t_seq / t_conc
            print(
                f"  ratio sequential / concurrent = {ratio:.2f}x (latency bound "
                f"{args.batches}/{rounds} rounds = {bound:.2f}x; "
                f"target >= {0.9 * args.concurrency:.1f}x)"
            )
            print(f"  same CSV: {csv_seq == csv_conc}; {load_average()}")
            print(
                json.dumps(
                    {"t_sequential": t_seq, "t_concurrent": t_conc, "ratio": ratio, "bound": bound}
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
