"""Dry run of ``panelsynth run``: calls, tokens and cost per stage, without calling a model.

:func:`plan_wave` walks the same path as :func:`panelsynth.run.wave.run_wave` up to the first
model call — it loads and checks the wave, asks steps 1 and 2 for their results through the
workspace cache (read only) and builds the step-3 prompt with the same builders — but answers
every would-be call with a placeholder of the response model. Hence:

* steps 1 and 2 count 0 calls when their results are cached, else 1 call each (step 1 more when
  it is split to fit the context);
* when steps 1 and 2 are cached, the step-3 prompt is the real one and its tokens are counted
  with the client's tokenizer (characters / 4 for hosted models, whose tokenizers are not local;
  an estimate from the text for local models, which a dry run does not load); otherwise the
  descriptions and formatted metadata are placeholders of typical length and the step-3 input
  is an estimate;
* outputs are estimated from the response models (placeholder descriptions) and from the
  few-shot examples (rows);
* every call is checked against the model's context (prompt + output budget): step 1 says how
  it is split, step 2 whether its glosses are shortened, step 3 whether examples are dropped.

Nothing is written to the workspace and no lock is taken. Hosted models are planned with
:func:`planning_client`, which needs neither an API key nor the provider's SDK nor the network.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from panelsynth.cache import StepCache
from panelsynth.checkpoint import Checkpoint
from panelsynth.config import PanelsynthConfig, load_config
from panelsynth.describe import describe_wave
from panelsynth.errors import ProviderError
from panelsynth.llm.base import Completion, LLMClient, Message, Usage
from panelsynth.metadata import format_metadata
from panelsynth.pydantic_models.rows import row_model_for_wave, trusted_models_dir, wave_row_specs
from panelsynth.run.plan import RunOptions, resolve_plan
from panelsynth.run.wave import load_run_wave, step3_prompt, step3_strategy
from panelsynth.values import plain
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
    #: The largest prompt + output budget of one call, and the context it must fit (if known).
    peak_tokens: int = 0
    context_window: int | None = None

    @property
    def fits(self) -> bool | None:
        """Whether every call of the stage fits the model's context (``None``: unknown)."""
        if not self.calls or not self.context_window:
            return None
        return self.peak_tokens <= self.context_window

    #: Step 3's shared-prefix tokens the prompt cache is expected to serve, and to write.
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0


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
    #: The price used (:meth:`panelsynth.prices.ModelPrice.to_dict`), ``None`` when unknown.
    price: dict[str, Any] | None = None
    #: Projected net saving of the prompt cache on step 3 (less Anthropic's writes), in USD.
    cache_saving_usd: float | None = None
    #: How the prompt-cache projection was made.
    cache_note: str = ""
    #: ``--batch``: step 3 ``online_usd``, ``batch_usd``, ``batch_cached_usd`` (``project_batch``)
    #: and the shared ``prefix_tokens`` it assumed; ``None`` otherwise or without a price.
    batch: dict[str, float] | None = None

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


#: The pieces :func:`estimate_local_tokens` counts: words, single digits, runs of white space,
#: runs of punctuation.
_PIECES = re.compile(r"[A-Za-z]+|\d|\s+|[^\sA-Za-z\d]+")
_SPACE_DIGIT = re.compile(r" \d")
#: Margin on the estimate, so that a dry run errs on the side of more tokens.
LOCAL_TOKEN_MARGIN = 1.1
#: Tokens the chat template adds per message (role markers).
LOCAL_TEMPLATE_TOKENS = 5


def estimate_local_tokens(text: str) -> int:
    """Tokens of ``text`` for a llama-style BPE (SmolLM2), estimated without its tokenizer.

    Every digit is a token, and so is a space before a digit (as SmolLM2 writes them); a word of
    up to 6 letters is one token, a longer word one per 5 letters; punctuation one token per 2
    characters; a run of white space other than one space one token; plus
    :data:`LOCAL_TOKEN_MARGIN`. Against SmolLM2's tokenizer on the prompts of a 30-variable full
    wave (statistics, codebook, descriptions, example tables, JSON rows) this is within -3% and
    +21% of the real count.
    """
    n = len(_SPACE_DIGIT.findall(text))
    for piece in _PIECES.findall(text):
        if piece[0].isalpha():
            n += 1 if len(piece) <= 6 else -(-len(piece) // 5)
        elif piece[0].isspace():
            n += piece != " "
        elif piece[0].isdigit():
            n += 1
        else:
            n += -(-len(piece) // 2)
    return math.ceil(n * LOCAL_TOKEN_MARGIN)


class LocalPlanningClient:
    """A dry-run client for ``local/...`` models that loads no model.

    The context is the one a run gives the model (``local.DEFAULT_N_CTX``); tokens are estimated
    from the text (:func:`estimate_local_tokens`), so nothing of llama.cpp is loaded and no
    message of it is printed. The model file must exist (as for a run).
    """

    is_local = True
    supports_seed = True

    def __init__(self, label: str, path: Path, context_window: int) -> None:
        self.label = label
        self.path = path
        self.context_window = context_window

    def count_tokens(self, text: str) -> int:
        return estimate_local_tokens(text)

    def count_chat_tokens(self, messages: list[Message]) -> int:
        return sum(self.count_tokens(m["content"]) + LOCAL_TEMPLATE_TOKENS for m in messages)

    def create(self, *args: Any, **kwargs: Any) -> Completion[Any]:
        raise AssertionError("a dry run must not call a model")

    async def acreate(self, *args: Any, **kwargs: Any) -> Completion[Any]:
        raise AssertionError("a dry run must not call a model")


def planning_client(label: str) -> LLMClient:
    """The client a dry run uses for ``label``.

    Local models (``local/...``) get a :class:`LocalPlanningClient`: the model file must exist,
    but it is not loaded (token counts are estimates). Any other provider gets a
    :class:`PlanningClient`: a dry run needs no API key.

    Raises:
        ProviderError: Malformed label or unknown provider.
    """
    from panelsynth.llm.registry import PROVIDERS, parse_label

    provider, name = parse_label(label)
    if provider not in PROVIDERS:
        raise ProviderError(
            f"unknown provider '{provider}' in model label {label!r}; known providers: "
            f"{', '.join(sorted(PROVIDERS))}"
        )
    if provider == "local":
        from panelsynth.llm.local import DEFAULT_N_CTX, resolve_gguf

        path = resolve_gguf(name)
        return LocalPlanningClient(label, path, DEFAULT_N_CTX)  # type: ignore[return-value]
    return PlanningClient(label)  # type: ignore[return-value]


class Projector:
    """Answers would-be calls with placeholders of the response model and records them."""

    #: Steps that check a model's answer (step 2 against the codebook) say nothing about these.
    projecting = True

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


class ReadOnlyCache(StepCache):
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


def rows_output(client: Any, examples: pd.DataFrame, columns: list[str], n_rows: int) -> int:
    """Output tokens of a batch of ``n_rows`` rows like the examples."""
    recs = examples[columns].to_dict("records") if len(examples) else [{c: 1 for c in columns}]
    rows = []
    for i in range(n_rows):
        r = recs[i % len(recs)]
        rows.append({k: plain(v) for k, v in r.items()})
    return int(client.count_tokens(_output_text(client, {"rows": rows})))


def finished_batches(ckpt: Checkpoint, n_batches: int) -> int:
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
    ws = Workspace(workspace)
    ws.must_exist()
    plan = resolve_plan(config or load_config(ws.config_path), options, client)
    if plan.batch:
        from panelsynth.run.batch import check_batch

        check_batch(client)  # what the run would refuse
    config, mode, settings = plan.config, plan.mode, plan.settings
    wd, every = load_run_wave(ws, wave, config, mode)
    cache = ReadOnlyCache(ws.cache_dir(), enabled=plan.use_cache)
    proj = Projector(client)
    notes: list[str] = list(wd.size_warnings)  # a huge question text is sent in every call

    s1 = describe_wave(
        proj,
        wd,
        n_examples=plan.n_examples,
        seed=settings.seed,
        cache=cache,  # type: ignore[arg-type]
        examples_source=plan.examples,
    )
    step1_req = list(proj.requests)
    s2 = format_metadata(
        proj,  # type: ignore[arg-type]
        wd,
        cache=cache,  # type: ignore[arg-type]
        preferred_target=config.study.outcome,
        seed=settings.seed,  # the run's cache key has it
    )
    step2_req = proj.requests[len(step1_req) :]
    notes += s1.warnings + s2.notes
    window = getattr(client, "context_window", None)

    st1, st2 = stage_plan(client, "step1", step1_req), stage_plan(client, "step2", step2_req)

    specs = wave_row_specs(wd)
    strategy = step3_strategy(plan, wd, every, specs, client)
    models_dir, models_note = trusted_models_dir(
        ws.user_models_dir(), wd.wave, plan.trust_workspace_models
    )
    notes += models_note
    row_model, _ = row_model_for_wave(strategy.row_specs(specs), models_dir, wd.wave)  # checks
    columns = [s.name for s in specs]
    fitted, max_tokens = step3_prompt(client, wd, s1, s2, strategy, specs)
    prompt = strategy.bind(fitted, row_model)
    settings = strategy.settings
    notes += fitted.notes
    gen = strategy.loop_settings
    notes += strategy.plan_notes()
    done = 0
    if plan.resume:
        done = finished_batches(Checkpoint(ws.checkpoint(model_dir, wd.wave)), gen.n_batches)
        if done:
            notes.append(f"--resume: {done} of {gen.n_batches} calls are already done")
    batches = [b for b in range(done, gen.n_batches)]
    per_call_in = [count_messages(client, prompt.for_batch(b, gen.n_outputs)) for b in batches]
    step3_in = sum(per_call_in)
    per_call_out = rows_output(client, s1.examples, columns, gen.n_outputs)
    exact = st1.cached and st2.cached and not isinstance(client, LocalPlanningClient)
    st3 = StagePlan(
        "step3",
        len(batches),
        False,
        step3_in,
        per_call_out * len(batches),
        "exact" if exact else "estimate",
        peak_tokens=max(per_call_in, default=0) + max_tokens,
        context_window=window,
    )
    if isinstance(client, LocalPlanningClient):
        notes.append(
            f"token counts of {client.label} are estimated from the text (about 0-20% high); "
            f"the model was not loaded"
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
    prefix = getattr(prompt, "prefix", None)
    prefix_tokens = count_messages(client, prefix) if prefix else 0
    cost, basis, price, saving, cache_note = project_cost(
        config, client, stages, prefix_tokens, settings.concurrency
    )
    projection = None
    if plan.batch:
        cost, saving, projection = _batch_cost(
            config, client, stages, prefix_tokens, notes, cost, saving
        )
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
        price=price,
        cache_saving_usd=saving,
        cache_note=cache_note,
        batch=projection,
    )


def stage_plan(client: LLMClient, name: str, reqs: list[Any]) -> StagePlan:
    """The projection of a step's would-be calls (``Projector.requests``; none: cached)."""
    window = getattr(client, "context_window", None)
    if not reqs:
        return StagePlan(name, 0, True, 0, 0, "exact", context_window=window)
    n_in = n_out = peak = 0
    for msgs, model, kwargs in reqs:
        out = placeholder(model.model_json_schema())
        tokens = count_messages(client, msgs)
        n_in += tokens
        n_out += int(client.count_tokens(_output_text(client, out)))
        peak = max(peak, tokens + int(kwargs.get("max_tokens") or 0))
    return StagePlan(
        name, len(reqs), False, n_in, n_out, "estimate", peak_tokens=peak, context_window=window
    )


def project_cost(
    config: PanelsynthConfig,
    client: LLMClient,
    stages: list[StagePlan],
    prefix_tokens: int = 0,
    concurrency: int = 1,
) -> tuple[float | None, str, dict[str, Any] | None, float | None, str]:
    """Cost per stage (set on ``stages``), the total, its basis, the price, the projected net
    prompt-cache saving of step 3 (:func:`panelsynth.prices.prefix_cache_plan`) and its note."""
    from panelsynth.prices import prefix_cache_plan, price_for, unknown_price

    if client.is_local:
        for s in stages:
            s.cost_usd = 0.0
        return 0.0, "local model", None, 0.0, "in-process model: the prefix stays evaluated"
    price = price_for(client.label, config)
    step3 = stages[-1]
    cache = prefix_cache_plan(
        client.label, price, step3.calls, step3.input_tokens, prefix_tokens, concurrency
    )
    step3.cached_input_tokens, step3.cache_write_tokens = cache.cached, cache.written
    if price is None:
        return None, unknown_price(client.label), None, None, cache.note
    for s in stages:
        s.cost_usd = price.cost(
            s.input_tokens, s.output_tokens, s.cached_input_tokens, s.cache_write_tokens
        )
    total = sum(s.cost_usd or 0.0 for s in stages)
    return total, price.cited, price.to_dict(), cache.saving, cache.note


def _batch_cost(
    config: PanelsynthConfig,
    client: LLMClient,
    stages: list[StagePlan],
    prefix_tokens: int,
    notes: list[str],
    cost: float | None,
    saving: float | None,
) -> tuple[float | None, float | None, dict[str, float] | None]:
    """``--batch``: step 3 at the provider's batch price (steps 1-2 stay online), with the
    online and the batch + prompt-caching costs in a note; (total, prefix-cache saving,
    projection)."""
    from panelsynth.llm.batch import project_batch
    from panelsynth.prices import price_for

    price = price_for(client.label, config)
    st3 = stages[-1]
    if price is None or cost is None:
        notes.append("--batch: step 3 would go through the provider's batch API (no price known)")
        return cost, saving, None
    proj = project_batch(price, st3.calls, st3.input_tokens, st3.output_tokens, prefix_tokens)
    st3.cost_usd = proj.batch_usd
    notes.append(
        f"--batch: step 3 at batch prices ${proj.batch_usd:.4f} (online ${proj.online_usd:.4f}; "
        f"with prompt caching as low as ${proj.batch_cached_usd:.4f}); steps 1-2 stay online"
    )
    projection = {
        "online_usd": proj.online_usd,
        "batch_usd": proj.batch_usd,
        "batch_cached_usd": proj.batch_cached_usd,
        "prefix_tokens": prefix_tokens,
    }
    return sum(s.cost_usd or 0.0 for s in stages), None, projection


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
        for s in p.stages:
            if s.fits is not None:
                verdict = "fits" if s.fits else "DOES NOT FIT"
                lines.append(
                    f"  {s.stage}: largest call {s.peak_tokens:,} tokens (prompt + reply budget) "
                    f"of a {s.context_window:,}-token context: {verdict}"
                )
        if p.price is not None:
            from panelsynth.prices import ModelPrice

            lines.append(f"  prices: {ModelPrice(**p.price).describe()}")
        if p.cache_saving_usd is not None and p.price is not None:
            net = "saves" if p.cache_saving_usd >= 0 else "costs"
            lines.append(
                f"  prefix cache: {net} about ${abs(p.cache_saving_usd):.4f} on step 3 (included "
                f"above; without it ${(p.cost_usd or 0.0) + p.cache_saving_usd:.4f}): "
                f"{p.cache_note}"
            )
        elif p.cache_note:
            lines.append(f"  prefix cache: {p.cache_note}")
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
