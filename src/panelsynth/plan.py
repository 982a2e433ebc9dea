"""Dry run of ``panelsynth run``: calls, tokens and cost per stage, without calling a model.

:func:`plan_wave` walks the same path as :func:`panelsynth.pipeline.run_wave` up to the first
model call — it loads and checks the wave, asks steps 1 and 2 for their results through the
workspace cache (read only) and builds the step-3 prompt with the same builders — but answers
every would-be call with a placeholder of the response model. Hence:

* steps 1 and 2 count 0 calls when their results are cached, else 1 call each;
* when steps 1 and 2 are cached, the step-3 prompt is the real one and its tokens are counted
  with the client's tokenizer (exact for local models, chat template included; characters / 4 for
  hosted models, whose tokenizers are not local); otherwise the descriptions and formatted
  metadata are placeholders of typical length and the step-3 input is an estimate;
* outputs are estimated from the response models (placeholder descriptions) and from the
  few-shot examples (rows).

Nothing is written to the workspace and no lock is taken. Hosted models are planned with
:func:`planning_client`, which needs neither an API key nor the provider's SDK nor the network.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from panelsynth.cache import StepCache
from panelsynth.checkpoint import Checkpoint
from panelsynth.config import PanelsynthConfig, load_config
from panelsynth.describe import describe_wave
from panelsynth.errors import ProviderError, WorkspaceError
from panelsynth.llm.base import Completion, LLMClient, Message, Usage
from panelsynth.metadata import format_metadata
from panelsynth.pipeline import (
    RunOptions,
    calibration_setup,
    load_wave_for_run,
    resolve_settings,
    step3_prompt,
    with_run_holdout,
)
from panelsynth.pydantic_models.rows import row_model_for_wave, wave_row_specs
from panelsynth.workspace import Workspace

log = logging.getLogger("panelsynth")

#: Length (characters) of a placeholder string when the schema gives no ``maxLength``.
TYPICAL_TEXT = 60
_WORDS = "mostly answers at the upper end with a long tail of lower answers and some gaps ".split()


@dataclass
class StagePlan:
    """Projected calls and tokens of one stage of one wave."""

    stage: str
    calls: int
    cached: bool
    input_tokens: int
    output_tokens: int
    counted: str  # "exact": the real prompt, the model's tokenizer; "estimate" otherwise
    cost_usd: float | None = None


@dataclass
class WavePlan:
    """What ``panelsynth run`` would do for one wave."""

    wave: str
    model: str
    model_dir: str
    mode: str
    stages: list[StagePlan]
    max_calls: int
    cost_usd: float | None
    cost_basis: str
    notes: list[str] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.stages)

    @property
    def input_tokens(self) -> int:
        return sum(s.input_tokens for s in self.stages)

    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--dry-run --json``)."""
        d = asdict(self)
        d.update(calls=self.calls, input_tokens=self.input_tokens, output_tokens=self.output_tokens)
        return d


# ----------------------------------------------------------------------------------------------
# clients
class PlanningClient:
    """A client for dry runs of hosted models: a label and a token estimate, nothing else.

    It needs no key, no SDK and no network; calling it is a bug (it raises).
    """

    is_local = False
    context_window: int | None = None

    def __init__(self, label: str) -> None:
        self.label = label

    def count_tokens(self, text: str) -> int:
        """Characters / 4, the same estimate hosted clients use."""
        return (len(text) + 3) // 4

    def create(self, *args: Any, **kwargs: Any) -> Completion[Any]:
        raise AssertionError("a dry run must not call a model")

    async def acreate(self, *args: Any, **kwargs: Any) -> Completion[Any]:
        raise AssertionError("a dry run must not call a model")


def planning_client(label: str) -> LLMClient:
    """The client a dry run uses for ``label``.

    Local models (``local/...``) are opened as usual (their tokenizer is in-process; the model file
    must exist). Any other provider gets a :class:`PlanningClient`: a dry run needs no API key.

    Raises:
        ProviderError: Malformed label or unknown provider.
    """
    from panelsynth.llm.registry import PROVIDERS, make_client, parse_label

    provider, _ = parse_label(label)
    if provider not in PROVIDERS:
        raise ProviderError(
            f"unknown provider '{provider}' in model label {label!r}; known providers: "
            f"{', '.join(sorted(PROVIDERS))}"
        )
    if provider == "local":
        return make_client(label)
    return PlanningClient(label)  # type: ignore[return-value]


class _Projector:
    """Answers would-be calls with placeholders of the response model and records them."""

    def __init__(self, client: LLMClient) -> None:
        self.inner = client
        self.label = client.label
        self.is_local = client.is_local
        self.context_window = getattr(client, "context_window", None)
        self.requests: list[tuple[list[Message], type[BaseModel], dict[str, Any]]] = []

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def create(
        self, messages: list[Message], response_model: type[BaseModel], **kwargs: Any
    ) -> Completion[Any]:
        self.requests.append((messages, response_model, kwargs))
        value = response_model.model_validate(placeholder(response_model.model_json_schema()))
        return Completion(value=value, usage=Usage(attempts=0))


class _ReadOnlyCache(StepCache):
    def put(self, stage: str, key: str, value: Any) -> None:
        return


# ----------------------------------------------------------------------------------------------
# placeholders and counting
def placeholder(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """An instance of a JSON schema whose strings have a typical length (for output estimates)."""
    defs = {**(defs or {}), **schema.get("$defs", {})}
    if "$ref" in schema:
        return placeholder(defs[str(schema["$ref"]).split("/")[-1]], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"] or schema["anyOf"]
        return placeholder(options[0], defs)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {k: placeholder(v, defs) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        n = max(1, int(schema.get("minItems", 1)))
        return [placeholder(schema.get("items", {}), defs) for _ in range(n)]
    if kind == "integer":
        lo, hi = schema.get("minimum", 0), schema.get("maximum", 100)
        return int((lo + hi) // 2)
    if kind == "number":
        return float(schema.get("minimum", 0.0))
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    size = min(int(schema.get("maxLength", 2 * TYPICAL_TEXT)) // 2, 2 * TYPICAL_TEXT)
    text = ""
    i = 0
    while len(text) < size:
        text += _WORDS[i % len(_WORDS)] + " "
        i += 1
    return text[:size].strip() or "x"


def count_messages(client: Any, messages: list[Message]) -> int:
    """Input tokens of a chat call: chat template included when the client can count it."""
    counter = getattr(client, "count_chat_tokens", None)
    if counter is not None:
        return int(counter(messages))
    return int(client.count_tokens("".join(m["content"] for m in messages)))


def _output_text(client: Any, value: Any) -> str:
    # the local template decoder writes compact JSON; hosted models usually ", " and ": "
    if client.is_local:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(value, ensure_ascii=False)


def _rows_output(client: Any, examples: pd.DataFrame, columns: list[str], n_rows: int) -> int:
    """Output tokens of a batch of ``n_rows`` rows like the examples."""
    recs = examples[columns].to_dict("records") if len(examples) else [{c: 1 for c in columns}]
    rows = []
    for i in range(n_rows):
        r = recs[i % len(recs)]
        rows.append({k: _json_cell(v) for k, v in r.items()})
    return int(client.count_tokens(_output_text(client, {"rows": rows})))


def _json_cell(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _finished_batches(ckpt: Checkpoint, n_batches: int) -> int:
    if not ckpt.exists():
        return 0
    _, records = ckpt.load()
    return len(
        {int(r["batch"]) for r in records if not r.get("failed") and int(r["batch"]) < n_batches}
    )


# ----------------------------------------------------------------------------------------------
# the plan
def plan_wave(
    workspace: str | Path,
    wave: str,
    client: LLMClient,
    model_dir: str,
    options: RunOptions | None = None,
    *,
    config: PanelsynthConfig | None = None,
) -> WavePlan:
    """Project the calls, tokens and cost of ``run_wave`` for one wave, calling no model.

    Raises:
        PanelsynthError: The same user errors a real run would report first (missing files,
            bad metadata, unknown wave).
    """
    opts = options or RunOptions()
    ws = Workspace(workspace)
    if not ws.root.is_dir():
        raise WorkspaceError(f"workspace not found: {ws.root} — create it with `panelsynth init`")
    config = config or load_config(ws.config_path)
    mode, n_examples, settings = resolve_settings(config, opts, client)
    config = with_run_holdout(config, opts, settings.seed)
    g = config.generation
    examples_source = getattr(opts, "examples", None) or getattr(g, "examples", "real")
    wd = load_wave_for_run(ws, wave, config, mode)
    cache = _ReadOnlyCache(ws.cache_dir(), enabled=opts.use_cache)
    proj = _Projector(client)
    notes: list[str] = []

    s1 = describe_wave(
        proj,
        wd,
        n_examples=n_examples,
        seed=settings.seed,
        cache=cache,  # type: ignore[arg-type]
        examples_source=examples_source,
    )
    step1_req = list(proj.requests)
    s2 = format_metadata(proj, wd, cache=cache, preferred_target=config.study.outcome)  # type: ignore[arg-type]
    step2_req = proj.requests[len(step1_req) :]

    def stage(name: str, reqs: list[Any]) -> StagePlan:
        if not reqs:
            return StagePlan(name, 0, True, 0, 0, "exact")
        msgs, model, _ = reqs[0]
        out = placeholder(model.model_json_schema())
        return StagePlan(
            name,
            1,
            False,
            count_messages(client, msgs),
            int(client.count_tokens(_output_text(client, out))),
            "estimate",
        )

    st1, st2 = stage("step1", step1_req), stage("step2", step2_req)

    specs = wave_row_specs(wd)
    calib = calibration_setup(ws, config, opts, wd, settings, client)  # None unless --calibrate
    row_model, _ = row_model_for_wave(  # the same checks as a run
        calib.row_specs() if calib else specs, ws.user_models_dir(), wd.wave
    )
    columns = [s.name for s in specs]
    prompt, _ = step3_prompt(client, wd, s1, s2, settings, calib, row_model)
    notes += prompt.notes
    gen = calib.pool_settings if calib else settings
    if calib:
        notes.append(
            f"--calibrate: a pool of {gen.wanted} rows ({gen.n_batches} calls) for "
            f"{settings.wanted} kept rows"
        )
    done = 0
    if opts.resume:
        done = _finished_batches(Checkpoint(ws.checkpoint(model_dir, wd.wave)), gen.n_batches)
        if done:
            notes.append(f"--resume: {done} of {gen.n_batches} calls are already done")
    batches = [b for b in range(done, gen.n_batches)]
    step3_in = sum(count_messages(client, prompt.for_batch(b, gen.n_outputs)) for b in batches)
    per_call_out = _rows_output(client, s1.examples, columns, gen.n_outputs)
    exact = st1.cached and st2.cached
    st3 = StagePlan(
        "step3",
        len(batches),
        False,
        step3_in,
        per_call_out * len(batches),
        "exact" if exact else "estimate",
    )
    if not exact:
        notes.append(
            "steps 1-2 are not cached: the step-3 prompt uses placeholder descriptions and "
            "metadata of typical length"
        )
    notes.append(
        f"invalid or missing rows are topped up by extra calls (at most {gen.max_calls} "
        f"step-3 calls in all)"
    )
    stages = [st1, st2, st3]
    cost, basis = _cost(config, client, stages)
    return WavePlan(
        wave=wd.wave,
        model=client.label,
        model_dir=model_dir,
        mode=mode,
        stages=stages,
        max_calls=gen.max_calls,
        cost_usd=cost,
        cost_basis=basis,
        notes=notes,
    )


def _cost(
    config: PanelsynthConfig, client: LLMClient, stages: list[StagePlan]
) -> tuple[float | None, str]:
    if client.is_local:
        for s in stages:
            s.cost_usd = 0.0
        return 0.0, "local model"
    price = config.prices.get(client.label)
    if price is None:
        return None, f"no price for {client.label} in [prices] of panelsynth.toml"
    for s in stages:
        s.cost_usd = (
            s.input_tokens * price.input_per_mtok + s.output_tokens * price.output_per_mtok
        ) / 1e6
    return sum(s.cost_usd or 0.0 for s in stages), "config prices"


def format_plans(plans: list[WavePlan]) -> str:
    """A readable table of one or more wave plans (what ``--dry-run`` prints)."""
    lines = []
    for p in plans:
        lines.append(f"wave {p.wave} ({p.mode} mode) with {p.model} -> {p.model_dir}:")
        lines.append(f"  {'stage':<7}{'calls':>7}{'input tokens':>15}{'output tokens':>15}  cost")
        for s in p.stages:
            cost = "-" if s.cost_usd is None else f"${s.cost_usd:.4f}"
            how = "cached" if s.cached and not s.calls else s.counted
            lines.append(
                f"  {s.stage:<7}{s.calls:>7}{s.input_tokens:>15,}{s.output_tokens:>15,}  "
                f"{cost} ({how})"
            )
        total = "unknown" if p.cost_usd is None else f"${p.cost_usd:.4f}"
        lines.append(
            f"  {'total':<7}{p.calls:>7}{p.input_tokens:>15,}{p.output_tokens:>15,}  {total} "
            f"({p.cost_basis})"
        )
        lines += [f"  note: {n}" for n in p.notes]
    if len(plans) > 1:
        known = [p.cost_usd for p in plans]
        total = "unknown" if any(c is None for c in known) else f"${sum(known):.4f}"  # type: ignore[misc]
        lines.append(
            f"all waves: {sum(p.calls for p in plans)} calls, "
            f"{sum(p.input_tokens for p in plans):,} input + "
            f"{sum(p.output_tokens for p in plans):,} output tokens, {total}"
        )
    return "\n".join(lines)
