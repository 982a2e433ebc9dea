"""How step 3 runs for one wave: rows per call, calls, seed, limits."""

from __future__ import annotations

import math
from dataclasses import dataclass

from panelsynth.config import (
    BREAKER_THRESHOLD,
    DEFAULT_CONCURRENCY,
    DEFAULT_N_OUTPUTS,
    DEFAULT_WAVE_ROWS,
    GenerationConfig,
    default_of,
)

_G = GenerationConfig


@dataclass
class GenerationSettings:
    """How step 3 runs for one wave (built by :func:`panelsynth.run.plan.resolve_plan`; the
    defaults here are the config's, for callers that build settings by hand)."""

    n_outputs: int = DEFAULT_N_OUTPUTS["local"]
    n_batches: int = DEFAULT_WAVE_ROWS // DEFAULT_N_OUTPUTS["local"]
    seed: int = default_of(_G, "seed")  # type: ignore[assignment]
    temperature: float = default_of(_G, "temperature")  # type: ignore[assignment]
    max_tokens: int | None = None
    concurrency: int = DEFAULT_CONCURRENCY["local"]
    max_attempts_factor: float = default_of(_G, "max_attempts_factor")  # type: ignore[assignment]
    breaker_threshold: int = BREAKER_THRESHOLD
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    adaptive_concurrency: bool = True

    @property
    def wanted(self) -> int:
        return self.n_outputs * self.n_batches

    @property
    def max_calls(self) -> int:
        return max(self.n_batches + 2, math.ceil(self.n_batches * self.max_attempts_factor))
