"""B5 — projected step-3 cost per wave: online vs ``--batch`` vs ``--batch`` with prompt caching.

The demo workspace (``build_demo``, default size: 2,000 respondents), full mode, defaults of a
hosted model (30 examples per cluster, 20 rows x 35 calls = 700 rows per wave). Steps 1 and 2
are answered once by a scripted client with text of the length a hosted model writes (the
answers of ``bench_tokens.py``) and cached, so the dry-run planner
(``panelsynth.run.dryrun.plan_wave``) builds the real step-3 prompts of every call and counts them
as a dry run does (characters / 4 for hosted models); outputs are the planner's estimate (JSON rows
like the examples). The shared prefix is the static step-3 prompt (``run.wave.step3_prompt``),
counted the same way. The batch columns are what ``--dry-run --batch`` projects
(``WavePlan.batch``).

Prices come from the default price table (genai-prices, see ``panelsynth.prices``) through
``panelsynth.llm.batch.project_batch``, the function ``--dry-run --batch`` uses:

* **online**: every call at the online price, no cache discount;
* **online + cache**: what ``--dry-run`` reports today (the provider's prompt cache serves the
  shared prefix to every call after the first round of 8 concurrent calls);
* **batch**: the provider's batch price (half of online for both);
* **batch + cache**: the batch price with the shared prefix written once and read by every other
  request — a lower bound (caching inside a batch is best-effort).

Steps 1 and 2 stay online either way (2 calls per wave, cached on re-runs) and are not counted.

Usage::

    python benchmarks/bench_batch_cost.py [--waves 1 2 3] [--models openai/gpt-4o-mini ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]

MODELS = ("openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5")


def fill_steps_1_2(root: Path, wave: str, label: str) -> tuple[Any, Any]:
    """Answer and cache steps 1-2 of ``wave`` as ``label`` (scripted text)."""
    from bench_tokens import scripted_answer

    from panelsynth.cache import StepCache
    from panelsynth.config import load_config
    from panelsynth.describe import describe_wave
    from panelsynth.llm.base import FakeClient
    from panelsynth.metadata import format_metadata
    from panelsynth.run.dryrun import PlanningClient
    from panelsynth.run.wave import RunOptions, load_wave_for_run, resolve_settings
    from panelsynth.workspace import Workspace

    ws = Workspace(root)
    cfg = load_config(ws.config_path)
    _, n_examples, settings = resolve_settings(cfg, RunOptions(mode="full"), PlanningClient(label))
    wd = load_wave_for_run(ws, wave, cfg, "full")
    fake = FakeClient(default=scripted_answer(wd.metadata), label=label)
    cache = StepCache(ws.cache_dir())
    s1 = describe_wave(fake, wd, n_examples=n_examples, seed=settings.seed, cache=cache)
    s2 = format_metadata(
        fake, wd, cache=cache, preferred_target=cfg.study.outcome, seed=settings.seed
    )
    return s1, s2


def measure(root: Path, wave: str, label: str) -> dict[str, Any]:
    from panelsynth.config import load_config
    from panelsynth.prices import price_for
    from panelsynth.run.dryrun import PlanningClient, plan_wave
    from panelsynth.run.plan import RunOptions

    fill_steps_1_2(root, wave, label)
    cfg = load_config(root / "panelsynth.toml")
    plans = {
        batch: plan_wave(
            root,
            wave,
            PlanningClient(label),
            "bench",
            RunOptions(mode="full", batch=batch),
            config=cfg,
        )
        for batch in (False, True)
    }
    st1, st2, st3 = plans[False].stages
    assert st1.cached and st2.cached and st3.counted == "exact", "steps 1-2 must be cached"
    price = price_for(label, cfg)
    assert price is not None, f"no default price for {label}"
    proj = plans[True].batch  # what `--dry-run --batch` projects
    assert proj is not None
    return {
        "wave": wave,
        "model": label,
        "price": price.describe(),
        "calls": st3.calls,
        "input_tokens": st3.input_tokens,
        "output_tokens": st3.output_tokens,
        "prefix_tokens": int(proj["prefix_tokens"]),
        "online_usd": proj["online_usd"],
        "online_cached_usd": st3.cost_usd,
        "batch_usd": proj["batch_usd"],
        "batch_cached_usd": proj["batch_cached_usd"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--waves", nargs="+", default=None, help="default: every wave of the demo")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    args = ap.parse_args(argv)

    from panelsynth.demo import build_demo
    from panelsynth.workspace import Workspace

    logging.getLogger("panelsynth").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_batch_cost_") as tmp:
        root = Path(tmp) / "demo"
        build_demo(root)
        waves = args.waves or Workspace(root).waves_with_data()
        results = [measure(root, w, m) for m in args.models for w in waves]
    print("B5: demo workspace (2,000 respondents), full mode, hosted defaults; step 3 per wave")
    for model in args.models:
        rows = [r for r in results if r["model"] == model]
        print(f"{model}: {rows[0]['price']}")
        print(
            f"  {'wave':<5}{'calls':>6}{'input':>10}{'prefix':>8}{'output':>9}"
            f"{'online':>10}{'online+cache':>14}{'batch':>10}{'batch+cache':>13}"
        )
        for r in rows:
            print(
                f"  {r['wave']:<5}{r['calls']:>6}{r['input_tokens']:>10,}{r['prefix_tokens']:>8,}"
                f"{r['output_tokens']:>9,}{r['online_usd']:>10.4f}{r['online_cached_usd']:>14.4f}"
                f"{r['batch_usd']:>10.4f}{r['batch_cached_usd']:>13.4f}"
            )
        total = {
            k: sum(r[k] for r in rows) for k in ("online_usd", "batch_usd", "batch_cached_usd")
        }
        print(
            f"  all {len(rows)} waves: online ${total['online_usd']:.4f}, batch "
            f"${total['batch_usd']:.4f}, batch + cache ${total['batch_cached_usd']:.4f}"
        )
    print(f"({time.perf_counter() - t0:.1f} s)")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
