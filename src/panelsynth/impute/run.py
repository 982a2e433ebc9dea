"""``panelsynth impute``: fill a real panel's gaps ``m`` times and write the files (issue 15).

:func:`impute_workspace` reads the requested waves (:func:`load_panel`), lists the gaps
(:func:`find_gaps`), imputes them with the LLM (:class:`LLMImputer`) or a statistical baseline,
and writes ``Imputed data/<model_dir>/wave{W}_imp{k}.csv``, ``wave{W}_imputed_cells.csv`` and
``manifest.json``. One imputation runs at a time per model dir (an OS lock); the LLM's calls are
checkpointed per (wave, k) under ``checkpoints/``. :func:`plan_imputation` is the ``--dry-run``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from panelsynth.config import PanelsynthConfig, load_config
from panelsynth.errors import PanelsynthError
from panelsynth.impute import _runpath as rp
from panelsynth.impute.baselines import BASELINES
from panelsynth.impute.gaps import Gaps, Panel, find_gaps, load_panel
from panelsynth.impute.llm import LLMImputer, LLMSettings, output_budget
from panelsynth.impute.output import imputed_cells_csv, imputed_csv, write_imputed
from panelsynth.io import atomic_write_text
from panelsynth.llm.keys import scrub_data
from panelsynth.workspace import Workspace

log = logging.getLogger("panelsynth")

METHODS = ("llm", *BASELINES)

GUARANTEES = [
    "every answer a respondent gave is kept byte for byte (only empty cells are filled; absent "
    "respondents are appended as new lines)",
    "every imputed cell is listed in wave{W}_imputed_cells.csv, and nothing else is",
    "the cluster of a respondent in a wave they missed is drawn from the real transition table "
    "(host), never chosen by the model",
    "the model writes only the missing cells, within each variable's codes or range",
]


@dataclass
class ImputeOptions:
    """Settings of ``panelsynth impute`` and ``evaluate-imputation``."""

    waves: list[str] | None = None
    items: list[str] | None = None
    m: int = 5
    dropouts: bool = True
    method: str = "llm"
    seed: int = 42
    llm: LLMSettings = field(default_factory=LLMSettings)
    restart: bool = False
    max_cost_usd: float | None = None


@dataclass
class ImputeResult:
    model_dir: str
    folder: Path
    written: list[Path]
    manifest: Path
    manifest_data: dict[str, Any]


def check_method(method: str) -> str:
    if method not in METHODS:
        raise PanelsynthError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    return method


def check_m(m: int) -> int:
    if m < 1:
        raise PanelsynthError(f"--m must be at least 1, not {m}")
    return m


def gaps_summary(panel: Panel, gaps: Gaps) -> dict[str, dict[str, int]]:
    """Per wave: item gaps, respondents with one, absent rows by kind."""
    out = {}
    for w in panel.order:
        cells = gaps.cells[gaps.cells["wave"] == w]
        absent = gaps.absent[gaps.absent["wave"] == w]
        out[w] = {
            "respondents": int(len(panel.waves[w].frame)),
            "item_gaps": int(len(cells)),
            "respondents_with_item_gaps": int(cells["respondent_id"].nunique()),
            "dropped": int((absent["kind"] == "dropped").sum()),
            "skipped": int((absent["kind"] == "skipped").sum()),
        }
    return out


def make_imputer(
    method: str,
    ws: Workspace,
    client: Any,
    config: PanelsynthConfig,
    checkpoint_dir: Path,
    settings: LLMSettings,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    """The imputer of ``method`` (the LLM needs ``client``)."""
    if method != "llm":
        return BASELINES[method]()
    if client is None:
        raise PanelsynthError("--method llm needs --model")
    return LLMImputer(ws, client, config, checkpoint_dir, settings, progress)


def impute_workspace(
    workspace: str | Path,
    client: Any,
    model_dir: str,
    options: ImputeOptions,
    *,
    config: PanelsynthConfig | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> ImputeResult:
    """Impute the gaps of the requested waves and write the files.

    Raises:
        PanelsynthError: user-fixable problems (no id column, unknown item, existing outputs
            without --resume/--restart, an exhausted call budget: then --resume continues).
    """
    ws = Workspace(workspace)
    ws.must_exist()
    config = config or load_config(ws.config_path)
    check_method(options.method)
    check_m(options.m)
    if options.restart and options.llm.resume:
        raise PanelsynthError("--resume and --restart exclude each other — pick one")
    panel = load_panel(ws, options.waves, mode="full", items=options.items, config=config)
    gaps = find_gaps(panel, dropouts=options.dropouts)
    folder = ws.imputed_dir(model_dir)
    ckpt_dir = folder / "checkpoints"
    manifest_path = folder / "manifest.json"
    ws.refuse_links(folder, ckpt_dir, manifest_path)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with rp.RunLock(folder / ".lock", f"the imputation {model_dir}"):
        existing = [imputed_csv(ws, model_dir, w, 1) for w in panel.order]
        existing = [p for p in existing if p.exists()]
        if existing and not (options.llm.resume or options.restart):
            raise PanelsynthError(
                f"{ws.rel(existing[0])} already exists — pass --restart to impute again (the old "
                f"checkpoints are kept aside) or use another --model-dir"
            )
        if options.restart:
            for path in sorted(ckpt_dir.glob("*.checkpoint.jsonl")):
                moved = rp.Checkpoint(path).archive()
                log.info("previous checkpoint kept as %s", ws.rel(moved) if moved else path)
        elif options.method == "llm" and not options.llm.resume:
            left = sorted(ckpt_dir.glob("*.checkpoint.jsonl"))
            if left:
                raise PanelsynthError(
                    f"an unfinished imputation left {ws.rel(left[0])} — pass --resume to continue "
                    f"it or --restart to start over"
                )
        if client is not None and options.method == "llm":
            client = rp.with_budget(client, config, options.max_cost_usd)
        imputer = make_imputer(options.method, ws, client, config, ckpt_dir, options.llm, progress)
        base = _manifest_base(ws, panel, gaps, model_dir, options, client)
        try:
            sets = imputer.impute(panel, gaps, options.m, options.seed)
        except rp.GenerationExhaustedError as err:
            _write_manifest(
                manifest_path,
                {**base, "status": "incomplete", "error": str(err)},
                imputer,
                config,
                client,
                started,
            )
            raise
        written = write_imputed(ws, panel, sets, model_dir)
        done = {
            "status": "complete",
            "outputs": [ws.rel(p) for p in written],
            "imputed_cells": {
                w: int(sum((s.cells["wave"] == w).sum() for s in sets)) for w in panel.order
            },
        }
        data = _write_manifest(manifest_path, {**base, **done}, imputer, config, client, started)
    return ImputeResult(model_dir, folder, written, manifest_path, data)


def _manifest_base(
    ws: Workspace,
    panel: Panel,
    gaps: Gaps,
    model_dir: str,
    options: ImputeOptions,
    client: Any,
) -> dict[str, Any]:
    llm = options.method == "llm"
    return {
        "kind": "imputation",
        "method": options.method,
        "model": client.label if llm and client is not None else None,
        "model_dir": model_dir,
        "waves": panel.order,
        "items": options.items,
        "settings": {
            "m": options.m,
            "seed": options.seed,
            "dropouts": options.dropouts,
            **({"llm": asdict(options.llm)} if llm else {}),
        },
        "gaps": gaps_summary(panel, gaps),
        "guarantees": GUARANTEES,
        "left_to_the_model": (
            "the values of the missing cells (one call per respondent, wave and imputation)"
            if llm
            else f"nothing: {options.method} is a statistical method"
        ),
        **(
            {"reproducibility": rp.reproducibility(client, options.llm.concurrency)}
            if llm and client is not None
            else {}
        ),
    }


def _write_manifest(
    path: Path,
    base: dict[str, Any],
    imputer: Any,
    config: PanelsynthConfig,
    client: Any,
    started: float,
) -> dict[str, Any]:
    data = {**base, **llm_books(imputer, config, client)}
    data["wall_seconds"] = round(time.time() - started, 3)
    atomic_write_text(path, json.dumps(scrub_data(data), indent=2, default=str) + "\n")
    return data


def llm_books(imputer: Any, config: PanelsynthConfig, client: Any) -> dict[str, Any]:
    """Calls, tokens, faults and cost of an LLM imputation (empty for a baseline)."""
    if not isinstance(imputer, LLMImputer):
        return {}
    passes = []
    total = rp.Usage(attempts=0)
    for p in imputer.passes:
        usage = rp.Usage(attempts=0)
        for c in p.gen.calls:
            usage.add(c.usage)
        total.add(usage)
        passes.append(
            {
                "wave": p.wave,
                "imputation": p.k,
                "respondents": len(p.cells),
                "calls": len(p.gen.calls),
                "failed_calls": p.gen.failed_calls,
                "invalid_rows": p.gen.invalid_rows,
                "resumed_calls": p.gen.resumed_batches,
                "faults": p.gen.faults,
                **usage.to_dict(),
            }
        )
    stages: dict[str, dict[str, Any]] = {}
    for name in ("step1", "step2"):
        u = [s[name] for s in imputer.steps_usage.values()]
        stages[name] = {
            k: sum(x[k] for x in u)
            for k in ("input_tokens", "output_tokens", "cached_input_tokens", "calls")
        }
    stages["impute"] = {**total.to_dict(), "calls": sum(p["calls"] for p in passes)}
    return {
        "passes": passes,
        "steps": imputer.steps_usage,
        "notes": imputer.notes,
        "tokens": {
            "input": sum(s["input_tokens"] for s in stages.values()),
            "output": sum(s["output_tokens"] for s in stages.values()),
            "per_stage": stages,
        },
        "cost": rp.run_cost(config, client, stages),
    }


def plan_imputation(
    workspace: str | Path,
    label: str,
    model_dir: str,
    options: ImputeOptions,
    *,
    config: PanelsynthConfig | None = None,
) -> list[Any]:
    """What ``impute`` would do per wave (calls, tokens, cost), calling no model.

    Finished calls of existing checkpoints are not counted with ``--resume``.
    """
    ws = Workspace(workspace)
    ws.must_exist()
    config = config or load_config(ws.config_path)
    check_m(options.m)
    panel = load_panel(ws, options.waves, mode="full", items=options.items, config=config)
    gaps = find_gaps(panel, dropouts=options.dropouts)
    proj = rp.projector(label)
    ckpt_dir = ws.imputed_dir(model_dir) / "checkpoints"
    imputer = LLMImputer(ws, proj, config, ckpt_dir, options.llm, dry_run=True)
    from panelsynth.impute.gaps import cluster_of, draw_missing_clusters
    from panelsynth.impute.llm import imputation_seed, requests_for

    drawn = [
        draw_missing_clusters(panel, gaps, imputation_seed(options.seed, k))
        for k in range(1, options.m + 1)
    ]
    window = getattr(proj.inner, "context_window", None)
    plans = []
    for wave in panel.order:
        requests = requests_for(
            panel, wave, gaps, cluster_of(panel, wave, drawn[0]), options.llm.history
        )
        if not requests:
            continue
        first = len(proj.requests)
        wp = imputer.wave_prompt(panel, wave, requests, options.seed)
        st1 = rp.projected_stage(proj, "step1", first, window)
        st2 = rp.projected_stage(proj, "step2", first + st1.calls, window)
        calls = n_in = peak = n_out = 0
        notes = list(wp.notes)
        for k in range(1, options.m + 1):
            prompt = imputer.pass_prompt(panel, wave, gaps, drawn[k - 1], wp, k, options.m)
            done = _finished(imputer.checkpoint_path(wave, k)) if options.llm.resume else set()
            if done:
                notes.append(f"--resume: imputation {k}: {len(done)} respondents already done")
            for r in prompt.order:
                if r in done:
                    continue
                msgs = rp.with_request(prompt.prefix, prompt.texts[r])
                tokens = rp.count_messages(proj.inner, msgs)
                calls, n_in = calls + 1, n_in + tokens
                peak = max(peak, tokens + wp.max_tokens)
                n_out += int(output_budget(proj, [prompt.requests[r]]) / 1.6)
        st3 = rp.StagePlan(
            "impute",
            calls,
            False,
            n_in,
            n_out,
            "estimate",
            peak_tokens=peak,
            context_window=window,
        )
        stages = [st1, st2, st3]
        cost, basis, price, saving, note = rp.plan_cost(
            config,
            proj,
            stages,
            rp.count_messages(proj.inner, wp.prefix),
            options.llm.concurrency,
        )
        notes.append(
            f"{len(requests)} respondents with a gap x m = {options.m}: one call each; invalid "
            f"answers are asked again (at most {options.llm.max_attempts_factor:g} x the calls)"
        )
        plans.append(
            rp.WavePlan(
                wave,
                label,
                model_dir,
                "full",
                stages,
                int(calls * options.llm.max_attempts_factor) + 2,
                cost,
                basis,
                notes,
                price,
                saving,
                note,
            )
        )
    return plans


def _finished(path: Path) -> set[str]:
    ckpt = rp.Checkpoint(path)
    if not ckpt.exists():
        return set()
    _, records = ckpt.load()
    return {str(r["respondent"]) for r in records if r.get("rows") and r.get("respondent")}


def imputation_paths(ws: Workspace, model_dir: str, waves: Sequence[str], m: int) -> list[Path]:
    """The files an imputation of ``waves`` writes (for messages and tests)."""
    out = []
    for w in waves:
        out += [imputed_csv(ws, model_dir, w, k) for k in range(1, m + 1)]
        out.append(imputed_cells_csv(ws, model_dir, w))
    return out
