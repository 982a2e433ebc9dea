"""B2 — tokens per synthetic row and LLM calls of steps 1-2: the original's format vs ours.

Both formats are counted with the embedded model's tokenizer (``make_client("local/smollm2")``,
SmolLM2's BPE, chat template included) on the demo workspace (``build_demo``), full mode,
30 examples per cluster, 700 rows per wave: the original in 70 calls of 10 rows; ours twice, at
our default for hosted models (``DEFAULT_N_OUTPUTS["hosted"]`` rows per call) and like for like
(10 rows per call).

Steps 1 and 2 are answered by a scripted client with realistic text (the same descriptions and
formatted metadata feed both formats), so the comparison is about the *format*:

* **original** (as described in the issue and the seed's README): one step-1 call per variable
  and cluster (that variable's statistics); one step-2 call; every step-3 call re-sends the whole
  prompt — formatted metadata as the structured JSON it is stored as (``indent=2``), the variable
  types, the cluster descriptions, and the examples of each cluster as
  ``df.to_json(orient='index', indent=2)``; replies are JSON rows as a hosted model writes them
  (``", "`` and ``": "`` separators).
* **ours**: one step-1 call for all variables of both clusters, one step-2 call, both cached in
  the workspace (0 calls on a re-run); step-3 prompts as ``panelsynth run`` builds them
  (projected by ``panelsynth.run.dryrun``, i.e. the real prompt, counted exactly); replies as
  compact JSON (what the local template decoder writes) and, for hosted models, with the usual
  separators.

Input tokens per row = (all step-1, step-2 and step-3 input tokens of a wave) / rows of the wave.
The shared step-3 prefix is identical in every call of ours, so with llama.cpp prefix reuse (or a
provider's prompt cache) only the per-call suffix is processed anew; that figure is printed too.

Usage::

    python benchmarks/bench_tokens.py                 # waves 1 and 3
    python benchmarks/bench_tokens.py --waves 1 2 3 4 5 6 7
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

N_EXAMPLES, N_OUTPUTS, N_BATCHES = 30, 10, 70

SKEW = "left-skewed, most answers sit at the favourable end"
SPREAD = "moderate spread over the upper half of the scale"
SHAPE = "unimodal with a clear peak near the top category"
NA = "occasionally left unanswered"


def scripted_answer(wave_meta: dict[str, Any]) -> Any:
    """Answers of steps 1-2 with text of the length a hosted model writes."""

    def respond(messages: list[dict[str, str]], model: type) -> Any:
        schema = model.model_json_schema()
        if model.__name__ == "ClusterDescriptionsByVariable":
            out: dict[str, Any] = {}
            for cl, ref in schema["properties"].items():
                cdef = schema["$defs"][ref["$ref"].split("/")[-1]]
                fields = schema["$defs"]["Description"]["properties"]
                text = {"skew": SKEW, "spread": SPREAD, "shape": SHAPE, "na_frequency": NA}
                out[cl] = {v: {f: text[f] for f in fields} for v in cdef["properties"]}
            return out
        if model.__name__ == "FormattedMetadata":
            variables = schema["properties"]["target_variable"]["enum"]
            return {
                "description": "A longitudinal panel survey of adults about influenza, flu "
                "vaccination and attitudes towards vaccines (simulated FluPaths-like data).",
                "target_variable": variables[0],
                "features": {
                    v: {
                        "meaning": wave_meta[v].question[:160],
                        "values": wave_meta[v].responses_text()[:160],
                    }
                    for v in variables
                },
            }
        raise AssertionError(model.__name__)

    return respond


def original_step1_messages(
    wave: Any, stats: dict[int, dict[str, Any]]
) -> list[list[dict[str, str]]]:
    """One prompt per variable and cluster (the original's step 1)."""
    from panelsynth.describe import SYSTEM_DESCRIBE, format_statistics

    ask = "skewness, spread and shape" + (", and the NA frequency" if wave.mode == "full" else "")
    out = []
    for c, per_var in stats.items():
        for v, s in per_var.items():
            meta = wave.metadata.get(v)
            codebook = f" Possible responses: {meta.responses_text()}." if meta else ""
            text = (
                f"Here are the summary statistics of the variable {v}, {wave.var_types[v]} "
                f"variable, among respondents of cluster {c} in wave {wave.wave}.{codebook}\n"
                f"{format_statistics(s)}\n"
                f"Describe the {ask} of its distribution in purely qualitative terms, without "
                f"numbers."
            )
            out.append(
                [{"role": "system", "content": SYSTEM_DESCRIBE}, {"role": "user", "content": text}]
            )
    return out


def original_step3_messages(
    wave: Any, metadata_json: str, descriptions_text: str, examples: Any, batch: int
) -> list[dict[str, str]]:
    """The original's step-3 prompt, re-sent in full for every call of 10 rows."""
    parts = [
        f"We are generating synthetic data for wave {wave.wave} of a longitudinal survey.",
        "Here is the metadata of the dataset:",
        metadata_json,
        "Here are the variables and their types:",
        json.dumps(wave.var_types, indent=2),
        "Here are descriptions of the two clusters of respondents:",
        descriptions_text,
    ]
    for c in wave.clusters:
        sub = examples[examples[wave.cluster_column] == c]
        parts += [
            f"Here are examples of respondents from cluster {c}:",
            sub.to_json(orient="index", indent=2),
        ]
    parts.append(
        f"Generate {N_OUTPUTS} new synthetic respondents that follow the cluster descriptions and "
        f"resemble the examples. Respondents may leave questions unanswered (null)."
    )
    return [
        {
            "role": "system",
            "content": "You are a helpful assistant that generates synthetic survey data.",
        },
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def _rows_json(examples: Any, columns: list[str], compact: bool, n_rows: int) -> str:
    from panelsynth.values import plain as _json_cell

    recs = examples[columns].to_dict("records")
    rows = [{k: _json_cell(v) for k, v in recs[i % len(recs)].items()} for i in range(n_rows)]
    sep = (",", ":") if compact else (", ", ": ")
    return json.dumps({"rows": rows}, separators=sep)


class SmolLM2Counted:
    """A hosted-like client for planning (no small context window) that counts tokens, chat
    template included, with the embedded model's tokenizer."""

    is_local = False
    context_window: int | None = None

    def __init__(self, local: Any) -> None:
        self.label = local.label
        self.count_tokens = local.count_tokens
        self.count_chat_tokens = local.count_chat_tokens


def measure_wave(root: Path, wave: str, local: Any, ours_outputs: int) -> dict[str, Any]:
    """Figures of one wave: the original (10 rows x 70 calls) vs ours at ``ours_outputs`` rows per
    call (and 700 / ``ours_outputs`` calls: the same 700 rows)."""
    from panelsynth.cache import StepCache
    from panelsynth.config import load_config
    from panelsynth.describe import cluster_statistics, describe_wave, format_descriptions
    from panelsynth.llm.base import FakeClient
    from panelsynth.metadata import format_metadata
    from panelsynth.run.dryrun import count_messages, plan_wave
    from panelsynth.run.wave import RunOptions, load_wave_for_run
    from panelsynth.workspace import Workspace

    ws = Workspace(root)
    shutil.rmtree(ws.cache_dir(), ignore_errors=True)  # each measurement starts uncached
    cfg = load_config(ws.config_path)
    wd = load_wave_for_run(ws, wave, cfg, "full")
    fake = FakeClient(default=scripted_answer(wd.metadata), label=local.label)
    fake.count_tokens = local.count_tokens  # type: ignore[method-assign]
    cache = StepCache(ws.cache_dir())
    ours_batches = math.ceil(N_OUTPUTS * N_BATCHES / ours_outputs)
    opts = RunOptions(
        mode="full", n_examples=N_EXAMPLES, n_outputs=ours_outputs, n_batches=ours_batches
    )

    # ours, steps 1-2: first run, then a re-run (the cache)
    s1 = describe_wave(fake, wd, n_examples=N_EXAMPLES, seed=42, cache=cache)
    s2 = format_metadata(fake, wd, cache=cache, preferred_target=cfg.study.outcome, seed=42)
    ours_calls_12 = len(fake.calls)
    step12_in = sum(count_messages(local, c["messages"]) for c in fake.calls)
    step12_out = sum(
        local.count_tokens(json.dumps(r, separators=(",", ":")))
        for r in (
            {
                f"cluster_{d.cluster}": {
                    v.variable: v.model_dump(exclude={"variable"}) for v in d.variables
                }
                for d in s1.descriptions
            },
            s2.description.model_dump(),
        )
    )
    # as a hosted model would be planned (no 8k context limit) but counted with SmolLM2's tokenizer
    counter = SmolLM2Counted(local)
    plan = plan_wave(root, wave, counter, "bench", opts, config=cfg)  # steps 1-2 now cached
    rerun_calls_12 = plan.stages[0].calls + plan.stages[1].calls
    st3 = plan.stages[2]
    rows = N_OUTPUTS * N_BATCHES
    assert ours_outputs * ours_batches == rows, "ours must make the same number of rows"
    columns = wd.columns
    examples = s1.examples
    ours_out_compact = local.count_tokens(_rows_json(examples, columns, True, ours_outputs))
    ours_out_hosted = local.count_tokens(_rows_json(examples, columns, False, ours_outputs))
    # per-call suffix after the shared prefix (what prefix reuse leaves to evaluate)
    from panelsynth.generate import GenerationPrompt, build_prompt
    from panelsynth.metadata import format_wave_description
    from panelsynth.pydantic_models.rows import wave_row_specs

    specs = wave_row_specs(wd)
    prefix = build_prompt(
        wd,
        format_wave_description(s2.description, wd),
        format_descriptions(s1.descriptions),
        examples,
        specs,
    )
    gp = GenerationPrompt(prefix, N_EXAMPLES)
    per_call = [count_messages(local, gp.for_batch(b, ours_outputs)) for b in range(ours_batches)]
    static = count_messages(local, prefix)
    fresh_per_row = (step12_in + per_call[0] + sum(p - static for p in per_call[1:])) / rows

    # the original
    stats = cluster_statistics(wd)
    o1 = original_step1_messages(wd, stats)
    o1_in = sum(count_messages(local, m) for m in o1)
    one_desc = json.dumps({"skew": SKEW, "spread": SPREAD, "shape": SHAPE, "na_frequency": NA})
    o1_out = len(o1) * local.count_tokens(one_desc)
    o2_in = count_messages(local, fake.calls[1]["messages"])  # step 2 is the same prompt
    o2_out = local.count_tokens(json.dumps(s2.description.model_dump()))
    meta_json = s2.description.model_dump_json(indent=2)
    desc_text = format_descriptions(s1.descriptions)
    o3 = [
        count_messages(local, original_step3_messages(wd, meta_json, desc_text, examples, b))
        for b in range(N_BATCHES)
    ]
    orig_out = local.count_tokens(_rows_json(examples, columns, False, N_OUTPUTS))
    return {
        "wave": wave,
        "variables": len(wd.variables),
        "examples": int(len(examples)),
        "ours_calls_12": ours_calls_12,
        "ours_calls_12_rerun": rerun_calls_12,
        "orig_calls_12": len(o1) + 1,
        "ours_in_row": (step12_in + st3.input_tokens) / rows,
        "ours_in_row_fresh": fresh_per_row,
        "ours_rows_per_call": ours_outputs,
        "ours_calls": ours_batches,
        "ours_out_row_compact": (step12_out + ours_out_compact * ours_batches) / rows,
        "ours_out_row_hosted": (step12_out + ours_out_hosted * ours_batches) / rows,
        "orig_in_row": (o1_in + o2_in + sum(o3)) / rows,
        "orig_out_row": (o1_out + o2_out + orig_out * N_BATCHES) / rows,
        "ours_step3_prompt": per_call[0],
        "orig_step3_prompt": o3[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--waves", nargs="+", default=["1", "3"])
    args = ap.parse_args(argv)

    import logging

    from panelsynth.demo import build_demo
    from panelsynth.llm.registry import make_client
    from panelsynth.run.plan import DEFAULT_N_OUTPUTS

    logging.getLogger("panelsynth").setLevel(logging.ERROR)
    local = make_client("local/smollm2")
    hosted = DEFAULT_N_OUTPUTS["hosted"]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_tokens_") as tmp:
        root = Path(tmp) / "demo"
        build_demo(root)
        results = [
            measure_wave(root, w, local, outputs)
            for w in args.waves
            for outputs in (hosted, N_OUTPUTS)
        ]
    print(
        f"B2: demo workspace, full mode, {N_EXAMPLES} examples per cluster, 700 rows per wave "
        f"(original: {N_OUTPUTS} rows x {N_BATCHES} calls); tokens by SmolLM2's tokenizer (chat "
        f"template included)"
    )
    for r in results:
        label = "default (hosted models)" if r["ours_rows_per_call"] == hosted else "like for like"
        print(
            f"wave {r['wave']} ({r['variables']} variables, {r['examples']} examples), ours "
            f"{r['ours_rows_per_call']} rows x {r['ours_calls']} calls, {label}: one step-3 prompt:"
            f" original {r['orig_step3_prompt']:,} tokens, ours {r['ours_step3_prompt']:,}"
        )
        print(
            f"  input tokens per row : original {r['orig_in_row']:8.1f}   "
            f"ours {r['ours_in_row']:8.1f}"
            f"   ratio {r['orig_in_row'] / r['ours_in_row']:.2f}x  (ours <= 1/5: "
            f"{r['ours_in_row'] <= r['orig_in_row'] / 5})"
        )
        print(
            f"    ours, not served by the shared-prefix cache: {r['ours_in_row_fresh']:.1f} per row"
            f" (ratio {r['orig_in_row'] / r['ours_in_row_fresh']:.0f}x)"
        )
        print(
            f"  output tokens per row: original {r['orig_out_row']:8.1f}   "
            f"ours {r['ours_out_row_hosted']:8.1f}"
            f" (hosted JSON), {r['ours_out_row_compact']:.1f} (local compact JSON)"
        )
        print(
            f"  LLM calls, steps 1-2 : original {r['orig_calls_12']} (2 x {r['variables']} + 1)   "
            f"ours {r['ours_calls_12']}, re-run {r['ours_calls_12_rerun']}"
        )
    print(f"({time.perf_counter() - t0:.1f} s)")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
