"""Imputation baselines on the demo, evaluated by masking (issue 15).

Builds the demo workspace (``build_demo``, seed 2024, ``--respondents``), reads every wave in the
full mode, and for each of ``--masks`` seeded masks hides 10% of the observed answers and the last
observed wave of 10% of the respondents who have one, imputes the masked panel ``--m`` times with
hot-deck within cluster, LOCF and chained equations, and scores them against the hidden answers
(:mod:`panelsynth.impute.score`). Coverage is pooled over the masks. The Bayes-optimal imputation
of one item (the posterior predictive under the simulator's true parameters) is scored on that
item next to the methods, with each method's distance from it.

Usage::

    python benchmarks/bench_impute.py                      # 600 respondents, m = 5, 3 masks
    python benchmarks/bench_impute.py --respondents 2000 --masks 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from panelsynth.demo import build_demo
from panelsynth.impute.baselines import ChainedEquations, HotDeck, LastObservationCarriedForward
from panelsynth.impute.demo_reference import BayesReference, distance_from_bayes
from panelsynth.impute.gaps import find_gaps, load_panel
from panelsynth.impute.mask import mask_panel
from panelsynth.impute.score import pool_coverage, score_imputations


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--respondents", type=int, default=600)
    ap.add_argument("--m", type=int, default=5)
    ap.add_argument("--masks", type=int, default=3)
    ap.add_argument("--item", default="vaccimportant")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        demo = build_demo(Path(tmp) / "ws", n_respondents=args.respondents)
        panel = load_panel(demo.workspace)
    methods = [
        HotDeck(),
        LastObservationCarriedForward(),
        ChainedEquations(),
        ChainedEquations(matching="pmm"),
    ]
    ref = BayesReference(demo.panel, args.item)
    results: dict[str, list[dict]] = {m.name: [] for m in methods}
    item_rows: dict[str, list[dict]] = {m.name: [] for m in [*methods, ref]}
    seconds: dict[str, float] = {m.name: 0.0 for m in methods}
    n_hidden = []
    for r in range(args.masks):
        masked = mask_panel(panel, seed=1000 + r)
        n_hidden.append(masked.truth["kind"].value_counts().to_dict())
        gaps = find_gaps(masked.panel)
        pred = ref.predictive(masked.panel, masked.truth)
        bayes_sets = ref.impute_item(pred, args.m, seed=r)
        item_rows[ref.name].append(distance_from_bayes(pred, masked.truth, bayes_sets, args.item))
        for meth in methods:
            t0 = time.time()
            sets = meth.impute(masked.panel, gaps, args.m, seed=r)
            seconds[meth.name] += time.time() - t0
            res = score_imputations(panel, masked.panel, masked.truth, sets, method=meth.name)
            results[meth.name].append(res)
            item_rows[meth.name].append(distance_from_bayes(pred, masked.truth, sets, args.item))
            print(f"mask {r + 1}/{args.masks}: {meth.name} done", file=sys.stderr)

    rows = []
    for name, res in results.items():
        s = [x["summary"] for x in res]
        rows.append(
            {
                "method": name,
                "accuracy (answers)": _mean([x["item"]["accuracy"] for x in s]),
                "accuracy (waves)": _mean([x["wave"]["accuracy"] for x in s]),
                "MAE ordinal": _mean([x["all"]["mae"] for x in s]),
                "TVD": _mean([x["all"]["tvd"] for x in s]),
                "|corr diff|": _mean([x["all"]["corr_diff"] for x in s]),
                "coverage 95%": pool_coverage(res),
                "coverage, between only": pool_coverage(res, "covered_between"),
                "|pooled - real| mean": _mean([x["all"]["interval_abs_bias"] for x in s]),
                "FMI": _mean([x["all"]["fmi"] for x in s]),
                "seconds": seconds[name] / args.masks,
            }
        )
    item = []
    for name, rr in item_rows.items():
        keys = rr[0].keys()
        item.append({"method": name, **{k: _mean([x[k] for x in rr]) for k in keys}})

    print(
        f"\nDemo: {args.respondents} respondents, 7 waves (full mode), m = {args.m}, "
        f"{args.masks} masks; hidden per mask: {n_hidden[0]}"
    )
    head = list(rows[0])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        cells = [row["method"]] + [_fmt(row[k], 1 if k == "seconds" else 3) for k in head[1:]]
        print("| " + " | ".join(cells) + " |")
    print(f"\nItem {args.item} only (hidden answers and waves), distance from the Bayes-optimal:")
    ihead = [
        "method",
        "accuracy",
        "mae",
        "tvd_hidden",
        "bayes_mode_accuracy",
        "mode_agreement",
        "expectation_gap",
        "pooled_tvd",
        "excess_log_loss",
        "n_cells",
    ]
    print("| " + " | ".join(ihead) + " |")
    print("|" + "---|" * len(ihead))
    for row in item:
        print(
            "| "
            + " | ".join([row["method"]] + [_fmt(row[k]) for k in ihead[1:-1]])
            + f" | {row['n_cells']:.0f} |"
        )
    print(
        f"\n{platform.python_version()}, {platform.machine()}, wall {time.time() - started:.0f} s",
        file=sys.stderr,
    )
    if args.json:
        args.json.write_text(
            json.dumps({"table": rows, "item": item, "per_mask": results}, indent=1, default=str)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
