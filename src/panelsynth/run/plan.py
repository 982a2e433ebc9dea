"""Resolve once: the settings of one ``panelsynth run`` as a typed :class:`RunPlan`.

``run``, ``run --dry-run``, the seed script, the demo and :mod:`panelsynth.api` all pass what the
user said (:class:`RunOptions`, ``None`` = take the config's value) through
:func:`resolve_plan`, with the workspace's config and the client; the defaults that depend on
the run (mode, client) come from :mod:`panelsynth.config`, where the fields documenting them
live. Nothing after this module looks at a flag, the config's generation section or a default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from panelsynth.config import (
    DEFAULT_CONCURRENCY,
    DEFAULT_N_EXAMPLES,
    DEFAULT_N_OUTPUTS,
    DEFAULT_WAVE_ROWS,
    PanelsynthConfig,
)
from panelsynth.errors import ConfigError
from panelsynth.generate import GenerationSettings
from panelsynth.holdout import check_share
from panelsynth.workspace import Mode

StructuredOutput = Literal["auto", "json_schema", "json", "tools", "md_json"]


class RunOptions(BaseModel):
    """What the user set for ``panelsynth run`` (flags or library call); ``None`` means: take the
    config's value. Unknown fields and choices outside the declared ones are refused (one line,
    in the flag's words)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["dense", "full"] | None = None
    n_examples: int | None = None
    n_outputs: int | None = None
    n_batches: int | None = None
    seed: int | None = None
    concurrency: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    resume: bool = False
    restart: bool = False
    use_cache: bool = True
    examples: Literal["real", "synthetic"] | None = None
    drop_copies: bool | None = None
    max_cost_usd: float | None = None
    calibrate: bool | None = None
    oversample: float | None = None
    anchors: list[str] | None = None
    #: Resume a checkpoint whose header is missing or unreadable (it cannot be checked).
    accept_headerless_checkpoint: bool = False
    #: Import the workspace's ``pydantic_models/*.py`` (code) — only when the user says so.
    trust_workspace_models: bool = False
    #: Output formats besides the CSV (always written): ``sav``, ``dta``, ``parquet``.
    formats: list[str] | None = None
    holdout: float | None = None
    #: How an OpenAI-compatible server is asked for JSON (:mod:`panelsynth.llm.modes`).
    structured_output: StructuredOutput | None = None
    #: Step 3 through the provider's batch API (half price, within 24 h; ``docs/batch.md``).
    batch: bool = False
    #: With ``batch``: invalid or missing rows topped up by a follow-up batch, or online.
    top_up: Literal["batch", "online"] | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise ConfigError(_one_line(err)) from None


def _one_line(err: ValidationError) -> str:
    """The first problem, in the words of its command-line flag."""
    e = err.errors()[0]
    name = str(e["loc"][0]) if e["loc"] else "options"
    flag = "--" + name.replace("_", "-")
    if e["type"] == "extra_forbidden":
        return f"unknown run option {name!r} — check its spelling"
    if e["type"] == "literal_error":
        choices = _choices(name)
        joined = " or ".join(choices) if len(choices) <= 2 else f"one of {', '.join(choices)}"
        return f"{flag} must be {joined}, not {e['input']!r}"
    return f"{flag}: {e['msg']} (got {e['input']!r})"


def _choices(name: str) -> list[str]:
    ann = RunOptions.model_fields[name].annotation
    for arg in get_args(ann):
        values = get_args(arg)
        if values and all(isinstance(v, str) for v in values):
            return list(values)
    return []


@dataclass(frozen=True)
class CalibrationPlan:
    """The calibrated mode's settings (``RunPlan.calibration``; ``None`` when off)."""

    oversample: float
    anchors: list[str] | None
    #: The pool's temperature when the user set one, else ``None`` (``POOL_TEMPERATURE``).
    temperature: float | None


@dataclass(frozen=True)
class RunPlan:
    """Everything a wave run needs, resolved once from config + options + client."""

    config: PanelsynthConfig  # with --holdout and the run's seed applied
    mode: Mode
    n_examples: int
    examples: str
    settings: GenerationSettings
    drop_copies: bool
    max_cost_usd: float | None
    calibration: CalibrationPlan | None
    resume: bool
    restart: bool
    use_cache: bool
    accept_headerless_checkpoint: bool
    trust_workspace_models: bool
    formats: list[str]
    structured_output: str | None
    #: Step 3 through the provider's batch API, and how its top-up rounds go.
    batch: bool = False
    top_up: str = "batch"

    @property
    def pool_batches(self) -> int:
        """Step-3 calls of one wave (the calibrated pool is ``oversample`` x the rows)."""
        if self.calibration is None:
            return self.settings.n_batches
        return math.ceil(self.settings.n_batches * self.calibration.oversample)

    def total_calls(self, n_waves: int) -> int:
        """About how many step-3 calls ``n_waves`` waves make (what the confirmation says)."""
        calls = self.settings.n_batches * n_waves
        if self.calibration is not None:
            calls = math.ceil(calls * self.calibration.oversample)
        return calls

    def with_settings(self, settings: GenerationSettings) -> RunPlan:
        return replace(self, settings=settings)


def resolve_plan(config: PanelsynthConfig, options: RunOptions | None, client: Any) -> RunPlan:
    """The one place where flags, the config and the defaults meet.

    ``client`` gives the facts the defaults depend on: whether it is an in-process model
    (``is_local``) and how it asks a server for JSON (``structured_output``).

    Raises:
        ConfigError: an output format or the holdout share is invalid.
    """
    from panelsynth.export import parse_formats

    opts = options or RunOptions()
    if opts.top_up is not None and not opts.batch:
        raise ConfigError("--top-up applies to --batch runs — add --batch or drop --top-up")
    g = config.generation
    kind = "local" if client.is_local else "hosted"
    mode: Mode = opts.mode or g.mode
    n_outputs = opts.n_outputs or g.n_outputs or DEFAULT_N_OUTPUTS[kind]
    settings = GenerationSettings(
        n_outputs=n_outputs,
        n_batches=opts.n_batches or g.n_batches or math.ceil(DEFAULT_WAVE_ROWS / n_outputs),
        seed=g.seed if opts.seed is None else opts.seed,
        temperature=g.temperature if opts.temperature is None else opts.temperature,
        max_tokens=opts.max_tokens or g.max_tokens,
        concurrency=opts.concurrency or g.concurrency or DEFAULT_CONCURRENCY[kind],
        max_attempts_factor=g.max_attempts_factor,
        requests_per_minute=opts.requests_per_minute or g.requests_per_minute,
        tokens_per_minute=opts.tokens_per_minute or g.tokens_per_minute,
    )
    wanted = g.calibrate if opts.calibrate is None else opts.calibrate
    calibration = None
    if wanted:
        user_temperature = opts.temperature is not None or "temperature" in g.model_fields_set
        calibration = CalibrationPlan(
            oversample=opts.oversample or g.oversample,
            anchors=opts.anchors if opts.anchors is not None else g.anchors,
            temperature=settings.temperature if user_temperature else None,
        )
    structured = getattr(client, "structured_output", None)
    return RunPlan(
        config=with_run_holdout(config, opts.holdout, settings.seed),
        mode=mode,
        n_examples=opts.n_examples or g.n_examples or DEFAULT_N_EXAMPLES[mode],
        examples=opts.examples or g.examples,
        settings=settings,
        drop_copies=g.drop_copies if opts.drop_copies is None else opts.drop_copies,
        max_cost_usd=g.max_cost_usd if opts.max_cost_usd is None else opts.max_cost_usd,
        calibration=calibration,
        resume=opts.resume,
        restart=opts.restart,
        use_cache=opts.use_cache,
        accept_headerless_checkpoint=opts.accept_headerless_checkpoint,
        trust_workspace_models=opts.trust_workspace_models,
        formats=parse_formats(opts.formats),
        structured_output=structured if isinstance(structured, str) else opts.structured_output,
        batch=opts.batch,
        top_up=opts.top_up or "batch",
    )


def with_run_holdout(
    config: PanelsynthConfig, holdout: RunOptions | float | None, seed: int
) -> PanelsynthConfig:
    """The config with ``--holdout`` (a share, or the options holding it) applied and the split
    seeded by the run's seed."""
    if isinstance(holdout, RunOptions):
        holdout = holdout.holdout
    g = config.generation
    share = check_share(g.holdout if holdout is None else holdout)
    if share == g.holdout and (not share or seed == g.seed):
        return config
    gen = g.model_copy(update={"holdout": share, "seed": seed})
    return config.model_copy(update={"generation": gen})
