"""The books of a wave run: step logs, reproducibility, item non-response, cost, manifest."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from panelsynth.config import PanelsynthConfig
from panelsynth.data import WaveData
from panelsynth.describe import Step1Result, format_descriptions, format_statistics
from panelsynth.generate import GenerationResult
from panelsynth.io import atomic_write_text
from panelsynth.llm.base import LLMClient, Usage
from panelsynth.llm.keys import scrub, scrub_data
from panelsynth.metadata import Step2Result, format_wave_description
from panelsynth.tables import encode_table
from panelsynth.workspace import Workspace

if TYPE_CHECKING:
    from panelsynth.run.batch import BatchBooks


def reproducibility(client: LLMClient, concurrency: int) -> dict[str, Any]:
    """Whether the same inputs and ``--seed`` give the same outputs with ``client`` (manifest)."""
    seeded = bool(getattr(client, "supports_seed", False))
    if client.is_local:
        ordered = concurrency <= 1
        return {
            "reproducible": ordered and seeded,
            "seeded_calls": seeded,
            "note": (
                "in-process model: every call's sampler is seeded from --seed and its batch "
                "index, calls run in order; the same inputs, seed and model file give "
                "byte-identical outputs"
                if ordered
                else f"in-process model with --concurrency {concurrency}: calls are seeded but "
                "their order (and so the reused prompt state) varies; use --concurrency 1"
            ),
        }
    if seeded:
        return {
            "reproducible": False,
            "seeded_calls": True,
            "note": "hosted model: the seed is sent with every call, but the provider does not "
            "guarantee identical replies (best effort)",
        }
    return {
        "reproducible": False,
        "seeded_calls": False,
        "note": f"{client.label} takes no seed: replies vary between runs",
    }


def item_nonresponse(wd: WaveData, rows: pd.DataFrame, *, calibrated: bool) -> dict[str, Any]:
    """NA share of every variable, real vs synthetic, and the mean gap (full-mode manifest).

    The plain mode leaves item non-response to the model, which rarely writes a missing answer:
    the gap is reported, not hidden. The calibrated mode draws each row's pattern of missing
    answers from the real respondents of its cluster.
    """
    per: dict[str, dict[str, float]] = {}
    for v in wd.variables:
        real = float(wd.frame[v].isna().mean()) if len(wd.frame) else 0.0
        syn = float(rows[v].isna().mean()) if v in rows.columns and len(rows) else 0.0
        per[v] = {"real": round(real, 4), "synthetic": round(syn, 4)}
    real_mean = sum(d["real"] for d in per.values()) / max(1, len(per))
    syn_mean = sum(d["synthetic"] for d in per.values()) / max(1, len(per))
    return {
        "method": {
            True: "calibrated: each row's missing answers follow the pattern of a real "
            "respondent of its cluster",
            False: "plain: the model decides which answers are missing (it rarely leaves one "
            "blank); compare the shares below, or use --calibrate",
        }[calibrated],
        "real_mean_na_share": round(real_mean, 4),
        "synthetic_mean_na_share": round(syn_mean, 4),
        "gap": round(syn_mean - real_mean, 4),
        "per_variable": per,
    }


def codebook_warning(s2: Step2Result) -> list[str]:
    if not s2.codebook:
        return []
    return [
        f"step 2 disagrees with the codebook in {len(s2.codebook)} place(s); the step-3 prompt "
        f"uses the codebook's questions and labels (see codebook_check)"
    ]


def write_step1_logs(ws: Workspace, model_dir: str, wd: WaveData, s1: Step1Result) -> None:
    lines = [f"Wave {wd.wave} cluster descriptions ({wd.mode} mode)", ""]
    if len(s1.parts) > 1:
        lines[1:1] = [f"Described in {len(s1.parts)} calls (per cluster / group of variables)."]
    lines.append("Summary statistics:")
    for c, per_var in s1.statistics.items():
        lines.append(f"Cluster {c}:")
        lines += [f"- {v}: {format_statistics(s)}" for v, s in per_var.items()]
    lines += ["", "Descriptions:", format_descriptions(s1.descriptions), ""]
    atomic_write_text(ws.cluster_descriptions_log(model_dir, wd.wave), scrub("\n".join(lines)))
    ex_lines = [f"Wave {wd.wave} examples ({len(s1.examples)} rows)", ""]
    if s1.examples_source == "synthetic":
        ex_lines[1:1] = [
            "Synthetic examples: each variable drawn from its cluster's statistics (NA share "
            "included); no real respondent's row.",
        ]
    for c in wd.clusters:
        sub = s1.examples[s1.examples[wd.cluster_column] == c]
        ex_lines += [f"Cluster {c} ({len(sub)} examples):", encode_table(sub), ""]
    ex_lines += [f"Warning: {w}" for w in s1.warnings]
    atomic_write_text(ws.examples_log(model_dir, wd.wave), "\n".join(ex_lines) + "\n")
    atomic_write_text(ws.examples_csv(model_dir, wd.wave), s1.examples.to_csv(index=False))


def write_step2_log(ws: Workspace, model_dir: str, wd: WaveData, s2: Step2Result) -> None:
    text = (
        f"Wave {wd.wave} generated metadata\n\n"
        + format_wave_description(s2.description, wd)
        + "\n\nStructured output (WaveDescription):\n"
        + s2.description.model_dump_json(indent=2)
        + "\n"
    )
    if s2.codebook:
        text += "\nChecked against the codebook (the codebook is used in step 3):\n" + "".join(
            f"- {line}\n" for line in s2.codebook
        )
    elif s2.description.features:
        text += "\nChecked against the codebook: no disagreement.\n"
    atomic_write_text(ws.gen_metadata_log(model_dir, wd.wave), scrub(text))


def _stage_usage(usage: Usage, calls: int, cached: bool) -> dict[str, Any]:
    d = usage.to_dict()
    d.update({"calls": calls, "cached": cached})
    return d


def write_manifest(
    path: Path,
    base: dict[str, Any],
    s1: Step1Result,
    s2: Step2Result,
    gen: GenerationResult | None,
    config: PanelsynthConfig,
    client: LLMClient,
    started: float,
    *,
    batch: BatchBooks | None = None,
) -> dict[str, Any]:
    """Write the wave's manifest; with ``batch`` (a ``--batch`` run) its ``batch`` section and
    step 3 priced as billed."""
    calls = []
    if s1.calls:
        calls.append({"stage": "step1", "batch": None, "ok": True, **s1.usage.to_dict()})
    if s2.calls:
        calls.append({"stage": "step2", "batch": None, "ok": True, **s2.usage.to_dict()})
    step3 = Usage(attempts=0)
    if gen is not None:
        for c in sorted(gen.calls, key=lambda c: c.batch or 0):
            calls.append(
                {
                    "stage": "step3",
                    "batch": c.batch,
                    "ok": c.ok,
                    "kind": c.kind,
                    **c.usage.to_dict(),
                }
            )
            step3.add(c.usage)
    stages = {
        "step1": _stage_usage(s1.usage, s1.calls, s1.cached),
        "step2": _stage_usage(s2.usage, s2.calls, s2.cached),
        "step3": _stage_usage(step3, len(gen.calls) if gen else 0, False),
    }
    total_in = sum(c["input_tokens"] for c in calls)
    total_out = sum(c["output_tokens"] for c in calls)
    cost = run_cost(config, client, stages)
    if batch is not None:
        cost = batch.apply(cost, gen.calls if gen else [])
        base = {**base, "batch": batch.section()}
    data = {
        **base,
        "rows": int(len(gen.rows)) if gen else None,
        "wanted": base["settings"]["n_outputs"] * base["settings"]["n_batches"],
        "invalid_rows": gen.invalid_rows if gen else None,
        "returned_rows": gen.returned_rows if gen else None,
        "failed_calls": gen.failed_calls if gen else None,
        "faults": gen.faults if gen else {},
        "throttle": gen.throttle if gen else {},
        "copies_dropped": gen.copies_dropped if gen else None,
        "resumed_batches": gen.resumed_batches if gen else 0,
        # replies whose token usage was missing or implausible and estimated from the text
        "usage_estimated": sum(int(c.get("estimated", 0)) for c in calls),
        "retries": sum(c["retries"] for c in calls),
        "reasks": sum(c["reasks"] for c in calls),
        "tokens": {
            "input": total_in,
            "output": total_out,
            **_cache_writes(calls),
            "per_stage": stages,
        },
        "cost": cost,
        "wall_seconds": round(time.time() - started, 3),
        **_structured_output(client),
        "calls": calls,
    }
    atomic_write_text(path, json.dumps(scrub_data(data), indent=2, default=str) + "\n")
    return data


def run_cost(
    config: PanelsynthConfig, client: LLMClient, stages: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The manifest's ``cost``: USD per stage at the price of :func:`panelsynth.prices.price_for`
    (cached input tokens at the cached rate, Anthropic's cache writes at the cache-write rate),
    its source and date, what the provider's prompt cache saved and what its writes cost extra
    (with where the cache-write price comes from)."""
    from panelsynth.prices import price_for, unknown_price

    if client.is_local:
        return {"usd": 0.0, "basis": "local model"}
    if getattr(client, "on_this_machine", False) and client.label not in config.prices:
        # a server on this machine does not charge a provider's list price
        return {"usd": None, "basis": "server on this machine: no list price (set [prices])"}
    price = price_for(client.label, config)
    if price is None:
        return {"usd": None, "basis": unknown_price(client.label)}
    per_stage = {
        k: price.cost(
            v["input_tokens"],
            v["output_tokens"],
            v.get("cached_input_tokens", 0),
            v.get("cache_write_tokens", 0),
        )
        for k, v in stages.items()
    }
    cached = sum(v.get("cached_input_tokens", 0) for v in stages.values())
    written = sum(v.get("cache_write_tokens", 0) for v in stages.values())
    writes: dict[str, Any] = {}
    basis = price.cited
    if written:  # Anthropic's prompt-cache writes, billed above the input price
        writes = {
            "cache_write_tokens": written,
            "cache_write_per_mtok": price.cache_write_rate,
            "cache_write_price": price.cache_write_basis,
            "cache_write_surcharge_usd": price.write_surcharge(written),
        }
        if price.cache_write_per_mtok is None and price.write_surcharge(written):
            basis += f"; cache writes at {price.cache_write_basis}"
    return {
        "usd": sum(per_stage.values()),
        "per_stage": per_stage,
        "basis": basis,
        "source": price.source,
        "date": price.date,
        "prices": price.to_dict(),
        "cached_input_tokens": cached,
        "prefix_cache_saving_usd": price.saving(cached),
        **writes,
    }


def _cache_writes(calls: list[dict[str, Any]]) -> dict[str, int]:
    """``cache_write``: input tokens written to the provider's prompt cache (part of ``input``;
    Anthropic), when any were."""
    written = sum(int(c.get("cache_write_tokens", 0)) for c in calls)
    return {"cache_write": written} if written else {}


def _structured_output(client: LLMClient) -> dict[str, Any]:
    """The structured-output mode of an OpenAI-compatible server client, for the manifest."""
    mode = getattr(client, "structured_output", None)
    return {"structured_output": mode} if isinstance(mode, str) else {}
