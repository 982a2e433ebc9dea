"""The answers of a panel's synthetic respondents, wave by wave, as their calls are saved.

A later wave's call shows each of its respondents' answers in the last generated wave they
answered, so it can be written only once those rows exist. The waves of a panel run together
(:func:`panelsynth.generate.run_together`): a call of wave 3 starts as soon as its respondents'
wave-2 rows are on disk, not when all of wave 2 is done (a wave no longer ends with a round of
calls that leaves most of the concurrency idle). :class:`AnswerBoard` is where those rows meet:
a wave's prompt publishes each kept row once its call's checkpoint line is written (so a call
never shows answers that a crash could lose), and a later wave's prompt waits for the rows it
needs before its call takes a place among the concurrent calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from panelsynth.errors import BlockedCallError

Key = tuple[str, str]  # (wave, respondent id)


class AnswerBoard:
    """Each synthetic respondent's generated answers per wave (published once saved)."""

    def __init__(self) -> None:
        self._answers: dict[Key, dict[str, Any]] = {}
        self._waiting: dict[Key, asyncio.Future[None]] = {}
        self._closed: dict[str, str] = {}  # wave -> why its missing rows will not come

    def publish(self, wave: str, respondent: str, answers: Mapping[str, Any]) -> None:
        """``respondent``'s answers in ``wave`` (the first publication of a key stays)."""
        key = (wave, respondent)
        self._answers.setdefault(key, dict(answers))
        fut = self._waiting.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def get(self, wave: str, respondent: str) -> dict[str, Any] | None:
        return self._answers.get((wave, respondent))

    def close(self, wave: str, why: str) -> None:
        """No more rows of ``wave`` will come: whoever waits for a missing one is blocked."""
        self._closed[wave] = why
        for key in [k for k in self._waiting if k[0] == wave]:
            fut = self._waiting.pop(key)
            if not fut.done():
                fut.set_exception(BlockedCallError(self._blocked(key)))

    async def wait(self, keys: Iterable[Key]) -> None:
        """Return once every key is published.

        Raises:
            BlockedCallError: a key's wave was closed without it.
        """
        loop = asyncio.get_running_loop()
        pending = []
        for key in keys:
            if key in self._answers:
                continue
            if key[0] in self._closed:
                raise BlockedCallError(self._blocked(key))
            fut = self._waiting.get(key)
            if fut is None:
                fut = self._waiting[key] = loop.create_future()
            pending.append(fut)
        try:
            for fut in pending:
                await fut
        finally:  # one blocked key is enough: the others' errors are taken, not left to warn
            for fut in pending:
                if fut.done() and not fut.cancelled():
                    fut.exception()

    def _blocked(self, key: Key) -> str:
        wave, respondent = key
        return (
            f"respondent {respondent} has no wave {wave} row to show ({self._closed[wave]}) — "
            f"fix wave {wave}'s cause and rerun with --resume"
        )
