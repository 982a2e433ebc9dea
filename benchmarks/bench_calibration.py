"""Benchmark: plain vs calibrated generation on the demo panel with the embedded model (issue 8).

Builds the demo workspace (simulated FluPaths-like panel, latent-class labels), then generates the
same wave at the same size twice with ``local/smollm2`` — the plain method of the methodology and
``--calibrate`` (host-sampled profiles, oversample-and-select) — evaluates both with the workspace
evaluation, and prints the figures side by side: Column Shapes, unthresholded Pair Trends, the
logistic and gradient-boosting C2ST, cluster shares against the real ones, the marginal distance
of the calibrated pool before and after selection, calls, tokens and wall time.

Usage::

    python benchmarks/bench_calibration.py                       # wave 1 dense, 100 rows each
    python benchmarks/bench_calibration.py --rows 50 --dir /tmp/bench-calib --keep

Takes about 10 minutes on 2 busy cores (the calibrated run makes about twice the calls).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

PLAIN = "bench-plain"
CALIBRATED = "bench-calibrated"

ROWS = (
    ("density_shape", "Column Shapes"),
    ("density_trend_unthresholded", "Pair Trends (unthresholded)"),
    ("density_trend", "Pair Trends (sdmetrics, thresholded)"),
    ("density_overall", "Overall quality (sdmetrics)"),
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None, help="demo folder (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the demo folder")
    ap.add_argument("--wave", default="1")
    ap.add_argument("--mode", default="dense", choices=["dense", "full"])
    ap.add_argument("--rows", type=int, default=100, help="rows of each run")
    ap.add_argument("--n-outputs", type=int, default=10, help="rows per call")
    ap.add_argument("--oversample", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--model", default="local/smollm2")
    args = ap.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    from panelsynth.demo.pipeline import run_demo
    from panelsynth.evaluate import evaluate_workspace
    from panelsynth.pipeline import RunOptions, run_wave
    from panelsynth.runner import open_client

    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-calib-"))
    t0 = time.perf_counter()
    client = open_client(args.model)
    outcome = run_demo(root, plan=(), client=client, evaluate=False)  # build + latent classes
    ws = outcome.demo.workspace
    print(f"demo workspace {ws.root} built in {time.perf_counter() - t0:.1f}s")
    n_batches = max(1, -(-args.rows // args.n_outputs))
    runs = {}
    for md, calibrate in ((PLAIN, False), (CALIBRATED, True)):
        opts = RunOptions(
            mode=args.mode,
            n_outputs=args.n_outputs,
            n_batches=n_batches,
            seed=args.seed,
            restart=True,
            calibrate=calibrate,
            oversample=args.oversample if calibrate else None,
        )
        t1 = time.perf_counter()
        res = run_wave(ws.root, args.wave, client, md, opts)
        runs[md] = (res, time.perf_counter() - t1)
        print(f"{md}: {res.rows} rows in {runs[md][1]:.0f}s", flush=True)
    t2 = time.perf_counter()
    summary = evaluate_workspace(ws.root, model_dirs=[PLAIN, CALIBRATED], waves=[args.wave])
    eval_s = time.perf_counter() - t2
    by_md = {o.model_dir: o for o in summary.outcomes}
    for md in (PLAIN, CALIBRATED):
        if by_md[md].error:
            print(f"evaluation of {md} failed: {by_md[md].error}", file=sys.stderr)
            return 1

    rows = args.rows if args.rows % args.n_outputs == 0 else n_batches * args.n_outputs
    print()
    print(
        f"wave {args.wave} {args.mode}, {rows} rows each, {args.model}, seed {args.seed}, "
        f"oversample {args.oversample}"
    )
    head = f"{'metric':40s} {'plain':>9s} {'calibrated':>11s} {'real half':>10s}"
    print(head)
    print("-" * len(head))
    for key, label in ROWS:
        p = by_md[PLAIN].summary.get(key, {})
        c = by_md[CALIBRATED].summary.get(key, {})
        print(
            f"{label:40s} {_fmt(p.get('synthetic')):>9s} {_fmt(c.get('synthetic')):>11s} "
            f"{_fmt(p.get('_real_holdout')):>10s}"
        )
    shares = {}
    for md in (PLAIN, CALIBRATED):
        doc = json.loads(ws.eval_metrics_json(md, args.wave).read_text())
        det = doc["candidates"]["synthetic"]["cluster_shares"].get("details", [])
        shares[md] = {d["cluster"]: (d["real_share"], d["synthetic_share"]) for d in det}
    for cl in sorted(shares[PLAIN]):
        real = shares[PLAIN][cl][0]
        print(
            f"{'cluster ' + cl + ' share (real ' + f'{real:.3f}' + ')':40s} "
            f"{shares[PLAIN][cl][1]:>9.3f} {shares[CALIBRATED].get(cl, (0, 0))[1]:>11.3f}"
        )
    worst = max(abs(r - s) for r, s in shares[CALIBRATED].values())
    print(f"{'max |cluster share - real| (calibrated)':40s} {'':>9s} {worst:>11.3f}")
    for md in (PLAIN, CALIBRATED):
        m = runs[md][0].manifest_data
        calls = len([c for c in m["calls"] if c["stage"] == "step3"])
        print(
            f"{md}: {calls} step-3 calls, {m['tokens']['input']} + {m['tokens']['output']} tokens, "
            f"{m['invalid_rows']} invalid rows, {runs[md][1]:.0f}s"
        )
    cal = runs[CALIBRATED][0].manifest_data["calibration"]
    print(
        f"calibrated: pool {cal['pool_rows']} rows, off-profile rows {cal['off_profile_rows']}, "
        f"mean TVD per variable and cluster {cal['marginal_distance_before']['mean_tvd']:.3f} "
        f"(pool) -> {cal['marginal_distance_after']['mean_tvd']:.3f} (selected); "
        f"copies of examples {cal['copies']['of_examples']['pool']} in pool, "
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
