"""Structured-output modes for OpenAI-compatible servers, and the ``auto`` fallback.

Servers differ in how they take a response schema:

* ``json_schema``: ``response_format = {"type": "json_schema", "json_schema": {...}}`` (OpenAI,
  vLLM, Ollama >= 0.5, llama.cpp's ``llama-server``);
* ``json``: ``response_format = {"type": "json_object", "schema": {...}}`` plus the schema in the
  system message (llama-cpp-python's server turns the ``schema`` into a grammar; servers that do
  not know the key use plain JSON mode);
* ``tools``: a forced function call whose parameters are the schema;
* ``md_json``: no request field at all, the schema is in the prompt and the reply is parsed from
  text (works with any server, without constrained decoding).

A server that does not know a mode answers 400/422/500 with a body that names the field (for
example llama-cpp-python's ``response_format.type: Input should be 'text' or 'json_object'``).
:func:`unsupported_request` recognises such an answer, so the call fails at once with one line
naming the field and the mode to use, instead of being retried. :class:`AutoModeClient` tries the
modes of :data:`AUTO_CHAIN` in order and keeps the first one the server accepts for the rest of
the run.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from panelsynth.llm.base import Completion, LLMCallError, Message, Usage
from panelsynth.llm.retry import status_code

logger = logging.getLogger("panelsynth")

T = TypeVar("T", bound=BaseModel)

#: Every value of ``--structured-output`` (and ``structured_output`` in ``[[models]]``).
STRUCTURED_OUTPUT_MODES: tuple[str, ...] = ("auto", "json_schema", "json", "tools", "md_json")
#: The modes ``auto`` tries, best first.
AUTO_CHAIN: tuple[str, ...] = ("json_schema", "json", "md_json")
#: The mode to suggest when a server rejects a mode.
FALLBACK: dict[str, str] = {"json_schema": "json", "json": "md_json", "tools": "md_json"}
#: ``LLMCallError.kind`` of a request the server rejected because of a field of the mode.
UNSUPPORTED_KIND = "unsupported_request"

#: Request fields (and values) each mode adds, as a server may name them in an error.
_MODE_FIELDS: dict[str, tuple[str, ...]] = {
    "json_schema": ("response_format", "json_schema"),
    "json": ("response_format", "json_object", "schema"),
    "tools": ("tool_choice", "tools", "functions", "function_call"),
    "md_json": (),
}
_REJECTION = re.compile(
    r"unsupported|not supported|does not support|input should be|literal_error|invalid|"
    r"unknown|unrecognized|not allowed|not permitted|extra (?:inputs|fields)|not implemented|"
    r"must be one of|unexpected|only .{0,40}(?:is|are) supported",
    re.IGNORECASE,
)
_REJECTING_STATUS = frozenset({400, 404, 415, 422, 500, 501})


def error_text(exc: BaseException) -> str:
    """What an SDK error says: its message and the response body, on one line."""
    parts = [str(exc)]
    body = getattr(exc, "body", None)
    if body is not None and str(body) not in parts[0]:
        parts.append(str(body))
    return " ".join(" ".join(parts).split())


def unsupported_request(exc: BaseException, mode: str) -> str | None:
    """The request field of ``mode`` that a server's error answer names as unsupported.

    Args:
        exc: The exception of the failed request (an SDK status error).
        mode: The structured-output mode of the request.

    Returns:
        The field (``response_format``, ``tools``, ...) with the rejected value when the body
        names it (``response_format.type=json_schema``), or ``None`` when the answer is about
        something else (a rate limit, an overloaded server, a wrong model name).
    """
    code = status_code(exc)
    if code not in _REJECTING_STATUS:
        return None
    text = error_text(exc)
    if not _REJECTION.search(text):
        return None
    fields = _MODE_FIELDS.get(mode, ())
    named = [f for f in fields if re.search(rf"\b{re.escape(f)}\b", text)]
    if not named:
        return None
    field = named[0]
    if field == "response_format":
        value = {"json_schema": "json_schema", "json": "json_object"}[mode]
        if re.search(rf"\b{value}\b", text):
            return f"response_format.type={value}"
    return field


def server_message(exc: BaseException, limit: int = 160) -> str:
    """The server's own error message (``error.message`` of the body), on one bounded line."""
    body = getattr(exc, "body", None)
    text = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        text = inner.get("message") if isinstance(inner, dict) else str(inner)
    text = " ".join(str(text or exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unsupported_message(label: str, mode: str, field: str, detail: str) -> str:
    """One actionable line for a request the server rejected because of its mode."""
    use = FALLBACK.get(mode, "md_json")
    return (
        f"{label}: the server does not support `{field}` (structured-output mode {mode}; it "
        f'said: {detail}) — use --structured-output {use} (or structured_output = "{use}" '
        f"in [[models]]; auto finds a mode the server accepts)"
    )


class AutoModeClient:
    """An OpenAI-compatible client that finds a structured-output mode the server accepts.

    Calls go out in the first mode of ``chain``; when the server rejects a request because of a
    field of that mode (:data:`UNSUPPORTED_KIND`), the same call is sent again in the next mode,
    and that mode is kept for every later call of the run (concurrent calls switch once). The
    tokens of rejected attempts stay in the call's usage.

    Args:
        label: The model label.
        build: ``build(mode)`` returns the client for one mode (built once, when first needed).
        chain: The modes to try, in order.
    """

    is_local = False
    context_window: int | None = None
    endpoint_host: str | None = None  # the server's host (set by the registry)

    def __init__(
        self,
        label: str,
        build: Callable[[str], Any],
        chain: tuple[str, ...] = AUTO_CHAIN,
        *,
        on_this_machine: bool = False,
    ) -> None:
        self.label = label
        self.on_this_machine = on_this_machine
        self._build = build
        self._chain = chain
        self._index = 0
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.rejected: dict[str, str] = {}  # mode -> the field the server rejected

    def __repr__(self) -> str:
        return f"AutoModeClient(label={self.label!r}, mode={self.mode!r})"

    @property
    def mode(self) -> str:
        """The mode calls use now."""
        return self._chain[self._index]

    @property
    def structured_output(self) -> str:
        """What the manifest records: ``auto`` and the mode it settled on."""
        return f"auto ({self.mode})"

    def client_for(self, mode: str) -> Any:
        """The client of one mode."""
        with self._lock:
            client = self._clients.get(mode)
            if client is None:
                client = self._clients[mode] = self._build(mode)
            return client

    def count_tokens(self, text: str) -> int:
        return int(self.client_for(self.mode).count_tokens(text))

    def _next_mode(self, tried: str, err: LLMCallError) -> str | None:
        """The mode to try after ``tried`` failed with ``err``, or ``None`` to give up."""
        if err.kind != UNSUPPORTED_KIND:
            return None
        with self._lock:
            if self._chain[self._index] != tried:  # another call has switched already
                return self._chain[self._index]
            if self._index + 1 >= len(self._chain):
                return None
            self._index += 1
            self.rejected[tried] = str(err)
            chosen = self._chain[self._index]
        logger.warning(
            "%s: the server rejected structured-output mode %s; using %s for the rest of the run",
            self.label,
            tried,
            chosen,
        )
        return chosen

    def create(
        self,
        messages: list[Message],
        response_model: type[T],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.7,
        seed: int | None = None,
    ) -> Completion[T]:
        """:meth:`LLMClient.create` in the current mode, falling back when it is rejected."""
        spent = Usage(attempts=0)
        mode: str | None = self.mode
        while True:
            assert mode is not None
            try:
                comp = self.client_for(mode).create(
                    messages,
                    response_model,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=seed,
                )
            except LLMCallError as err:
                spent.add(err.usage)
                mode = self._next_mode(mode, err)
                if mode is None:
                    err.usage = spent
                    raise
                continue
            spent.add(comp.usage)
            comp.usage = spent
            return comp

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
        spent = Usage(attempts=0)
        mode: str | None = self.mode
        while True:
            assert mode is not None
            try:
                comp = await self.client_for(mode).acreate(
                    messages,
                    response_model,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=seed,
                )
            except LLMCallError as err:
                spent.add(err.usage)
                mode = self._next_mode(mode, err)
                if mode is None:
                    err.usage = spent
                    raise
                continue
            spent.add(comp.usage)
            comp.usage = spent
            return comp

    async def aclose(self) -> None:
        """Close the async SDK clients of every mode used."""
        for client in list(self._clients.values()):
            closer = getattr(client, "aclose", None)
            if closer is not None:
                await closer()
