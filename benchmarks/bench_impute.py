"""Imputation methods on the demo, evaluated by masking (issue 15).

Builds the demo workspace (``build_demo``, seed 2024, ``--respondents``) and runs the library's
masked evaluation (:func:`panelsynth.impute.evaluation.evaluate_imputation`, the code of
``panelsynth evaluate-imputation``): for each of ``--masks`` seeded masks it hides 10% of the
observed answers and the last observed wave of 10% of the respondents who have one, imputes the
masked panel ``--m`` times with hot-deck within cluster, LOCF, chained equations (rounded and
PMM) and, with ``--model``, the LLM, and scores them against the hidden answers. Coverage is
pooled over the masks. The Bayes-optimal imputation of one item (the posterior predictive under
the simulator's true parameters) is scored on that item next to the methods.

Usage::

    python benchmarks/bench_impute.py                      # 600 respondents, m = 5, 3 masks
    python benchmarks/bench_impute.py --respondents 100 --waves 1,2 \\
        --items vaccimportant,vaccsafe,worryflu,likelyflu,doctortrust --m 3 --masks 1 \\
        --model local/smollm2 --json out.json              # with the LLM column
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from panelsynth.demo import build_demo
from panelsynth.impute.evaluation import EvalSettings, evaluate_imputation
from panelsynth.impute.llm import LLMSettings
from panelsynth.impute.run import ImputeOptions

BASELINES = ["hot-deck", "locf", "mice", "mice-pmm"]


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _markdown(rows: list[dict]) -> list[str]:
    head = list(rows[0])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row[head[0]])]
        for k in head[1:]:
            v = row[k]
            cells.append(str(v) if isinstance(v, int) else _fmt(v, 1 if "seconds" in k else 3))
        out.append("| " + " | ".join(cells) + " |")
    return out


def _list(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--respondents", type=int, default=600)
    ap.add_argument("--m", type=int, default=5)
    ap.add_argument("--masks", type=int, default=3)
    ap.add_argument("--item", default="vaccimportant")
    ap.add_argument("--waves", default=None, help="comma-separated (default: every wave)")
    ap.add_argument("--items", default=None, help="comma-separated (default: every item)")
    ap.add_argument("--model", default=None, help="add the LLM imputation, e.g. local/smollm2")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--workdir", type=Path, default=None, help="keep the demo workspace here (LLM checkpoints)"
    )
    ap.add_argument("--resume", action="store_true", help="take over the LLM's finished calls")
    args = ap.parse_args(argv)

    started = time.time()
    client = None
    methods = list(BASELINES)
    if args.model:
        from panelsynth.runner import open_client

        client = open_client(args.model)
        methods.append("llm")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp) / "ws"
        if not (args.resume and root.exists()):
            build_demo(root, n_respondents=args.respondents)
        doc = evaluate_imputation(
            root,
            methods,
            client,
            "bench",
            ImputeOptions(
                waves=_list(args.waves),
                items=_list(args.items),
                m=args.m,
                seed=1000,
                llm=LLMSettings(resume=args.resume),
            ),
            EvalSettings(masks=args.masks, bayes_item=args.item),
            progress=lambda s: print(s, file=sys.stderr, flush=True),
        )
    print(
        f"\nDemo: {args.respondents} respondents, waves {', '.join(doc['workspace_waves'])} "
        f"(full mode; respondents per wave {doc['respondents']}), items "
        f"{args.items or 'all'}, m = {args.m}, {args.masks} masks; hidden per mask: "
        f"{doc['hidden_per_mask']}"
    )
    print("\n".join(_markdown(doc["table"])))
    b = doc["bayes_item"]
    if "rows" in b:
        print(f"\nItem {b['item']} only, distance from the Bayes-optimal:")
        print("\n".join(_markdown(b["rows"])))
    else:
        print(f"\nNo Bayes-optimal reference: {b['skipped']}")
    if doc["llm_books"]:
        for mask, books in doc["llm_books"].items():
            calls = sum(p["calls"] for p in books["passes"])
            print(
                f"\nLLM {mask}: {calls} calls, tokens {books['tokens']['input']} in + "
                f"{books['tokens']['output']} out, faults "
                f"{[p['faults'] for p in books['passes'] if p['faults']]}"
            )
    print(
        f"\n{platform.python_version()}, {platform.machine()}, wall {time.time() - started:.0f} s",
        file=sys.stderr,
    )
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
