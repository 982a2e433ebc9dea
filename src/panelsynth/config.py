"""The study configuration, ``panelsynth.toml`` (SPEC §6).

Pure Pydantic models: this module imports nothing else of the package except errors. Unknown keys
are errors, every field has a description and bounds, and :func:`load_config` reports every
validation error as one ``path: message`` line.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from panelsynth.errors import ConfigError

DEFAULT_MISSING_CODES: list[int | float | str] = [
    -99,
    -98,
    -97,
    -9,
    -8,
    -1,
    "Refused",
    "Don't know",
    "Don't Know",
    "DK",
    "NA",
    "",
]


#: A wave id that can name a file (same rule as ``workspace.check_wave_id``).
WaveId = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9A-Za-z][0-9A-Za-z_-]*$")
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StudyConfig(_Section):
    name: str = Field("panel study", min_length=1, max_length=200, description="Name of the study.")
    waves: list[WaveId] = Field(
        default_factory=list,
        max_length=500,
        description="Wave ids in study order (strings: '1', '8a'). "
        "Empty: every Original data/wave*.csv.",
    )
    id_column: str = Field(
        "respondent_id",
        min_length=1,
        description="Column that identifies a respondent across waves.",
    )
    cluster_column: str = Field("cluster", min_length=1, description="Cluster label column (1/2).")
    prev_cluster_column: str = Field(
        "prev_cluster", min_length=1, description="Previous wave's cluster label column."
    )
    outcome: str | None = Field(
        None, description="Outcome variable (e.g. already_vaccinated) included where a wave has it."
    )
    missing_codes: list[int | float | str] = Field(
        default_factory=lambda: list(DEFAULT_MISSING_CODES),
        max_length=200,
        description="Survey missing codes replaced by NA when data are read.",
    )

    @field_validator("waves", mode="before")
    @classmethod
    def _waves_as_strings(cls, v: object) -> object:
        return [str(w) for w in v] if isinstance(v, list) else v

    @field_validator("missing_codes", mode="before")
    @classmethod
    def _no_booleans(cls, v: object) -> object:
        # TOML's true/false would otherwise be taken as the codes 1 and 0
        if isinstance(v, list) and any(isinstance(x, bool) for x in v):
            raise ValueError(
                'true/false is not a missing code — list numbers or strings (e.g. -99, "Refused")'
            )
        return v


class PrepareConfig(_Section):
    raw_dir: str = Field("Raw data", min_length=1, description="Folder of raw wave files.")
    raw_pattern: str = Field(
        "wave{W}.csv",
        pattern=r"\{W\}",
        description="File name of a raw wave; {W} is the wave id. .csv, .sav and .dta are read.",
    )
    include: list[str] = Field(default_factory=list, description="Variables always considered.")
    exclude: list[str] = Field(default_factory=list, description="Variables never used.")
    demographics: list[str] = Field(
        default_factory=lambda: ["age", "sex"],
        description="Demographic variables added to both modes (not clustered on).",
    )
    density_threshold: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Full mode keeps variables answered by at least this share.",
    )
    n_dense_items: int = Field(3, ge=1, le=20, description="Items per wave in the dense mode.")


class ClusteringConfig(_Section):
    k: int = Field(2, ge=1, le=10, description="Number of clusters (the method assumes 2).")
    method: Literal["lca", "kmodes", "kmeans"] = Field(
        "lca", description="Latent class analysis (handles missing answers) or a fallback."
    )
    orientation_item: str | None = Field(
        None, description="Item whose more positive answers define cluster 1 in every wave."
    )
    orientation_higher_is_positive: bool = Field(
        True, description="Whether larger codes of the orientation item mean more positive."
    )
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Random seed of the clustering.")
    n_init: int = Field(4, ge=1, le=100, description="Random restarts of the latent class model.")
    missing: Literal["auto", "fiml", "category"] = Field(
        "auto",
        description="Missing answers in the latent class model: auto (own category for items "
        "missing <= 25%, FIML otherwise), fiml, or category.",
    )
    engine: Literal["numpy", "stepmix"] = Field(
        "numpy", description="LCA estimator: numpy (fast) or stepmix (reference implementation)."
    )
    max_fit_rows: int | None = Field(
        20000, ge=100, le=10_000_000, description="Fit on a seeded subsample of this many rows."
    )


class GenerationConfig(_Section):
    mode: Literal["dense", "full"] = Field(
        "dense", description="dense: few items, no NA; full: all items, NA allowed."
    )
    n_examples: int | None = Field(
        None, ge=1, le=500, description="Few-shot rows per cluster (default 4 dense, 30 full)."
    )
    n_outputs: int | None = Field(
        None, ge=1, le=200, description="Rows asked for per LLM call (default 10 local, 20 hosted)."
    )
    n_batches: int | None = Field(
        None, ge=1, le=100_000, description="LLM calls per wave (default: 700 rows / n_outputs)."
    )
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Random state of example sampling.")
    max_attempts_factor: float = Field(
        3.0, ge=1.0, le=20.0, description="Call budget as a multiple of n_batches before giving up."
    )
    concurrency: int | None = Field(
        None, ge=1, le=256, description="Concurrent calls (default: 1 local, 8 hosted)."
    )
    requests_per_minute: float | None = Field(None, gt=0, le=1e6, description="Optional RPM limit.")
    tokens_per_minute: float | None = Field(None, gt=0, le=1e9, description="Optional TPM limit.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature.")
    max_tokens: int | None = Field(
        None,
        ge=16,
        le=200_000,
        description="Output token limit per call (default: sized to the rows).",
    )
    max_retries: int = Field(
        5, ge=0, le=50, description="Retries of transient API failures per call (with back-off)."
    )
    timeout: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="Seconds one request may take in total (to the last byte of the reply) "
        "before it is abandoned and retried.",
    )
    max_cost_usd: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="Spending limit of one wave's run in USD, from [prices]: no call starts that "
        "could exceed it (a limit below one call fails before any call).",
    )
    examples: Literal["real", "synthetic"] = Field(
        "real",
        description="Few-shot examples: real respondents, or rows sampled from each cluster's "
        "per-variable statistics (no real row leaves the machine).",
    )
    drop_copies: bool = Field(
        False,
        description="Drop synthetic rows identical to a real row or a few-shot example; the "
        "loop tops up to the exact row count.",
    )
    calibrate: bool = Field(
        False,
        description="Calibrated mode: the host draws each row's cluster and anchor variables from "
        "the real data, the LLM completes these profiles, and whole rows are selected from an "
        "oversampled pool to match the real per-cluster marginals. The pool is sampled at "
        "temperature 1.0 unless `temperature` is set here or on the command line.",
    )
    oversample: float = Field(
        2.0,
        ge=1.0,
        le=20.0,
        description="Calibrated mode: valid rows generated per row kept "
        "(pool = oversample x rows).",
    )
    anchors: list[str] | None = Field(
        None,
        max_length=20,
        description="Calibrated mode: variables fixed by the host in every profile (default: the "
        "[prepare] demographics present in the wave, e.g. age (as a band) and sex).",
    )
    holdout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Share of respondents held out of steps 1-3 for the evaluation (0: none). "
        "Split by study.id_column with a seeded hash (the generation seed), so a person held "
        "out of one wave is held out of every wave.",
    )
    panel: bool = Field(
        False,
        description="Synthetic panel (`panelsynth run --panel`): the same synthetic respondents "
        "through every requested wave, each later wave conditioned on their previous answers.",
    )
    respondents: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="Synthetic panel: respondents drawn (default: the first requested wave's "
        "real row count).",
    )


# ----------------------------------------------------------------------------------------------
# Defaults that depend on the run (the mode, the client): the one place they live. The fields
# above document them; :func:`panelsynth.run.plan.resolve_plan` applies them.

#: Few-shot examples per cluster when neither ``--n-examples`` nor the config sets them.
DEFAULT_N_EXAMPLES: dict[str, int] = {"dense": 4, "full": 30}
#: Rows per step-3 call when neither the flag nor the config sets them. The original asked for 10;
#: a hosted model writes 20 rows (~2,000 output tokens) as easily, and every call re-sends the
#: codebook, the cluster descriptions and the examples, so 20 halves the input tokens per row. The
#: in-process model keeps 10: its context is small and its output slow.
DEFAULT_N_OUTPUTS: dict[str, int] = {"local": 10, "hosted": 20}
#: Concurrent step-3 calls when not set: an in-process model runs one call at a time.
DEFAULT_CONCURRENCY: dict[str, int] = {"local": 1, "hosted": 8}
#: Rows of a wave when the number of calls is not set: the original's 70 calls x 10 rows.
DEFAULT_WAVE_ROWS = 700
#: Sampling temperature of a calibrated pool unless one is set (``--temperature`` or
#: ``generation.temperature``): the selection, not the sampler, sets the distributions, and it can
#: only choose among the answers the model wrote. 1.0 is the highest every provider accepts.
POOL_TEMPERATURE = 1.0
#: Sampling temperature of step 1's descriptions.
STEP1_TEMPERATURE = 0.2
#: Consecutive failed step-3 calls after which the run stops (circuit breaker).
BREAKER_THRESHOLD = 8


def default_of(section: type[BaseModel], name: str) -> object:
    """The documented default of a config field (one source for code that needs it)."""
    return section.model_fields[name].default


class ModelConfig(_Section):
    label: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+/.+$", description="{provider}/{model_name}.")
    dir: str = Field(
        ..., pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]*$", description="Output folder name."
    )
    base_url: str | None = Field(
        None, description="OpenAI-compatible server URL (vLLM, Ollama, ...)."
    )
    api_key_env: str | None = Field(None, description="Environment variable holding the key.")
    structured_output: Literal["auto", "json_schema", "json", "tools", "md_json"] | None = Field(
        None,
        description="How an OpenAI-compatible server is asked for JSON (default auto: "
        "json_schema, falling back to json, then md_json, when the server rejects it).",
    )


class Price(_Section):
    input_per_mtok: float = Field(..., ge=0, le=10_000, description="USD per million input tokens.")
    output_per_mtok: float = Field(
        ..., ge=0, le=10_000, description="USD per million output tokens."
    )
    cached_input_per_mtok: float | None = Field(
        None,
        ge=0,
        le=10_000,
        description="USD per million input tokens read from the provider's prompt cache "
        "(default: the input price, no discount).",
    )
    batch_input_per_mtok: float | None = Field(
        None, ge=0, le=10_000, description="USD per million input tokens via the batch API."
    )
    batch_output_per_mtok: float | None = Field(
        None, ge=0, le=10_000, description="USD per million output tokens via the batch API."
    )
    date: str | None = Field(
        None, max_length=40, description="When these prices were taken (e.g. 2026-11-27)."
    )


class PanelsynthConfig(_Section):
    """Everything in ``panelsynth.toml``. CLI flags override it."""

    study: StudyConfig = Field(default_factory=StudyConfig, description="The panel and its files.")
    prepare: PrepareConfig = Field(default_factory=PrepareConfig, description="Step 0: raw waves.")
    clustering: ClusteringConfig = Field(default_factory=ClusteringConfig, description="Step 1a.")
    generation: GenerationConfig = Field(default_factory=GenerationConfig, description="Step 3.")
    models: list[ModelConfig] = Field(default_factory=list, description="Models and their folders.")
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description="Price per model label, for cost estimates; overrides the default table "
        "(genai-prices).",
    )

    def model_dir_for(self, label: str) -> str | None:
        for m in self.models:
            if m.label == label:
                return m.dir
        return None

    def model_entry(self, label: str) -> ModelConfig | None:
        return next((m for m in self.models if m.label == label), None)


def format_validation_error(err: ValidationError, source: str) -> str:
    """One ``source: path: message`` line per error."""
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key — remove it or check its spelling"
        lines.append(f"{source}: {path}: {msg}")
    return "\n".join(lines)


def parse_config(data: dict, source: str = "panelsynth.toml") -> PanelsynthConfig:
    """Validate a dict into a config, raising :class:`ConfigError` with one line per problem."""
    try:
        return PanelsynthConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_config(path: str | Path | None) -> PanelsynthConfig:
    """Read ``panelsynth.toml``; a missing file gives the defaults.

    Raises:
        ConfigError: the file is not TOML or does not validate (one line per error).
    """
    if path is None:
        return PanelsynthConfig()
    p = Path(path)
    if not p.exists():
        return PanelsynthConfig()
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not the config file — move it away")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p.name}: not valid TOML ({err}) — fix the syntax") from None
    except RecursionError:  # tables or arrays nested thousands of levels deep
        raise ConfigError(
            f"{p.name}: not valid TOML (nested too deeply) — fix the syntax"
        ) from None
    return parse_config(data, p.name)
