"""Benchmark of ``panelsynth prepare`` on a large simulated panel (SPEC §5).

Simulates a FluPaths-like panel (default 100,000 respondents x 30 items x 14 waves) with the demo
simulator, writes it as raw CSV waves with a study dictionary, and runs :func:`prepare_workspace`
in a child process so that its peak memory (max RSS) is its own. Prints wall time, peak memory,
per-wave recovery of the true classes, and — side by side in the same run — the LCA fit of one
wave by the numpy engine and by StepMix.

Usage::

    python benchmarks/bench_prepare.py                      # 100k x 30 x 14
    python benchmarks/bench_prepare.py --respondents 20000 --waves 4 --items 20
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _write_workspace(root: Path, n: int, waves: int, items: int, seed: int) -> dict[str, float]:
    from panelsynth.demo.build import demo_config_text, dictionary_rows
    from panelsynth.demo.simulator import simulate_panel
    from panelsynth.scaffold import init_workspace

    t0 = time.perf_counter()
    panel = simulate_panel(n, n_waves=waves, n_items=items, seed=seed)
    t1 = time.perf_counter()
    ws, _ = init_workspace(root)
    ws.config_path.write_text(demo_config_text(panel.waves), encoding="utf-8")
    raw = ws.raw_dir()
    raw.mkdir(parents=True, exist_ok=True)
    for w in panel.waves:
        panel.raw[w].to_csv(raw / f"wave{w}.csv", index=False, lineterminator="\n")
    gt = ws.ground_truth_dir()
    gt.mkdir(parents=True, exist_ok=True)
    for w in panel.waves:
        panel.truth[w][["respondent_id", "true_class", "bayes_class"]].to_csv(
            gt / f"truth_wave{w}.csv", index=False, lineterminator="\n"
        )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["variable", "question", "responses"])
    writer.writerows(dictionary_rows(panel))
    ws.study_dictionary().write_text(buf.getvalue(), encoding="utf-8")
    return {"simulate_s": t1 - t0, "write_raw_s": time.perf_counter() - t1}


def _child(root: str, queue: mp.Queue) -> None:
    import logging

    from panelsynth.prepare import prepare_workspace

    logging.getLogger("panelsynth").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    result = prepare_workspace(root)
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put(
        {
            "wall_s": wall,
            "peak_rss_mib": peak_kib / 1024,
            "waves": [
                {
                    "wave": r.wave,
                    "n": r.n_respondents,
                    "items": len(r.items),
                    "n_fit": r.n_fit,
                    "ari": r.truth.ari if r.truth else None,
                    "ari_bayes": r.truth.ari_bayes if r.truth else None,
                    "acc": r.truth.accuracy if r.truth else None,
                    "acc_bayes": r.truth.accuracy_bayes if r.truth else None,
                }
                for r in result.waves
            ],
        }
    )


def _engine_comparison(root: Path, rows: int) -> dict[str, float]:
    """Fit one wave's two-class LCA (4 restarts) with both engines on the same rows."""
    import numpy as np

    from panelsynth.data import clean_missing, read_csv_any
    from panelsynth.prepare import clustering as cl

    df = clean_missing(read_csv_any(root / "Raw data" / "wave1.csv"), [-99, -98])
    items = [c for c in df.columns if c not in ("respondent_id", "age", "sex")]
    enc = cl.encode_items(df.head(rows), items).with_missing_category(cl.AUTO_MISSING_MAX_SHARE)
    out = {}
    for engine, fitter in (("numpy", cl.fit_lca), ("stepmix", cl.fit_lca_stepmix)):
        t0 = time.perf_counter()
        model = fitter(enc, 2, seed=0, n_init=4, tol=1e-7)
        out[f"{engine}_s"] = time.perf_counter() - t0
        out[f"{engine}_loglik"] = model.loglik
    out["rows"] = enc.n
    out["items"] = len(items)
    out["speedup"] = out["stepmix_s"] / out["numpy_s"]
    out["loglik_diff"] = float(abs(out["numpy_loglik"] - out["stepmix_loglik"]))
    del np
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--respondents", type=int, default=100_000)
    ap.add_argument("--waves", type=int, default=14)
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--compare-rows", type=int, default=5_000, help="0 skips the engine comparison")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the workspace here")
    args = ap.parse_args(argv)

    tmp = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="bench_prepare_")
        root = Path(tmp) / "ws"
    else:
        root = args.workdir
        if root.exists():
            shutil.rmtree(root)
    try:
        print(
            f"panel: {args.respondents:,} respondents x {args.items} items x {args.waves} waves "
            f"(seed {args.seed}); cores: {os.cpu_count()}"
        )
        setup = _write_workspace(root, args.respondents, args.waves, args.items, args.seed)
        print(f"simulate {setup['simulate_s']:.1f} s, write raw CSV {setup['write_raw_s']:.1f} s")

        ctx = mp.get_context("spawn")
        queue: mp.Queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(str(root), queue))
        proc.start()
        res = queue.get()
        proc.join()
        print(
            f"prepare: wall {res['wall_s']:.1f} s, peak memory (max RSS of the prepare process) "
            f"{res['peak_rss_mib']:.0f} MiB"
        )
        print("wave      n  items   n_fit    ARI (Bayes)     accuracy (Bayes)")
        for w in res["waves"]:
            ari = f"{w['ari']:.3f} ({w['ari_bayes']:.3f})" if w["ari"] is not None else "-"
            acc = f"{w['acc']:.3f} ({w['acc_bayes']:.3f})" if w["acc"] is not None else "-"
            print(
                f"{w['wave']:>4} {w['n']:>7} {w['items']:>6} {w['n_fit']:>7}  {ari:>15}  {acc:>16}"
            )
        summary = {"setup": setup, "prepare": res}
        if args.compare_rows:
            cmp = _engine_comparison(root, args.compare_rows)
            summary["engines"] = cmp
            print(
                f"LCA fit of wave 1 ({cmp['rows']:,} rows x {cmp['items']} items, k=2, "
                f"4 restarts): numpy {cmp['numpy_s']:.2f} s, StepMix {cmp['stepmix_s']:.2f} s — "
                f"ratio {cmp['speedup']:.0f}x; |loglik difference| {cmp['loglik_diff']:.3g}"
            )
        print(json.dumps(summary, default=float))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
