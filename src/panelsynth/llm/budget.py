"""A spending limit around any client: no call starts whose projected cost would break it.

The projected cost of a call is its prompt (messages and response schema) plus its full output
budget (``max_tokens``), priced at full input and output prices (``[prices]`` of
``panelsynth.toml`` or the default table; a shared prompt prefix at the cache-write price, which
Anthropic may charge for it); what a call really cost (its usage, retries included;
with the model's price, prompt-cache reads at the cached rate and Anthropic's cache writes at the
cache-write rate, as the manifest's ``cost`` books them) is booked when it ends. Calls running
at the same time reserve their projected cost, so concurrency cannot overshoot the limit either.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from panelsynth.errors import BudgetExceededError
from panelsynth.llm.base import Completion, LLMCallError, LLMClient, Message, Usage

T = TypeVar("T", bound=BaseModel)

#: Output tokens assumed for a call that sets no ``max_tokens``.
DEFAULT_OUTPUT_TOKENS = 4096


class CallPrice(Protocol):
    """What a finished call cost (:meth:`panelsynth.prices.ModelPrice.cost`)."""

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float: ...


class BudgetedClient:
    """Wraps a client and refuses any call that could take spending past ``max_cost_usd``.

    Args:
        inner: The client doing the calls.
        max_cost_usd: The spending limit, in USD.
        input_per_mtok: Price of a million input tokens, in USD.
        output_per_mtok: Price of a million output tokens, in USD.
        price: The model's price (:func:`panelsynth.prices.price_for`): finished calls are booked
            with its ``cost`` (cache reads and writes at their own rates); ``None``: every input
            token at ``input_per_mtok``.

    Attributes:
        spent_usd: What the finished calls cost.
    """

    def __init__(
        self,
        inner: LLMClient,
        *,
        max_cost_usd: float,
        input_per_mtok: float,
        output_per_mtok: float,
        price: CallPrice | None = None,
    ) -> None:
        self.inner = inner
        self.max_cost_usd = max_cost_usd
        self.input_per_mtok = input_per_mtok
        self.output_per_mtok = output_per_mtok
        self.price = price
        self.spent_usd = 0.0
        self._reserved = 0.0
        self._calls = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # label, is_local, context_window, ...
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"BudgetedClient({self.inner!r}, max_cost_usd={self.max_cost_usd})"

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD of the given tokens at the configured prices."""
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6

    def projected(
        self, messages: list[Message], response_model: type[BaseModel], max_tokens: int | None
    ) -> tuple[float, int, int]:
        """Projected ``(usd, input_tokens, output_tokens)`` of one call: a ceiling, so with the
        model's price the shared prompt prefix (:class:`~panelsynth.llm.base.PromptMessages`)
        is priced as written to the prompt cache (Anthropic's write surcharge) and nothing as
        read from it."""
        schema = json.dumps(response_model.model_json_schema())
        text = "\n".join(str(m.get("content", "")) for m in messages) + "\n" + schema
        n_in = self.inner.count_tokens(text) + 8 * len(messages)
        n_out = max_tokens or DEFAULT_OUTPUT_TOKENS
        shared = getattr(messages, "shared_chars", 0)
        if self.price is None or not shared or not messages:
            return self.cost(n_in, n_out), n_in, n_out
        prefix = self.inner.count_tokens(str(messages[-1].get("content", ""))[:shared])
        return self.price.cost(n_in, n_out, 0, min(prefix, n_in)), n_in, n_out

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def _reserve(
        self, messages: list[Message], response_model: type[BaseModel], max_tokens: int | None
    ) -> float:
        usd, n_in, n_out = self.projected(messages, response_model, max_tokens)
        with self._lock:
            if self.spent_usd + self._reserved + usd > self.max_cost_usd:
                if self._calls == 0:
                    raise BudgetExceededError(
                        f"--max-cost ${self.max_cost_usd:.4g} is less than one call to "
                        f"{self.inner.label} (about ${usd:.4g} for {n_in} input + up to {n_out} "
                        f"output tokens at the [prices] of panelsynth.toml) — raise --max-cost "
                        f"(generation.max_cost_usd)"
                    )
                held = (
                    f" and ${self._reserved:.4g} held by calls in flight" if self._reserved else ""
                )
                raise BudgetExceededError(
                    f"the budget of ${self.max_cost_usd:.4g} would be exceeded: "
                    f"${self.spent_usd:.4g} spent{held}, the next call to {self.inner.label} may "
                    f"cost ${usd:.4g} — rerun with a larger --max-cost (generation.max_cost_usd) "
                    f"and --resume"
                )
            self._reserved += usd
            self._calls += 1
        return usd

    def _settle(self, reserved: float, usage: Usage, answered: bool = False) -> None:
        n_in, n_out = max(0, usage.input_tokens), max(0, usage.output_tokens)
        if self.price is None:
            cost = self.cost(n_in, n_out)
        else:
            cost = self.price.cost(n_in, n_out, usage.cached_input_tokens, usage.cache_write_tokens)
        if answered and cost <= 0:  # a reply that booked no tokens: book its projection
            cost = reserved
        with self._lock:
            self._reserved -= reserved
            self.spent_usd += cost

    def create(
        self,
        messages: list[Message],
        response_model: type[T],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.7,
        seed: int | None = None,
    ) -> Completion[T]:
        """:meth:`LLMClient.create` within the budget.

        Raises:
            BudgetExceededError: the call could take spending past the limit (nothing was sent).
        """
        reserved = self._reserve(messages, response_model, max_tokens)
        usage, answered = Usage(attempts=0), False
        try:
            comp = self.inner.create(
                messages, response_model, max_tokens=max_tokens, temperature=temperature, seed=seed
            )
            usage, answered = comp.usage, True
            return comp
        except LLMCallError as err:
            usage = err.usage
            raise
        finally:
            self._settle(reserved, usage, answered)

    async def acreate(
        self,
        messages: list[Message],
        response_model: type[T],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.7,
        seed: int | None = None,
    ) -> Completion[T]:
        """Async :meth:`create`."""
        reserved = self._reserve(messages, response_model, max_tokens)
        usage, answered = Usage(attempts=0), False
        try:
            comp = await self.inner.acreate(
                messages, response_model, max_tokens=max_tokens, temperature=temperature, seed=seed
            )
            usage, answered = comp.usage, True
            return comp
        except LLMCallError as err:
            usage = err.usage
            raise
        finally:
            self._settle(reserved, usage, answered)
