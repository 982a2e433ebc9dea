"""B3 — the embedded model's rows/s for a wave vs llama.cpp's raw decode rate (SPEC §5).

On the demo workspace (dense mode, wave 1, 10 rows per call), side by side in one process with
the same loaded SmolLM2-135M:

1. **ours**: ``run_wave`` step 3 with ``local/smollm2`` (template decoder: forced JSON skeleton,
   sampled values) — wall time, rows, output tokens;
2. **raw**: for every call of (1), ``Llama.generate`` on the same chat prompt with llama.cpp's
   default sampler chain and no grammar, for exactly as many tokens as that call produced;
3. **grammar** (optional): (1) again with ``PANELSYNTH_LOCAL_DECODER=grammar`` (llama-cpp-python's
   GBNF grammar, the previous decoder).

The ratio is ``t_raw / t_ours``: our rows/s divided by the rows/s that raw decoding of the same
number of tokens would give (target >= 0.8). Every series starts from an empty KV cache, and all
of them reuse the shared prompt prefix between calls. Steps 1-2 are answered from the cache
(filled by a scripted client), so only step 3 is timed.

``--threads`` also measures raw decoding with 1 and 2 llama.cpp threads in child processes
(``PANELSYNTH_LLAMA_THREADS``); the load average is printed next to every figure.

Usage::

    python benchmarks/bench_local_decode.py                  # 8 calls of 10 rows
    python benchmarks/bench_local_decode.py --batches 20 --no-grammar --threads
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]


def _load() -> str:
    return "load {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def _options(args: argparse.Namespace) -> Any:
    from panelsynth.run.wave import RunOptions

    return RunOptions(mode=args.mode, n_outputs=args.n_outputs, n_batches=args.batches)


def _steps_1_2(root: Path, args: argparse.Namespace, client: Any, answer: Any) -> tuple[Any, ...]:
    """Steps 1-2 of the wave as ``run_wave`` makes them, through the workspace cache.

    ``answer`` is the client that answers a cache miss. Returns the plan, the wave, every
    respondent of the wave and the two steps' results.
    """
    from panelsynth.cache import StepCache
    from panelsynth.config import load_config
    from panelsynth.describe import describe_wave
    from panelsynth.metadata import format_metadata
    from panelsynth.run.wave import load_run_wave, resolve_plan
    from panelsynth.workspace import Workspace

    ws = Workspace(root)
    plan = resolve_plan(load_config(ws.config_path), _options(args), client)
    wd, every = load_run_wave(ws, args.wave, plan.config, plan.mode)
    cache = StepCache(ws.cache_dir())
    seed = plan.settings.seed
    s1 = describe_wave(
        answer,
        wd,
        n_examples=plan.n_examples,
        seed=seed,
        cache=cache,
        examples_source=plan.examples,
    )
    s2 = format_metadata(
        answer, wd, cache=cache, preferred_target=plan.config.study.outcome, seed=seed
    )
    return plan, wd, every, s1, s2


def _fill_steps_1_2(root: Path, args: argparse.Namespace, client: Any) -> None:
    """Put step-1/2 answers for ``client`` in the workspace cache (no model call)."""
    from bench_tokens import scripted_answer

    from panelsynth.config import load_config
    from panelsynth.llm.base import FakeClient
    from panelsynth.run.wave import load_wave_for_run
    from panelsynth.workspace import Workspace

    ws = Workspace(root)
    wd = load_wave_for_run(ws, args.wave, load_config(ws.config_path), args.mode)
    fake = FakeClient(default=scripted_answer(wd.metadata), label=client.label)
    _steps_1_2(root, args, client, fake)


def _ours(root: Path, client: Any, name: str, args: argparse.Namespace) -> dict[str, Any]:
    from panelsynth.run.wave import run_wave

    client.model.llama.reset()
    t0 = time.perf_counter()
    res = run_wave(root, args.wave, client, name, _options(args))
    wall = time.perf_counter() - t0
    steps = res.manifest_data["tokens"]["per_stage"]
    assert steps["step1"]["calls"] == 0 and steps["step2"]["calls"] == 0, "steps 1-2 not cached"
    calls = [c for c in res.manifest_data["calls"] if c["stage"] == "step3"]
    return {
        "wall": wall,
        "rows": res.rows,
        "calls": len(calls),
        "out_tokens": [c["output_tokens"] for c in calls],
        "invalid_rows": res.manifest_data["invalid_rows"],
        "load": _load(),
    }


def _raw(
    client: Any, root: Path, args: argparse.Namespace, out_tokens: list[int]
) -> dict[str, Any]:
    """Plain llama.cpp decoding of the same token counts on the same prompts."""
    from panelsynth.llm.schema_decode import chat_prompt_tokens
    from panelsynth.pydantic_models.rows import wave_row_specs
    from panelsynth.run.wave import step3_prompt, step3_strategy

    plan, wd, every, s1, s2 = _steps_1_2(root, args, client, client)  # from the cache
    specs = wave_row_specs(wd)
    strategy = step3_strategy(plan, wd, every, specs, client)
    gp, _ = step3_prompt(client, wd, s1, s2, strategy, specs)  # the prefix run_wave sends
    llama = client.model.llama
    llama.reset()
    t0 = time.perf_counter()
    total = 0
    for b, n in enumerate(out_tokens):
        tokens = chat_prompt_tokens(llama, gp.for_batch(b, args.n_outputs))
        got = 0
        for _ in llama.generate(tokens, top_k=40, top_p=0.95, min_p=0.05, temp=0.7):
            got += 1
            if got >= n:
                break
        total += got
    return {"wall": time.perf_counter() - t0, "tokens": total, "load": _load()}


def _threads_child(n_tokens: int) -> None:
    from panelsynth.llm.local import load_llama, resolve_gguf

    llama = load_llama(resolve_gguf("smollm2")).llama
    prompt = llama.tokenize(b"Write a long list of survey answers as CSV rows:\n", add_bos=False)
    llama.eval(prompt)
    t0 = time.perf_counter()
    got = 0
    for _ in llama.generate(prompt, top_k=40, top_p=0.95, min_p=0.05, temp=0.7):
        got += 1
        if got >= n_tokens:
            break
    print(json.dumps({"threads": llama.n_threads, "tok_s": got / (time.perf_counter() - t0)}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wave", default="1")
    ap.add_argument("--mode", default="dense", choices=["dense", "full"])
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--n-outputs", type=int, default=10)
    ap.add_argument("--no-grammar", action="store_true", help="skip the grammar decoder")
    ap.add_argument("--threads", action="store_true", help="raw decode with 1 and 2 threads")
    ap.add_argument("--threads-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads_child:
        _threads_child(args.threads_child)
        return 0

    import logging

    from panelsynth.demo import build_demo
    from panelsynth.llm.registry import make_client

    logging.getLogger("panelsynth").setLevel(logging.ERROR)
    client = make_client("local/smollm2").load()
    llama = client.model.llama
    print(
        f"B3: SmolLM2-135M Q4_1, llama.cpp threads {llama.n_threads}, wave {args.wave} "
        f"({args.mode}), {args.batches} calls x {args.n_outputs} rows; cores {os.cpu_count()}"
    )
    with tempfile.TemporaryDirectory(prefix="bench_local_") as tmp:
        root = Path(tmp) / "demo"
        build_demo(root)
        _fill_steps_1_2(root, args, client)
        ours = _ours(root, client, "ours", args)
        raw = _raw(client, root, args, ours["out_tokens"])
        n_out = sum(ours["out_tokens"])
        ratio = raw["wall"] / ours["wall"]
        print(
            f"  ours (template decoder): {ours['rows']} rows, {n_out} output tokens in "
            f"{ours['wall']:.1f} s = {ours['rows'] / ours['wall']:.2f} rows/s, "
            f"{n_out / ours['wall']:.1f} tok/s; invalid rows {ours['invalid_rows']} "
            f"({ours['load']})"
        )
        print(
            f"  raw llama.cpp decode of the same {raw['tokens']} tokens: {raw['wall']:.1f} s = "
            f"{raw['tokens'] / raw['wall']:.1f} tok/s ({raw['load']})"
        )
        print(f"  ratio raw time / our time = {ratio:.2f} (target >= 0.8)")
        summary: dict[str, Any] = {"ours": ours, "raw": raw, "ratio": ratio}
        if not args.no_grammar:
            os.environ["PANELSYNTH_LOCAL_DECODER"] = "grammar"
            try:
                gram = _ours(root, client, "grammar", args)
            finally:
                os.environ.pop("PANELSYNTH_LOCAL_DECODER", None)
            g_out = sum(gram["out_tokens"])
            graw = _raw(client, root, args, gram["out_tokens"])
            print(
                f"  grammar decoder (before): {gram['rows']} rows, {g_out} output tokens in "
                f"{gram['wall']:.1f} s = {gram['rows'] / gram['wall']:.2f} rows/s; invalid rows "
                f"{gram['invalid_rows']}; ratio vs raw {graw['wall'] / gram['wall']:.2f} "
                f"({gram['load']})"
            )
            print(
                f"  rows/s, template vs grammar: "
                f"{(ours['rows'] / ours['wall']) / (gram['rows'] / gram['wall']):.1f}x"
            )
            summary["grammar"] = {**gram, "raw_wall": graw["wall"]}
    if args.threads:
        for n in (1, 2):
            env = {**os.environ, "PANELSYNTH_LLAMA_THREADS": str(n)}
            out = (
                subprocess.run(
                    [sys.executable, __file__, "--threads-child", "300"],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            r = json.loads(out)
            print(f"  raw decode with {r['threads']} thread(s): {r['tok_s']:.1f} tok/s ({_load()})")
            summary[f"threads_{n}"] = r
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
