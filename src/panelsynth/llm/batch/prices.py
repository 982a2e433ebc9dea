"""Batch prices: the online price table times each provider's batch and cache multipliers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from panelsynth.llm.batch.core import BatchResult

if TYPE_CHECKING:  # the price table is a layer above llm/
    from panelsynth.prices import ModelPrice

#: Batch price as a share of the online price. OpenAI: "50% cost discount compared to
#: synchronous APIs" (platform.openai.com/docs/guides/batch); Anthropic: "Batch API ... 50% of
#: standard API prices" (docs.anthropic.com/en/docs/build-with-claude/batch-processing).
BATCH_MULTIPLIER: dict[str, float] = {"openai": 0.5, "anthropic": 0.5}
#: Price of a cached input token as a share of the input price. Anthropic cache reads: 0.1,
#: cache writes (5-minute): 1.25 (docs.anthropic.com/en/docs/build-with-claude/prompt-caching).
#: OpenAI cached input: 0.5 for the gpt-4o family (0.25 gpt-4.1, 0.1 gpt-5): pass your model's.
CACHED_INPUT_MULTIPLIER: dict[str, float] = {"openai": 0.5, "anthropic": 0.1}
CACHE_WRITE_MULTIPLIER: dict[str, float] = {"openai": 1.0, "anthropic": 1.25}


@dataclass(frozen=True)
class BatchPricing:
    """Prices of batch requests, from a model's online prices.

    Attributes:
        input_per_mtok: Online USD per million input tokens (``[prices]`` of panelsynth.toml).
        output_per_mtok: Online USD per million output tokens.
        batch_multiplier: Batch price as a share of online (0.5 for OpenAI and Anthropic).
        cached_input_multiplier: Cached (cache-read) input price as a share of input.
        cache_write_multiplier: Cache-write input price as a share of input.
    """

    input_per_mtok: float
    output_per_mtok: float
    batch_multiplier: float = 0.5
    cached_input_multiplier: float = 1.0
    cache_write_multiplier: float = 1.0

    @classmethod
    def for_provider(
        cls, provider: str, input_per_mtok: float, output_per_mtok: float
    ) -> BatchPricing:
        """The provider's documented batch and cache multipliers around the given prices."""
        return cls(
            input_per_mtok,
            output_per_mtok,
            BATCH_MULTIPLIER.get(provider, 1.0),
            CACHED_INPUT_MULTIPLIER.get(provider, 1.0),
            CACHE_WRITE_MULTIPLIER.get(provider, 1.0),
        )

    @classmethod
    def from_price(cls, price: ModelPrice) -> BatchPricing:
        """Batch pricing from the run's price table entry (:func:`panelsynth.prices.price_for`):
        its batch, cached-input and cache-write prices where it has them (as shares of its input
        price), the provider's documented multipliers otherwise — one source for every rate."""
        base = cls.for_provider(
            price.label.split("/", 1)[0], price.input_per_mtok, price.output_per_mtok
        )

        def share(rate: float | None, default: float) -> float:
            return (
                default
                if rate is None or not price.input_per_mtok
                else (rate / price.input_per_mtok)
            )

        return cls(
            price.input_per_mtok,
            price.output_per_mtok,
            share(price.batch_input_per_mtok, base.batch_multiplier),
            share(price.cached_input_per_mtok, base.cached_input_multiplier),
            share(price.cache_write_per_mtok, base.cache_write_multiplier),
        )

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float:
        """USD of the given tokens at batch prices (``input_tokens`` includes cached ones)."""
        plain = max(0, input_tokens - cached_input_tokens - cache_write_tokens)
        inputs = self.input_per_mtok * (
            plain
            + cached_input_tokens * self.cached_input_multiplier
            + cache_write_tokens * self.cache_write_multiplier
        )
        return self.batch_multiplier * (inputs + self.output_per_mtok * output_tokens) / 1e6

    def cost_of(self, results: Iterable[BatchResult]) -> float:
        """USD of a batch's results (failed requests that were billed included)."""
        return sum(
            self.cost(
                r.usage.input_tokens,
                r.usage.output_tokens,
                r.usage.cached_input_tokens,
                r.cache_write_tokens,
            )
            for r in results
        )


@dataclass(frozen=True)
class Projection:
    """Projected cost of ``n_requests`` requests (USD) online and as a batch.

    Attributes:
        online_usd: All requests online, no cache discount.
        batch_usd: As a batch, no cache discount (half of online for both providers).
        batch_cached_usd: As a batch, the shared prefix read from the provider's cache by
            every request after the first (Anthropic writes it once at the write price).
            An upper bound of the saving: caching in a batch is best-effort (requests run in
            any order and place), so real bills fall between this and ``batch_usd``.
    """

    online_usd: float
    batch_usd: float
    batch_cached_usd: float


def project(
    pricing: BatchPricing,
    n_requests: int,
    input_tokens: int,
    output_tokens: int,
    shared_tokens: int = 0,
    *,
    min_cached_tokens: int = 0,
) -> Projection:
    """Project a batch's cost (``--dry-run --batch``) from per-request token estimates.

    Args:
        pricing: Prices and multipliers (:meth:`BatchPricing.for_provider`).
        n_requests: Requests in the batch.
        input_tokens: Prompt tokens of one request (the shared prefix included).
        output_tokens: Output tokens of one request (its ``max_tokens`` for a ceiling).
        shared_tokens: Tokens of the prefix every request shares (cacheable).
        min_cached_tokens: Shortest prefix the provider caches (OpenAI 1024; Anthropic 1024
            or 2048 by model): a shorter one gets no discount.
    """
    n = max(0, n_requests)
    return _projection(
        pricing, n, n * input_tokens, n * output_tokens, shared_tokens, min_cached_tokens
    )


def _projection(
    pricing: BatchPricing, n: int, input_total: int, output_total: int, shared: int, minimum: int
) -> Projection:
    online = BatchPricing(pricing.input_per_mtok, pricing.output_per_mtok, 1.0)
    batch = BatchPricing(pricing.input_per_mtok, pricing.output_per_mtok, pricing.batch_multiplier)
    shared = max(0, min(shared, input_total // n if n else 0))
    if shared < minimum:
        shared = 0
    # the first request writes the prefix to the cache, the others read it
    cached = pricing.cost(input_total, output_total, max(0, n - 1) * shared, shared if n else 0)
    return Projection(
        online.cost(input_total, output_total), batch.cost(input_total, output_total), cached
    )


def project_batch(
    price: ModelPrice,
    calls: int,
    input_tokens: int,
    output_tokens: int,
    prefix_tokens: int = 0,
    *,
    min_cached_tokens: int | None = None,
) -> Projection:
    """What ``--dry-run --batch`` shows for a stage: its calls online, through the provider's
    batch API, and through it with prompt caching, priced from the run's price table.

    Args:
        price: The model's prices (:func:`panelsynth.prices.price_for`): batch, cached-input
            and cache-write rates where the table has them, the documented multipliers otherwise.
        calls: Calls of the stage (the dry run's ``StagePlan.calls``).
        input_tokens: Input tokens of all those calls (``StagePlan.input_tokens``).
        output_tokens: Output tokens of all those calls (``StagePlan.output_tokens``).
        prefix_tokens: Tokens of the prefix every call shares (step 3's static prompt).
        min_cached_tokens: Shortest prefix the provider caches (default:
            :func:`panelsynth.prices.prefix_cache_min_tokens` of the model; none: no caching).
    """
    if min_cached_tokens is None:
        from panelsynth.prices import prefix_cache_min_tokens

        found = prefix_cache_min_tokens(price.label)
        min_cached_tokens = found if found is not None else max(1, input_tokens + 1)
    n = max(0, calls)
    return _projection(
        BatchPricing.from_price(price),
        n,
        input_tokens,
        output_tokens,
        prefix_tokens,
        min_cached_tokens,
    )
