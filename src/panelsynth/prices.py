"""Prices of hosted models: ``[prices]`` of ``panelsynth.toml`` first, then a dated default table.

The default table is the ``genai-prices`` package (maintained by Pydantic, pinned in
``requirements.lock``): list prices per million input, cached-input (cache read), cache-write and
output tokens, and batch prices where a provider has them. Its date is the release date of the
installed version (:data:`GENAI_PRICES_RELEASED`); a newer version is used as installed and says
so. A model that neither ``[prices]`` nor the table knows is "unknown".

Every step-3 call of a wave starts with the same text, so providers with prompt caching bill that
prefix at the cached rate: :func:`projected_prefix_cache` estimates the tokens a run will read from
the cache, and :meth:`ModelPrice.saving` what that saves. Anthropic bills the calls that write the
prefix to its cache at a higher rate (the table's cache-write price, else the documented 1.25x of
input for the 5-minute cache): :func:`projected_prefix_writes` estimates those tokens and
:meth:`ModelPrice.write_surcharge` what they cost on top of the input price.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from panelsynth.config import PanelsynthConfig

log = logging.getLogger("panelsynth")

#: Release dates of genai-prices versions (PyPI upload dates): the date of their price data.
GENAI_PRICES_RELEASED: dict[str, str] = {"0.2.3": "2026-11-10"}

#: ``ModelPrice.source`` of prices from the config.
CONFIG_SOURCE = "[prices] of panelsynth.toml"
#: Label prefix -> genai-prices provider id (labels whose prefix is the id are not listed).
_PROVIDER_IDS: dict[str, str] = {
    "gemini": "google",
    "vertexai": "google",
    "xai": "x-ai",
    "azure_openai": "azure",
    "bedrock": "aws",
    "mistralai": "mistral",
}
#: Prefixes of self-hosted OpenAI-compatible servers: no list price.
_SELF_HOSTED = frozenset({"vllm", "llamacpp", "openai_compatible", "ollama", "local"})

#: Providers that cache a repeated prompt prefix (automatically, or marked by panelsynth for
#: Anthropic), and the smallest prefix they cache, in tokens (provider documentation).
PREFIX_CACHE_MIN_TOKENS: dict[str, int] = {
    "openai": 1024,
    "azure": 1024,
    "anthropic": 1024,
    "google": 2048,
    "deepseek": 64,
    "x-ai": 1024,
}
#: Price of an input token written to the prompt cache as a share of the input price, for a
#: price without its own cache-write rate: Anthropic's 5-minute cache writes cost 1.25x
#: (:data:`CACHE_WRITE_DOCS`); other providers bill no write surcharge. The same figure as
#: ``panelsynth.llm.batch.prices.CACHE_WRITE_MULTIPLIER`` (a layer below; it cannot import this).
CACHE_WRITE_MULTIPLIER: dict[str, float] = {"anthropic": 1.25}
CACHE_WRITE_DOCS = "docs.anthropic.com/en/docs/build-with-claude/prompt-caching"


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens of one model, and where the figures come from.

    Attributes:
        label: The model label (``provider/model``).
        input_per_mtok: Input tokens (not read from a cache).
        output_per_mtok: Output tokens.
        cached_input_per_mtok: Input tokens read from the provider's prompt cache (``None``: the
            provider has no cache discount, cached tokens cost the input price).
        cache_write_per_mtok: Input tokens written to the cache (Anthropic), if priced apart.
        batch_input_per_mtok: Input tokens through the provider's batch API, if it has one.
        batch_output_per_mtok: Output tokens through the batch API.
        source: ``[prices] of panelsynth.toml`` or ``genai-prices <version>``.
        date: Date of the price data (``YYYY-MM-DD``), ``None`` when not known.
        model_id: The source's name of the model.
    """

    label: str
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    batch_input_per_mtok: float | None = None
    batch_output_per_mtok: float | None = None
    source: str = ""
    date: str | None = None
    model_id: str | None = None

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float:
        """USD of a call or a run; ``input_tokens`` include the ``cached_input_tokens`` (cache
        reads) and the ``cache_write_tokens`` (priced at :attr:`cache_write_rate`)."""
        cached = min(max(0, cached_input_tokens), input_tokens)
        written = min(max(0, cache_write_tokens), input_tokens - cached)
        cached_rate = self.cached_input_per_mtok
        if cached_rate is None:
            cached_rate = self.input_per_mtok
        return (
            (input_tokens - cached - written) * self.input_per_mtok
            + cached * cached_rate
            + written * self.cache_write_rate
            + output_tokens * self.output_per_mtok
        ) / 1e6

    @property
    def cache_write_rate(self) -> float:
        """USD per million input tokens written to the prompt cache: the price's own
        ``cache_write_per_mtok``, else the provider's documented multiplier of the input price
        (Anthropic 1.25x; providers without a write surcharge 1x)."""
        if self.cache_write_per_mtok is not None:
            return self.cache_write_per_mtok
        return self.input_per_mtok * _write_multiplier(self.label)

    @property
    def cache_write_basis(self) -> str:
        """Where :attr:`cache_write_rate` comes from (the manifest's ``cost``)."""
        if self.cache_write_per_mtok is not None:
            return f"{self.source} cache-write price"
        multiplier = _write_multiplier(self.label)
        if multiplier == 1.0:
            return "no cache-write surcharge: writes at the input price"
        return (
            f"{_num(multiplier)}x the input price, the provider's documented 5-minute "
            f"cache-write price ({CACHE_WRITE_DOCS}); {self.source} has none"
        )

    def write_surcharge(self, cache_write_tokens: int) -> float:
        """USD that writing ``cache_write_tokens`` to the cache costs above the input price."""
        return max(0, cache_write_tokens) * (self.cache_write_rate - self.input_per_mtok) / 1e6

    def write_note(self, cache_write_tokens: int) -> str:
        """``"; writing it costs $x more (...)"`` for a prompt-cache projection, or ``""`` when
        the writes cost nothing above the input price."""
        surcharge = self.write_surcharge(cache_write_tokens)
        if surcharge <= 0:
            return ""
        return (
            f"; writing it costs ${surcharge:.4f} more ({cache_write_tokens:,} tokens at "
            f"${_num(self.cache_write_rate)} instead of ${_num(self.input_per_mtok)} per million: "
            f"{self.cache_write_basis})"
        )

    def saving(self, cached_input_tokens: int) -> float:
        """USD saved by reading ``cached_input_tokens`` from the cache instead of paying input."""
        if self.cached_input_per_mtok is None:
            return 0.0
        discount = self.input_per_mtok - self.cached_input_per_mtok
        return max(0, cached_input_tokens) * discount / 1e6

    @property
    def cited(self) -> str:
        """The basis of a cost: ``config prices`` (with its date when given) or
        ``<table>, <date>``."""
        if self.source == CONFIG_SOURCE:
            return "config prices" + (f" ({self.date})" if self.date else "")
        return f"{self.source}, {self.date or 'date unknown'}"

    def describe(self) -> str:
        """One line: source, date and the rates."""
        parts = [f"${_num(self.input_per_mtok)} input"]
        if self.cached_input_per_mtok is not None:
            parts.append(f"${_num(self.cached_input_per_mtok)} cached input")
        if self.cache_write_rate != self.input_per_mtok:
            parts.append(f"${_num(self.cache_write_rate)} cache write")
        parts.append(f"${_num(self.output_per_mtok)} output per million tokens")
        if self.batch_input_per_mtok is not None and self.batch_output_per_mtok is not None:
            parts.append(
                f"batch API ${_num(self.batch_input_per_mtok)}/${_num(self.batch_output_per_mtok)}"
            )
        model = f" as {self.model_id}" if self.model_id else ""
        return f"{self.source} ({self.date or 'date unknown'}){model}: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (manifest)."""
        return asdict(self)


def _num(x: float) -> str:
    return f"{x:.4f}".rstrip("0").rstrip(".")


def _write_multiplier(label: str) -> float:
    """The provider's documented cache-write price as a share of input (1.0: none)."""
    return CACHE_WRITE_MULTIPLIER.get(provider_of(label)[0], 1.0)


def provider_of(label: str) -> tuple[str, str]:
    """``(provider prefix, model)`` of a label, lower-cased prefix."""
    provider, _, model = label.partition("/")
    return provider.lower(), model


def genai_prices_version() -> str | None:
    """The installed genai-prices version, or ``None``."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("genai-prices")
    except PackageNotFoundError:
        return None


def default_price(label: str) -> ModelPrice | None:
    """The default table's price of ``label`` (genai-prices), or ``None`` when it has none."""
    provider, model = provider_of(label)
    if provider in _SELF_HOSTED or not model:
        return None
    ver = genai_prices_version()
    if ver is None:
        log.debug("genai-prices is not installed: no default prices")
        return None
    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    provider_id = _PROVIDER_IDS.get(provider, provider)
    try:
        _, info = snapshot.find_provider_model(model, None, provider_id, None)
    except LookupError:
        try:  # an unknown provider id: let the model name find its provider
            _, info = snapshot.find_provider_model(model, None, None, None)
        except LookupError:
            return None
    now = datetime.now(tz=UTC)
    base = info.get_prices(now)
    batch = info.get_prices(now, {"processing": "batch"})
    has_batch = any(
        v.when.get("processing") == "batch" for v in (getattr(info, "price_variants", None) or ())
    )
    inp, out = _rate(base, "input_mtok"), _rate(base, "output_mtok")
    if inp is None or out is None:
        return None
    return ModelPrice(
        label=label,
        input_per_mtok=inp,
        output_per_mtok=out,
        cached_input_per_mtok=_rate(base, "cache_read_mtok"),
        cache_write_per_mtok=_rate(base, "cache_write_mtok"),
        batch_input_per_mtok=_rate(batch, "input_mtok") if has_batch else None,
        batch_output_per_mtok=_rate(batch, "output_mtok") if has_batch else None,
        source=f"genai-prices {ver}",
        date=GENAI_PRICES_RELEASED.get(ver),
        model_id=str(getattr(info, "id", "") or "") or None,
    )


def _rate(price: Any, name: str) -> float | None:
    """A per-million rate of a genai-prices ``ModelPrice`` (the base tier of tiered prices)."""
    value = getattr(price, name, None)
    if value is None:
        return None
    value = getattr(value, "base", value)  # TieredPrices: prompts of a call stay below the tiers
    return float(value)


def price_for(label: str, config: PanelsynthConfig | None) -> ModelPrice | None:
    """The price of ``label``: ``[prices."label"]`` of the config, else the default table.

    Returns:
        ``None`` when no source knows the model (or it is self-hosted without a ``[prices]``).
    """
    entry = config.prices.get(label) if config is not None else None
    if entry is not None:
        return ModelPrice(
            label=label,
            input_per_mtok=entry.input_per_mtok,
            output_per_mtok=entry.output_per_mtok,
            cached_input_per_mtok=entry.cached_input_per_mtok,
            batch_input_per_mtok=entry.batch_input_per_mtok,
            batch_output_per_mtok=entry.batch_output_per_mtok,
            source=CONFIG_SOURCE,
            date=entry.date,
        )
    return default_price(label)


def unknown_price(label: str) -> str:
    """The basis line of a cost no source knows."""
    return (
        f"unknown: no price for {label} in [prices] of panelsynth.toml or in the default table "
        f"(genai-prices {genai_prices_version() or 'not installed'})"
    )


def prefix_cache_min_tokens(label: str) -> int | None:
    """Smallest prefix the model's provider caches, or ``None`` when it has no prompt cache."""
    provider, _ = provider_of(label)
    return PREFIX_CACHE_MIN_TOKENS.get(_PROVIDER_IDS.get(provider, provider))


def projected_prefix_cache(
    label: str, calls: int, prefix_tokens: int, concurrency: int
) -> tuple[int, str]:
    """Input tokens of a wave's step-3 calls that a provider's prompt cache will serve.

    The first round of concurrent calls finds no cache entry; each later call reads the shared
    prefix from the cache when the provider caches prompts and the prefix is long enough.

    Returns:
        ``(cached_tokens, why)``.
    """
    minimum = prefix_cache_min_tokens(label)
    if minimum is None:
        return 0, "the provider has no prompt cache panelsynth can use"
    if prefix_tokens < minimum:
        return 0, (
            f"the shared prefix ({prefix_tokens} tokens) is below the {minimum} tokens the "
            f"provider caches"
        )
    hits = max(0, calls - max(1, concurrency))
    return hits * prefix_tokens, (
        f"{hits} of {calls} calls read the {prefix_tokens:,}-token shared prefix from the cache "
        f"(the first {min(calls, max(1, concurrency))} concurrent call(s) write it)"
    )


def projected_prefix_writes(label: str, calls: int, prefix_tokens: int, concurrency: int) -> int:
    """Input tokens of a wave's step-3 calls that write the shared prefix to the prompt cache:
    the first round of concurrent calls (none when :func:`projected_prefix_cache` projects no
    cache use). Priced at :attr:`ModelPrice.cache_write_rate` (a surcharge for Anthropic)."""
    minimum = prefix_cache_min_tokens(label)
    if minimum is None or prefix_tokens < minimum or calls <= 0:
        return 0
    return min(calls, max(1, concurrency)) * prefix_tokens


@dataclass(frozen=True)
class PrefixCachePlan:
    """A dry run's prompt-cache projection of a wave's step 3.

    Attributes:
        cached: Input tokens read from the cache (:func:`projected_prefix_cache`).
        written: Input tokens written to it (:func:`projected_prefix_writes`).
        saving: USD the reads save less what the writes cost above the input price (negative
            when the writes cost more than the reads save); ``None`` without a price.
        note: How it was projected (the dry run's ``prefix cache:`` line).
    """

    cached: int
    written: int
    saving: float | None
    note: str


def prefix_cache_plan(
    label: str,
    price: ModelPrice | None,
    calls: int,
    input_tokens: int,
    prefix_tokens: int,
    concurrency: int,
) -> PrefixCachePlan:
    """The prompt-cache reads and writes of ``calls`` step-3 calls of ``input_tokens`` in all,
    priced with ``price`` (the writes' surcharge taken off the reads' saving). Writes are
    counted only where they cost more than input (Anthropic; OpenAI reports none)."""
    cached, note = projected_prefix_cache(label, calls, prefix_tokens, concurrency)
    cached = min(cached, input_tokens)
    if price is None:
        return PrefixCachePlan(cached, 0, None, note)
    written = 0
    if price.cache_write_rate != price.input_per_mtok:
        written = projected_prefix_writes(label, calls, prefix_tokens, concurrency)
        written = min(written, input_tokens - cached)
    if price.cached_input_per_mtok is None and cached:
        note += "; no cached-input price is known, so no saving is counted"
    saving = price.saving(cached) - price.write_surcharge(written)
    return PrefixCachePlan(cached, written, saving, note + price.write_note(written))
