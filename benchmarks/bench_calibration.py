"""Benchmark: plain vs calibrated generation on the demo panel with the embedded model (issue 8).

Builds the demo workspace (simulated FluPaths-like panel, latent-class labels), then generates the
same wave at the same size with ``local/smollm2`` — the plain method of the methodology and
``--calibrate`` (host-sampled profiles, oversample-and-select) — for each seed, evaluates every run
with the workspace evaluation, and prints the figures side by side: Column Shapes, unthresholded
Pair Trends, the logistic and gradient-boosting C2ST, cluster shares against the real ones, the
marginal distance of the calibrated pool before and after selection, calls, tokens and wall time.
Both methods of a seed share the same cached steps 1 and 2 (cluster descriptions, formatted
metadata), so they differ only in step 3. The calibrated mode samples its pool at temperature 1.0
(the plain default is 0.7), so a third run per seed — plain at 1.0 — shows what the temperature
alone does.

Usage::

    python benchmarks/bench_calibration.py             # wave 1 dense, 100 rows, seeds 42 and 7
    python benchmarks/bench_calibration.py --rows 50 --seeds 1 --dir /tmp/bench-calib

About 10 minutes on 2 busy cores (a calibrated run makes twice the calls of a plain one).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROWS = (
    ("density_shape", "Column Shapes"),
    ("density_trend_unthresholded", "Pair Trends (unthresholded)"),
    ("density_trend", "Pair Trends (sdmetrics, thresholded)"),
    ("c2st", "C2ST logistic"),
    ("c2st_gb", "C2ST gradient boosting"),
    ("cluster_shares", "Cluster shares (1 - TV)"),
    ("duplicate_share", "Duplicate rows share"),
    ("exact_copy_share", "Copies of a real row"),
    ("example_copy_share", "Copies of a few-shot example"),
)


def _fmt(v: object, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None, help="demo folder (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the demo folder")
    ap.add_argument("--wave", default="1")
    ap.add_argument("--mode", default="dense", choices=["dense", "full"])
    ap.add_argument("--rows", type=int, default=100, help="rows of each run")
    ap.add_argument("--n-outputs", type=int, default=10, help="rows per call")
    ap.add_argument("--oversample", type=float, default=2.0)
    ap.add_argument("--seeds", default="42,7", help="comma-separated generation seeds")
    ap.add_argument("--model", default="local/smollm2")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]

    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    from panelsynth.demo.pipeline import run_demo
    from panelsynth.evaluate import evaluate_workspace
    from panelsynth.run.wave import RunOptions, run_wave
    from panelsynth.runner import open_client

    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-calib-"))
    t0 = time.perf_counter()
    client = open_client(args.model)
    outcome = run_demo(root, plan=(), client=client, evaluate=False, panel=None)  # build + LCA
    ws = outcome.demo.workspace
    print(f"demo workspace {ws.root} built in {time.perf_counter() - t0:.1f}s", flush=True)
    n_batches = max(1, -(-args.rows // args.n_outputs))
    from panelsynth.config import POOL_TEMPERATURE

    runs = {}
    pairs = []
    kinds = ("plain", "plainT", "calib")
    for seed in seeds:
        for kind in kinds:
            md = f"bench-{kind}-s{seed}"
            opts = RunOptions(
                mode=args.mode,
                n_outputs=args.n_outputs,
                n_batches=n_batches,
                seed=seed,
                restart=True,
                calibrate=kind == "calib",
                oversample=args.oversample if kind == "calib" else None,
                temperature=POOL_TEMPERATURE if kind == "plainT" else None,
            )
            t1 = time.perf_counter()
            res = run_wave(ws.root, args.wave, client, md, opts)
            runs[md] = (res, time.perf_counter() - t1)
            print(f"{md}: {res.rows} rows in {runs[md][1]:.0f}s", flush=True)
        pairs.append((seed, *(f"bench-{k}-s{seed}" for k in kinds)))
    t2 = time.perf_counter()
    mds = [md for _, *group in pairs for md in group]
    summary = evaluate_workspace(ws.root, model_dirs=mds, waves=[args.wave])
    eval_s = time.perf_counter() - t2
    by_md = {o.model_dir: o for o in summary.outcomes}
    failed = [md for md in mds if by_md[md].error]
    for md in failed:
        print(f"evaluation of {md} failed: {by_md[md].error}", file=sys.stderr)
    if failed:
        return 1

    rows = n_batches * args.n_outputs
    print()
    print(
        f"wave {args.wave} {args.mode}, {rows} rows per run, {args.model}, "
        f"oversample {args.oversample}; plain = temperature 0.7 (default), plainT = plain at "
        f"{POOL_TEMPERATURE}, calib = --calibrate (pool at {POOL_TEMPERATURE})"
    )
    head = (
        f"{'metric':38s}"
        + "".join(f" {k + ' s' + str(s):>10s}" for s, *_ in pairs for k in kinds)
        + f" {'real half':>10s}"
    )
    print(head)
    print("-" * len(head))
    for key, label in ROWS:
        line = f"{label:38s}"
        for md in mds:
            line += f" {_fmt(by_md[md].summary.get(key, {}).get('synthetic')):>10s}"
        hold = by_md[pairs[0][1]].summary.get(key, {}).get("_real_holdout")
        print(line + f" {_fmt(hold):>10s}")
    shares = {}
    for md in mds:
        doc = json.loads(ws.eval_metrics_json(md, args.wave).read_text())
        det = doc["candidates"]["synthetic"]["cluster_shares"].get("details", [])
        shares[md] = {d["cluster"]: (d["real_share"], d["synthetic_share"]) for d in det}
    for cl in sorted(shares[mds[0]]):
        real = shares[mds[0]][cl][0]
        line = f"{'cluster ' + cl + f' share (real {real:.3f})':38s}"
        for md in mds:
            line += f" {shares[md].get(cl, (0.0, 0.0))[1]:>10.3f}"
        print(line)
    line = f"{'max |cluster share - real|':38s}"
    for md in mds:
        line += f" {max(abs(r - s) for r, s in shares[md].values()):>10.3f}"
    print(line)
    line = f"{'step-3 calls':38s}"
    for md in mds:
        line += (
            f" {len([c for c in runs[md][0].manifest_data['calls'] if c['stage'] == 'step3']):>10d}"
        )
    print(line)
    line = f"{'wall seconds (steps 1-3)':38s}"
    for md in mds:
        line += f" {runs[md][1]:>10.0f}"
    print(line)
    print()
    for seed, *group in pairs:
        cal = runs[group[-1]][0].manifest_data["calibration"]
        print(
            f"calibrated s{seed}: pool {cal['pool_rows']} rows, off-profile rows "
            f"{cal['off_profile_rows']}, mean TVD per variable and cluster "
            f"{cal['marginal_distance_before']['mean_tvd']:.3f} (pool) -> "
            f"{cal['marginal_distance_after']['mean_tvd']:.3f} (selected); copies of examples "
            f"{cal['copies']['of_examples']['pool']} in pool, "
            f"{cal['copies']['of_examples']['selected']} selected"
        )
    print(f"evaluation {eval_s:.0f}s; total {time.perf_counter() - t0:.0f}s")
    if args.dir is None and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"workspace kept: {ws.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
