"""Benchmark: the sparse regime — does the LLM add anything over simple models? (issue 16)

On the demo's simulated panel the population is known, so every candidate is scored against a
*fresh*, large test population drawn from the same process with another seed — people no method
ever saw. For each train size (respondents of the wave the methods may use) the script builds a
demo workspace whose wave holds that many respondents (a seeded, nested sample of one simulated
panel), then

- runs the LLM method with ``local/smollm2`` (plain, and ``--calibrate``), ``--rows`` rows each;
- fits the two baselines (independent per-cluster marginals; sequential CART) on the same
  training respondents and draws the same number of rows;
- takes the same number of the training respondents themselves (real rows: what a second sample
  of real people would score — the floor at that size);

and scores all of them against the fresh population with Column Shapes, pair trends over every
column pair (1 - total variation of each pair's joint distribution), the gradient-boosting C2ST,
TSTR (trained on the candidate, tested on the fresh population; target ``already_vaccinated``
from wave 3 on), the share of collapsed items and the membership-inference TPR at 1% FPR
(members: the rows the method used — the LLM's few-shot examples, the baselines' training rows).
Cluster labels are the simulator's true classes in both the training waves and the test
population (no clustering step, so the comparison is about generation only).

Usage::

    python benchmarks/bench_sparse.py                        # sizes 40,100,300,1000, wave 3 dense
    python benchmarks/bench_sparse.py --sizes 40,100 --methods marginal,cart,real   # no LLM

About 10 minutes per train size on 2 busy cores with the embedded model (a calibrated run makes
twice the calls of a plain one).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

METHODS = ("plain", "calibrated", "marginal", "cart", "real")
COLUMNS = (
    ("shapes", "Column Shapes"),
    ("pairs", "Pair trends (1-TVD, every pair)"),
    ("c2st_gb", "C2ST gradient boosting"),
    ("tstr", "TSTR AUC"),
    ("collapsed", "collapsed items"),
    ("mia", "MIA TPR@1%FPR"),
)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def score(
    columns: Any,
    test: pd.DataFrame,
    candidate: pd.DataFrame,
    target: str | None,
    seed: int,
    members: pd.DataFrame | None,
    non_members: pd.DataFrame,
) -> dict[str, float]:
    """Every figure of one candidate against the fresh population."""
    from panelsynth.evaluate.collapse import VarianceCollapse
    from panelsynth.evaluate.membership import attack
    from panelsynth.evaluate.metrics import (
        ColumnShapes,
        GradientBoostingC2ST,
        PairTrends,
        TrainSyntheticTestReal,
        safe_compute,
    )

    out = {
        "shapes": safe_compute(ColumnShapes(columns), test, candidate).score,
        "pairs": safe_compute(PairTrends(columns), test, candidate).score,
        "c2st_gb": safe_compute(GradientBoostingC2ST(columns, seed), test, candidate).score,
        "tstr": math.nan,
        "collapsed": math.nan,
        "mia": math.nan,
    }
    if target is not None:
        out["tstr"] = safe_compute(
            TrainSyntheticTestReal(columns, target, seed), test, candidate
        ).score
    vc = safe_compute(VarianceCollapse(columns), test, candidate)
    out["collapsed"] = float(vc.extra.get("collapsed_share", math.nan))
    if members is not None and len(members):
        fig = attack(columns, candidate, members, non_members, seed=seed)
        out["mia"] = float(fig.get("tpr_at_1pct_fpr", math.nan))
    return out


def write_train_wave(root: Path, wave: str, frame: pd.DataFrame) -> None:
    """Replace the demo's wave file with the training respondents."""
    from panelsynth.workspace import Workspace

    path = Workspace(root).original_data(wave)
    frame.to_csv(path, index=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="40,100,300,1000", help="comma-separated train sizes")
    ap.add_argument("--wave", default="3", help="demo wave (3 and later carry the TSTR target)")
    ap.add_argument("--mode", default="dense", choices=["dense", "full"])
    ap.add_argument("--rows", type=int, default=100, help="rows of every candidate")
    ap.add_argument("--n-outputs", type=int, default=10, help="rows per LLM call")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    ap.add_argument("--model", default="local/smollm2")
    ap.add_argument("--seed", type=int, default=42, help="generation and scoring seed")
    ap.add_argument("--sim-seed", type=int, default=2024, help="seed of the training panel")
    ap.add_argument("--test-seed", type=int, default=777, help="seed of the fresh population")
    ap.add_argument("--test-size", type=int, default=20_000, help="fresh recruits (wave 1)")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not sizes or min(sizes) < 10:
        print(f"unknown methods {unknown} or sizes below 10: {args.sizes}", file=sys.stderr)
        return 2

    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    from panelsynth.data import load_wave
    from panelsynth.demo.build import build_demo, original_frame
    from panelsynth.demo.simulator import OUTCOME, simulate_panel
    from panelsynth.evaluate.baselines import cart_baseline, marginal_baseline
    from panelsynth.evaluate.columns import columns_from_var_types, harmonise
    from panelsynth.evaluate.metrics import single_thread
    from panelsynth.run.wave import RunOptions, run_wave
    from panelsynth.workspace import Workspace

    t0 = time.perf_counter()
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-sparse-"))
    root.mkdir(parents=True, exist_ok=True)
    recruits = max(2000, math.ceil(max(sizes) * 1.6))
    train_panel = simulate_panel(recruits, seed=args.sim_seed)
    wave_rows = original_frame(train_panel, args.wave)
    if len(wave_rows) < max(sizes):
        print(f"wave {args.wave} has {len(wave_rows)} respondents < {max(sizes)}", file=sys.stderr)
        return 2
    order = np.random.default_rng(args.seed).permutation(len(wave_rows))  # nested samples
    test_panel = simulate_panel(args.test_size, seed=args.test_seed)
    test_raw = original_frame(test_panel, args.wave)
    print(
        f"training panel: {recruits} recruits (seed {args.sim_seed}), wave {args.wave} has "
        f"{len(wave_rows)} respondents; fresh population: {len(test_raw)} respondents of wave "
        f"{args.wave} (seed {args.test_seed})",
        flush=True,
    )
    client = None
    if {"plain", "calibrated"} & set(methods):
        from panelsynth.runner import open_client

        client = open_client(args.model)
    n_batches = max(1, -(-args.rows // args.n_outputs))
    results: list[dict[str, Any]] = []
    for size in sizes:
        ws_root = root / f"n{size}"
        build_demo(ws_root, seed=args.sim_seed, n_respondents=recruits)
        train_raw = wave_rows.iloc[np.sort(order[:size])].reset_index(drop=True)
        write_train_wave(ws_root, args.wave, train_raw)
        ws = Workspace(ws_root)
        wd = load_wave(
            ws,
            args.wave,
            mode=args.mode,
            missing_codes=[-99, -98],
            cluster_column="cluster",
            prev_cluster_column="prev_cluster",
        )
        columns = columns_from_var_types(
            wd.var_types, cluster_column="cluster", prev_cluster_column=wd.prev_cluster_column
        )
        target = OUTCOME if OUTCOME in wd.var_types else None
        frames: dict[str, pd.DataFrame] = {"test": test_raw, "train": wd.frame}
        seconds: dict[str, float] = {}
        for kind in ("plain", "calibrated"):
            if kind not in methods:
                continue
            t1 = time.perf_counter()
            res = run_wave(
                ws_root,
                args.wave,
                client,
                kind,
                RunOptions(
                    mode=args.mode,
                    n_outputs=args.n_outputs,
                    n_batches=n_batches,
                    seed=args.seed,
                    restart=True,
                    calibrate=kind == "calibrated",
                ),
            )
            seconds[kind] = time.perf_counter() - t1
            frames[kind] = pd.read_csv(res.output)
            frames[f"{kind}_examples"] = pd.read_csv(ws.examples_csv(kind, args.wave))
            print(f"n={size} {kind}: {res.rows} rows in {seconds[kind]:.0f}s", flush=True)
        h = harmonise(frames, columns)
        train, test = h["train"], h["test"]
        rng = np.random.default_rng([args.seed, size])
        with single_thread():
            if "marginal" in methods:
                h["marginal"] = marginal_baseline(train, columns, args.rows, rng)
            if "cart" in methods:
                h["cart"] = cart_baseline(train, columns, args.rows, rng, seed=args.seed)
        if "real" in methods:
            take = min(args.rows, len(train))
            h["real"] = train.iloc[np.sort(rng.choice(len(train), take, replace=False))]
        non_members = test.iloc[rng.choice(len(test), min(len(test), 2000), replace=False)]
        for kind in methods:
            if kind not in h:
                continue
            members = (
                h.get(f"{kind}_examples")
                if kind in ("plain", "calibrated")
                else (None if kind == "real" else train)
            )
            with single_thread():
                figs = score(columns, test, h[kind], target, args.seed, members, non_members)
            row = {"train_size": size, "method": kind, "rows": int(len(h[kind])), **figs}
            if kind in seconds:
                row["seconds"] = round(seconds[kind], 1)
            results.append(row)
            print(
                f"n={size:5d} {kind:10s} " + " ".join(f"{k}={_fmt(row[k])}" for k, _ in COLUMNS),
                flush=True,
            )

    print()
    print(
        f"wave {args.wave} {args.mode}, {args.rows} rows per candidate, model {args.model}, "
        f"seed {args.seed}; scored against a fresh population of {len(test_raw)} respondents; "
        f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    head = "| train n | method | " + " | ".join(lab for _, lab in COLUMNS) + " |"
    print(head)
    print("|" + "---|" * (len(COLUMNS) + 2))
    for r in results:
        print(
            f"| {r['train_size']} | {r['method']} | "
            + " | ".join(_fmt(r[k]) for k, _ in COLUMNS)
            + " |"
        )
    print(f"total {time.perf_counter() - t0:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.dir is None and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"workspaces kept under {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
