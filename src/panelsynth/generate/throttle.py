"""Flow control of step 3: adaptive concurrency (AIMD) and request/token rate limits (SPEC §5).

* :class:`AdaptiveConcurrency` bounds the number of calls in flight. It starts at the configured
  concurrency; a rate-limit signal (HTTP 429, seen through the client's retry hook or a final
  ``LLMCallError(kind="rate_limit")``) halves it (multiplicative decrease, at most once per
  "epoch", i.e. once per round of calls that ran under the same limit), and every ``limit``
  successful calls add one place (additive increase; calls started before the last decrease do
  not count) until it is back at the configured maximum. A server's ``Retry-After`` also holds
  back new calls for that long.
* :class:`RatePacer` spaces call starts for a requests-per-minute limit and keeps a token bucket
  for a tokens-per-minute limit (reserve the call's estimated tokens before it starts, settle with
  the real usage afterwards).

Both only decide *when* a call starts; which rows a call produced and where they go (ordered by
batch index) is unaffected, so outputs stay deterministic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from panelsynth.llm.retry import RETRY_LISTENER

log = logging.getLogger("panelsynth")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Slot:
    """One call holding a place in :class:`AdaptiveConcurrency`.

    Attributes:
        epoch: The limiter's epoch under which the call's latest attempt was made.
        rate_limited: Whether a rate-limit signal was already received for this call.
        ok: Whether the call succeeded (set through :func:`observe`).
    """

    epoch: int
    rate_limited: bool = False
    ok: bool = False


@dataclass
class ThrottleEvent:
    """A change seen by the limiter, for reports and tests (no timestamps on purpose)."""

    event: str  # "start", "decrease", "increase"
    in_flight: int
    limit: int


@dataclass
class AdaptiveConcurrency:
    """An AIMD limit on concurrent calls.

    Args:
        max_limit: The configured concurrency (upper bound, and the start value).
        min_limit: Lower bound of the limit.
        decrease: Factor applied to the limit on a rate-limit signal.
        adaptive: ``False`` keeps the limit fixed (a plain semaphore).
        clock: Monotonic clock (tests may inject one).
        sleep: Async sleep (tests may inject one).
    """

    max_limit: int
    min_limit: int = 1
    decrease: float = 0.5
    adaptive: bool = True
    clock: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep
    limit_value: float = field(init=False)
    in_flight: int = field(init=False, default=0)
    epoch: int = field(init=False, default=0)
    decreases: int = field(init=False, default=0)
    increases: int = field(init=False, default=0)
    max_in_flight: int = field(init=False, default=0)
    min_limit_seen: int = field(init=False)
    trace: list[ThrottleEvent] = field(init=False, default_factory=list)
    _paused_until: float = field(init=False, default=0.0)
    _credit: int = field(init=False, default=0)
    _cond: asyncio.Condition | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.max_limit = max(1, int(self.max_limit))
        self.min_limit = max(1, min(int(self.min_limit), self.max_limit))
        self.limit_value = float(self.max_limit)
        self.min_limit_seen = self.max_limit

    @property
    def limit(self) -> int:
        """The current whole-number limit on calls in flight."""
        return max(self.min_limit, int(self.limit_value))

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self) -> Slot:
        """Wait for a free place (and for any ``Retry-After`` pause), then take it."""
        cond = self._condition()
        while True:
            wait = self._paused_until - self.clock()
            if wait > 0:
                await self.sleep(wait)
                continue
            async with cond:
                if self.in_flight < self.limit and self._paused_until <= self.clock():
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                    self.trace.append(ThrottleEvent("start", self.in_flight, self.limit))
                    return Slot(self.epoch)
                if self.in_flight >= self.limit:
                    await cond.wait()

    async def release(self, slot: Slot, *, ok: bool) -> None:
        """Give the place back; a successful call raises the limit additively.

        Only calls made under the current limit count (``slot.epoch == epoch``): calls still in
        flight from before a decrease do not undo it as they finish.
        """
        cond = self._condition()
        async with cond:
            self.in_flight -= 1
            fresh = slot.epoch == self.epoch
            if ok and fresh and self.adaptive and self.limit_value < self.max_limit:
                self._credit += 1
                if self._credit >= self.limit:  # one more place per round of successes
                    self._credit = 0
                    self.limit_value = min(float(self.max_limit), float(self.limit + 1))
                    self.increases += 1
                    self.trace.append(ThrottleEvent("increase", self.in_flight, self.limit))
            # wake as many waiters as there are free places (not all: O(n) wake-ups per call)
            cond.notify(max(1, self.limit - self.in_flight))

    def rate_limited(self, slot: Slot, wait: float = 0.0) -> None:
        """A call got HTTP 429: lower the limit (once per epoch) and pause new starts.

        Safe to call from any thread (the client's retry hook may run in a worker thread): it
        only updates numbers; waiting calls re-check them when a place is released or after a
        pause.
        """
        slot.rate_limited = True
        if wait > 0:
            self._paused_until = max(self._paused_until, self.clock() + wait)
        if not self.adaptive:
            return
        if slot.epoch == self.epoch:
            before = self.limit
            self.limit_value = max(float(self.min_limit), float(int(before * self.decrease)))
            self.epoch += 1
            self._credit = 0
            if self.limit < before:
                self.decreases += 1
                self.min_limit_seen = min(self.min_limit_seen, self.limit)
                self.trace.append(ThrottleEvent("decrease", self.in_flight, self.limit))
                log.info("rate limited: concurrency lowered from %d to %d", before, self.limit)
        slot.epoch = self.epoch

    def summary(self) -> dict[str, Any]:
        """Counts for the manifest."""
        return {
            "max_concurrency": self.max_limit,
            "final_limit": self.limit,
            "min_limit": self.min_limit_seen,
            "max_in_flight": self.max_in_flight,
            "decreases": self.decreases,
            "increases": self.increases,
        }


@dataclass
class RatePacer:
    """Requests-per-minute spacing and a tokens-per-minute token bucket.

    Args:
        requests_per_minute: Spacing of call starts (``None``: no limit).
        tokens_per_minute: Size and refill rate of the token bucket (``None``: no limit).
        clock: Monotonic clock (tests may inject one).
        sleep: Async sleep (tests may inject one).
    """

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    clock: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep
    waited: float = field(init=False, default=0.0)
    _next_start: float = field(init=False, default=float("-inf"))
    _tokens: float = field(init=False, default=0.0)
    _stamp: float | None = field(init=False, default=None)
    _lock: asyncio.Lock | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._tokens = float(self.tokens_per_minute or 0.0)

    @property
    def active(self) -> bool:
        return bool(self.requests_per_minute or self.tokens_per_minute)

    def _refill(self) -> None:
        now = self.clock()
        if self._stamp is not None and self.tokens_per_minute:
            self._tokens = min(
                float(self.tokens_per_minute),
                self._tokens + (now - self._stamp) * self.tokens_per_minute / 60.0,
            )
        self._stamp = now

    async def wait(self, tokens: int = 0) -> int:
        """Wait until a call estimated at ``tokens`` tokens may start; reserve them.

        Returns:
            The number of tokens reserved (the estimate capped at the bucket size), to pass to
            :meth:`settle` when the call's real usage is known.
        """
        if not self.active:
            return 0
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.requests_per_minute:
                gap = self._next_start - self.clock()
                if gap > 0:
                    self.waited += gap
                    await self.sleep(gap)
                self._next_start = self.clock() + 60.0 / self.requests_per_minute
            if not self.tokens_per_minute:
                return 0
            need = float(min(max(0, tokens), self.tokens_per_minute))
            self._refill()
            if self._tokens < need:
                gap = (need - self._tokens) * 60.0 / self.tokens_per_minute
                self.waited += gap
                await self.sleep(gap)
                self._refill()
            self._tokens -= need
            return int(need)

    def settle(self, reserved: int, used: int) -> None:
        """Correct the bucket once a call's real token usage is known."""
        if not self.tokens_per_minute:
            return
        self._refill()
        self._tokens -= used - reserved


@asynccontextmanager
async def call_slot(limiter: AdaptiveConcurrency) -> AsyncIterator[Slot]:
    """Hold a place in ``limiter`` for one call and route the client's 429 retries to it.

    The body marks the call's outcome with :func:`observe`; the place is released (and the limit
    raised after a success) on exit.
    """
    slot = await limiter.acquire()

    def listener(kind: str, wait: float) -> None:
        if kind == "rate_limit":
            limiter.rate_limited(slot, wait)

    token = RETRY_LISTENER.set(listener)
    try:
        yield slot
    finally:
        RETRY_LISTENER.reset(token)
        await limiter.release(slot, ok=slot.ok)


def observe(
    limiter: AdaptiveConcurrency, slot: Slot, *, kind: str | None, faults: dict[str, int]
) -> None:
    """Record a call's outcome: ``kind`` is ``None`` for a success, else the failure kind.

    A final ``rate_limit`` failure lowers the limit (once per epoch); so does a success whose
    usage counts 429s the retry hook did not report (clients without the hook).
    """
    slot.ok = kind is None
    if kind == "rate_limit" or (faults.get("rate_limit") and not slot.rate_limited):
        limiter.rate_limited(slot)
