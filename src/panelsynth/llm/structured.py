"""The Instructor-backed client: structured output, re-asks, transport retries and usage.

One :class:`InstructorClient` wraps an Instructor client (built by ``instructor.from_provider``,
``instructor.from_openai`` for OpenAI-compatible servers, or ``instructor.patch`` around
llama-cpp-python). Each logical call:

* sends ``response_model.model_json_schema()`` (as a tool, a ``json_schema`` response format or a
  schema in the prompt, depending on the Instructor mode) and validates the reply leniently
  (``strict=False``, i.e. like ``response_model.model_validate(json)``);
* lets Instructor re-ask up to ``reask_retries`` times when the reply does not validate;
* retries transport failures (rate limits, 5xx, timeouts, dropped connections) with Tenacity, with
  exponential backoff and jitter, honouring ``Retry-After``;
* records the tokens of *every* HTTP attempt (per-call Instructor hooks; Anthropic's prompt-cache
  reads and writes apart), the number of attempts, retries and re-asks, and each fault kind, in
  :class:`~panelsynth.llm.base.Usage`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)

from panelsynth.llm.base import Completion, LLMCallError, Message, Usage
from panelsynth.llm.keys import scrub
from panelsynth.llm.limits import REPLY_CAP, reply_byte_cap
from panelsynth.llm.retry import (
    RETRY_LISTENER,
    OnRetry,
    RetryPolicy,
    classify_exception,
    is_retryable,
    retry_after_seconds,
    short_message,
)

logger = logging.getLogger("panelsynth")

T = TypeVar("T", bound=BaseModel)


def estimate_tokens(text: str) -> int:
    """Token estimate used for hosted models: one token per 4 characters (rounded up)."""
    return (len(text) + 3) // 4


class _Transient(Exception):
    """A retryable failure, carried through Tenacity."""

    def __init__(self, kind: str, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


def _int(obj: Any, *names: str) -> int:
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def response_tokens(response: Any) -> tuple[int, int, int] | None:
    """``(input, output, cached_input)`` tokens reported by a raw provider response.

    Understands OpenAI-style (``prompt_tokens``/``completion_tokens``), Anthropic-style
    (``input_tokens`` + cache reads/writes, ``output_tokens``) and Google GenAI
    (``usage_metadata``) usage. Input tokens include cached ones.

    Returns:
        The counts, or ``None`` when the response carries no usage.
    """
    usage = getattr(response, "usage", None)
    if usage is None and isinstance(response, dict):
        usage = response.get("usage")
    if usage is not None:
        if _int(usage, "prompt_tokens") or _int(usage, "completion_tokens"):
            details = getattr(usage, "prompt_tokens_details", None)
            cached = _int(details, "cached_tokens") if details is not None else 0
            return _int(usage, "prompt_tokens"), _int(usage, "completion_tokens"), cached
        cache_read = _int(usage, "cache_read_input_tokens")
        cache_write = _int(usage, "cache_creation_input_tokens")
        return (
            _int(usage, "input_tokens") + cache_read + cache_write,
            _int(usage, "output_tokens"),
            cache_read,
        )
    meta = getattr(response, "usage_metadata", None)
    if meta is not None:
        return (
            _int(meta, "prompt_token_count"),
            _int(meta, "candidates_token_count") + _int(meta, "thoughts_token_count"),
            _int(meta, "cached_content_token_count"),
        )
    return None


def response_cache_writes(response: Any) -> int:
    """Input tokens a raw response says were written to the provider's prompt cache (Anthropic
    ``cache_creation_input_tokens``; part of its input tokens, billed at the cache-write price).
    0 for providers that report none (OpenAI, Google: no write surcharge)."""
    usage = getattr(response, "usage", None)
    if usage is None and isinstance(response, dict):
        usage = response.get("usage")
    return max(0, _int(usage, "cache_creation_input_tokens")) if usage is not None else 0


def plausible_usage(
    counts: tuple[int, int, int] | None, prompt: str, reply: str, max_tokens: int | None
) -> tuple[tuple[int, int, int], bool]:
    """Token counts a reply reported, made safe to book: ``(counts, estimated)``.

    Negative counts are clamped to zero. Counts that are missing, zero, far below the size of
    the text (under a quarter of the characters / 4 estimate) are replaced by the estimate; an
    output count beyond ``max_tokens`` (impossible for a server that honours it) by
    ``max_tokens``, the most the reply can have cost. ``estimated`` says whether anything was
    replaced, so a manifest can say its token counts (and cost) are partly estimates.
    """
    est_in, est_out = estimate_tokens(prompt), estimate_tokens(reply)
    if counts is None:
        return (est_in, est_out, 0), True
    n_in, n_out, n_cached = (max(0, int(c)) for c in counts)
    estimated = any(int(c) < 0 for c in counts)
    if n_in == 0 and est_in or n_in * 4 < est_in:
        n_in, estimated = est_in, True
    if max_tokens and n_out > max_tokens:
        n_out, estimated = max(max_tokens, 0), True
    elif n_out == 0 and est_out or n_out * 4 < est_out:
        n_out, estimated = est_out, True
    return (n_in, n_out, min(n_cached, n_in)), estimated


def _message_text(message: Any) -> str:
    content = message.get("content", "") if isinstance(message, dict) else ""
    if isinstance(content, list):  # content blocks (cache markers)
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return str(content or "")


def finish_reason_of(response: Any) -> str | None:
    """The finish/stop reason of a raw OpenAI, Anthropic or Google response."""
    choices = getattr(response, "choices", None)
    if choices:
        return getattr(choices[0], "finish_reason", None)
    stop = getattr(response, "stop_reason", None)
    if stop is not None:
        return str(stop)
    candidates = getattr(response, "candidates", None)
    if candidates:
        reason = getattr(candidates[0], "finish_reason", None)
        return None if reason is None else str(getattr(reason, "name", reason)).lower()
    return None


def _content_text(response: Any) -> str:
    try:
        message = response.choices[0].message
        calls = getattr(message, "tool_calls", None) or []
        if calls:
            return "".join(str(c.function.arguments or "") for c in calls)
        return str(message.content or "")
    except (AttributeError, IndexError, TypeError):
        return ""


def _plain(value: Any, response_model: type[T]) -> T:
    """An instance of exactly ``response_model``.

    Instructor returns an instance of a subclass it derived from the model, carrying the raw
    completion in ``_raw_response``; callers get a plain instance (type, equality and memory as
    with ``response_model.model_validate``).
    """
    if type(value) is response_model:
        return value
    return response_model.model_validate(value.model_dump(by_alias=True))


class InstructorClient:
    """An :class:`~panelsynth.llm.base.LLMClient` over an Instructor client.

    Args:
        label: The model label (``provider/model``), for messages and manifests.
        sync_factory: Builds the sync Instructor client (called once, lazily).
        async_factory: Builds an async Instructor client; called once per event loop. ``None``
            runs :meth:`acreate` as :meth:`create` in a worker thread.
        policy: Transport retry policy.
        reask_retries: Re-asks Instructor may make after an invalid reply.
        on_retry: Called as ``on_retry(kind, wait_seconds)`` before each transport retry.
        supports_seed: Whether the provider accepts a ``seed`` parameter.
        request_model: Model name to send with every request (``None``: the Instructor client
            already injects it).
        mode: Name of the Instructor mode, for ``repr`` and reports.
        cache_markers: Mark where the shared prompt prefix ends (:class:`PromptMessages`) with
            Anthropic's ``cache_control``, which caches only marked prefixes; other providers
            cache identical prefixes by themselves.
        structured_output: The structured-output mode of an OpenAI-compatible server
            (:mod:`panelsynth.llm.modes`): an answer rejecting one of its request fields fails
            at once, without retries, naming the field and the mode to use. ``json`` also sends
            the schema inside ``response_format``. ``None`` for hosted providers.
    """

    is_local: bool = False
    #: The server is on this machine (an OpenAI-compatible server on a loopback address): data
    #: sent to it does not leave the machine.
    on_this_machine: bool = False
    #: Host of the OpenAI-compatible server (``--base-url``); ``None`` for the provider's own API.
    endpoint_host: str | None = None
    #: Context window in tokens when known (local models); ``None`` for hosted models.
    context_window: int | None = None

    def __init__(
        self,
        label: str,
        *,
        sync_factory: Callable[[], Any],
        async_factory: Callable[[], Any] | None = None,
        policy: RetryPolicy | None = None,
        reask_retries: int = 2,
        on_retry: OnRetry | None = None,
        supports_seed: bool = True,
        request_model: str | None = None,
        mode: str = "",
        cache_markers: bool = False,
        structured_output: str | None = None,
    ) -> None:
        self.label = label
        self.structured_output = structured_output
        self.cache_markers = cache_markers
        self.policy = policy or RetryPolicy()
        self.reask_retries = reask_retries
        self.on_retry = on_retry
        self.supports_seed = supports_seed
        self.request_model = request_model
        self.mode = mode
        self._sync_factory = sync_factory
        self._async_factory = async_factory
        self._sync: Any | None = None
        self._async: tuple[asyncio.AbstractEventLoop, Any] | None = None
        self._wrapped: dict[type[BaseModel], type[BaseModel]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(label={self.label!r}, mode={self.mode!r})"

    # -- seam ------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Estimated tokens of ``text`` (characters / 4): hosted tokenizers are not local."""
        return estimate_tokens(text)

    def create(
        self,
        messages: list[Message],
        response_model: type[T],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.7,
        seed: int | None = None,
    ) -> Completion[T]:
        """Ask for one ``response_model`` instance; see :class:`~panelsynth.llm.base.LLMClient`.

        Raises:
            LLMCallError: Retries or re-asks exhausted, or a non-retryable failure. Its
                ``usage`` holds every token spent.
        """
        usage = Usage(attempts=0)
        kwargs = self._request_kwargs(max_tokens, temperature, seed)
        retrying = Retrying(**self._retry_kwargs(usage))
        try:
            for attempt in retrying:
                with attempt:
                    value, raw = self._call_sync(messages, response_model, kwargs, usage)
        except _Transient as exc:
            raise self._gave_up(exc, usage) from exc.__cause__
        return Completion(value=value, usage=usage, finish_reason=finish_reason_of(raw))

    async def acreate(
        self,
        messages: list[Message],
        response_model: type[T],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.7,
        seed: int | None = None,
    ) -> Completion[T]:
        """Async :meth:`create`; many may run concurrently on one event loop."""
        if self._async_factory is None:
            return await asyncio.to_thread(
                self.create,
                messages,
                response_model,
                max_tokens=max_tokens,
                temperature=temperature,
                seed=seed,
            )
        usage = Usage(attempts=0)
        kwargs = self._request_kwargs(max_tokens, temperature, seed)
        retrying = AsyncRetrying(**self._retry_kwargs(usage))
        try:
            async for attempt in retrying:
                with attempt:
                    value, raw = await self._call_async(messages, response_model, kwargs, usage)
        except _Transient as exc:
            raise self._gave_up(exc, usage) from exc.__cause__
        return Completion(value=value, usage=usage, finish_reason=finish_reason_of(raw))

    # -- internals -------------------------------------------------------------------------
    def _sync_client(self) -> Any:
        if self._sync is None:
            self._sync = self._sync_factory()
        return self._sync

    def _async_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            assert self._async_factory is not None
            self._async = (loop, self._async_factory())
        return self._async[1]

    async def aclose(self) -> None:
        """Close the async SDK client of the running event loop (its connection pool).

        Call it before the loop ends (``generate_rows`` does): otherwise the pool is garbage
        collected after ``asyncio.run`` returns and its transports complain that the event loop
        is closed.
        """
        if self._async is None or self._async[0] is not asyncio.get_running_loop():
            return
        sdk = getattr(self._async[1], "client", None)
        self._async = None
        closer = getattr(sdk, "close", None)
        if closer is not None:
            try:
                result = closer()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - closing must never fail a run
                logger.debug("%s: closing the async client failed: %s", self.label, exc)

    def _request_kwargs(
        self, max_tokens: int | None, temperature: float, seed: int | None
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"temperature": temperature}
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        if seed is not None and self.supports_seed:
            kwargs["seed"] = seed
        if self.request_model is not None:
            kwargs["model"] = self.request_model
        return kwargs

    def _retry_kwargs(self, usage: Usage) -> dict[str, Any]:
        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = exc.retry_after if isinstance(exc, _Transient) else None
            return self.policy.backoff(state.attempt_number, retry_after)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            kind = exc.kind if isinstance(exc, _Transient) else "other"
            seconds = state.next_action.sleep if state.next_action else 0.0
            usage.retries += 1
            logger.warning(
                "%s: %s on attempt %d/%d (%s); retrying in %.2f s",
                self.label,
                kind,
                state.attempt_number,
                self.policy.max_attempts,
                scrub(str(exc)),
                seconds,
            )
            if self.on_retry is not None:
                self.on_retry(kind, seconds)
            listener = RETRY_LISTENER.get()
            if listener is not None:
                listener(kind, seconds)

        return {
            "stop": stop_after_attempt(self.policy.max_attempts),
            "wait": wait,
            "retry": retry_if_exception_type(_Transient),
            "reraise": True,
            "before_sleep": before_sleep,
        }

    def _hooks(self, usage: Usage, max_tokens: int | None = None) -> Any:
        from instructor.core import Hooks

        last_messages: list[Any] = []

        def on_kwargs(*_args: Any, **kwargs: Any) -> None:
            usage.attempts += 1
            last_messages[:] = list(kwargs.get("messages") or [])

        def on_response(response: Any) -> None:
            prompt = "".join(_message_text(m) for m in last_messages if m)
            counts, estimated = plausible_usage(
                response_tokens(response), prompt, _content_text(response), max_tokens
            )
            if estimated:
                usage.estimated += 1
                logger.debug("%s: implausible or missing token usage; estimated", self.label)
            usage.input_tokens += counts[0]
            usage.output_tokens += counts[1]
            usage.cached_input_tokens += counts[2]
            written = response_cache_writes(response)  # part of the input tokens
            usage.cache_write_tokens += min(written, max(0, counts[0] - counts[2]))

        def on_parse_error(error: Exception, **meta: Any) -> None:
            usage.faults["invalid_output"] = usage.faults.get("invalid_output", 0) + 1
            if not meta.get("is_last_attempt", False):
                usage.reasks += 1
            logger.info("%s: invalid output (%s)", self.label, scrub(short_message(error, 200)))

        hooks = Hooks()
        hooks.on("completion:kwargs", on_kwargs)
        hooks.on("completion:response", on_response)
        hooks.on("parse:error", on_parse_error)
        return hooks

    def _call_sync(
        self,
        messages: list[Message],
        response_model: type[T],
        kwargs: dict[str, Any],
        usage: Usage,
    ) -> tuple[T, Any]:
        cap = REPLY_CAP.set(reply_byte_cap(kwargs.get("max_tokens")))
        try:
            value, raw = self._sync_client().create_with_completion(
                messages=self._provider_messages(messages),
                response_model=self._instructor_model(response_model),
                max_retries=self.reask_retries,
                strict=False,
                hooks=self._hooks(usage, kwargs.get("max_tokens")),
                **kwargs,
                **self._mode_kwargs(response_model),
            )
        except Exception as exc:  # noqa: BLE001 - every failure is classified below
            raise self._translate(exc, usage, kwargs) from self._safe_cause(exc)
        finally:
            REPLY_CAP.reset(cap)
        return _plain(value, response_model), raw

    async def _call_async(
        self,
        messages: list[Message],
        response_model: type[T],
        kwargs: dict[str, Any],
        usage: Usage,
    ) -> tuple[T, Any]:
        cap = REPLY_CAP.set(reply_byte_cap(kwargs.get("max_tokens")))
        try:
            value, raw = await self._async_client().create_with_completion(
                messages=self._provider_messages(messages),
                response_model=self._instructor_model(response_model),
                max_retries=self.reask_retries,
                strict=False,
                hooks=self._hooks(usage, kwargs.get("max_tokens")),
                **kwargs,
                **self._mode_kwargs(response_model),
            )
        except Exception as exc:  # noqa: BLE001 - every failure is classified below
            raise self._translate(exc, usage, kwargs) from self._safe_cause(exc)
        finally:
            REPLY_CAP.reset(cap)
        return _plain(value, response_model), raw

    def _provider_messages(self, messages: list[Message]) -> list[dict[str, Any]]:
        """Copies of ``messages`` for the SDK; with cache markers, the shared prefix of the last
        message becomes its own text block marked ``cache_control`` (the rest a second block)."""
        out: list[dict[str, Any]] = [dict(m) for m in messages]
        shared = getattr(messages, "shared_chars", 0)
        if self.cache_markers and out and 0 < shared < len(out[-1]["content"]):
            text = out[-1]["content"]
            out[-1]["content"] = [
                {"type": "text", "text": text[:shared], "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": text[shared:]},
            ]
        return out

    def _mode_kwargs(self, response_model: type[BaseModel]) -> dict[str, Any]:
        """Extra request fields of the structured-output mode: ``json`` sends the schema in
        ``response_format`` (llama-cpp-python's server decodes with a grammar built from it)."""
        if self.structured_output != "json":
            return {}
        schema = self._instructor_model(response_model).model_json_schema()
        return {"extra_body": {"response_format": {"type": "json_object", "schema": schema}}}

    def _instructor_model(self, response_model: type[T]) -> type[T]:
        """``response_model`` wrapped the way Instructor wraps it, once per model class.

        Instructor otherwise builds a new wrapper class (and its JSON schema) on every call:
        milliseconds of CPU per call that bound the throughput of concurrent calls.
        """
        wrapped = self._wrapped.get(response_model)
        if wrapped is None:
            try:
                from instructor.v2.core.function_calls import response_schema

                wrapped = response_schema(response_model)
            except Exception:  # noqa: BLE001 - another Instructor version: let it wrap per call
                wrapped = response_model
            if len(self._wrapped) > 256:
                self._wrapped.clear()
            self._wrapped[response_model] = wrapped
        return wrapped  # type: ignore[return-value]

    @staticmethod
    def _safe_cause(exc: BaseException) -> BaseException | None:
        """Keep ``exc`` as the cause only if no secret shows in its chain's messages."""
        seen: BaseException | None = exc
        while seen is not None:
            text = str(seen)
            if scrub(text) != text:
                return None
            seen = seen.__cause__ or seen.__context__
        return exc

    def _translate(
        self, exc: Exception, usage: Usage, kwargs: dict[str, Any]
    ) -> LLMCallError | _Transient:
        inner: BaseException = exc
        if type(exc).__name__ == "InstructorRetryException" and exc.__cause__ is not None:
            if classify_exception(exc) != "invalid_output":
                inner = exc.__cause__
        if isinstance(inner, LLMCallError):
            usage.add(inner.usage)
            usage.faults[inner.kind] = usage.faults.get(inner.kind, 0) + 1
            inner.usage = usage
            return inner
        kind = classify_exception(inner)
        detail = scrub(short_message(inner))
        if kind == "invalid_output":
            attempts = getattr(exc, "n_attempts", usage.attempts)
            return LLMCallError(
                kind,
                f"{self.label}: the reply did not validate after {attempts} attempt(s) "
                f"({self.reask_retries} re-ask(s) allowed): {detail}",
                usage,
            )
        usage.faults[kind] = usage.faults.get(kind, 0) + 1
        if kind == "truncated":
            limit = kwargs.get("max_tokens")
            return LLMCallError(
                kind,
                f"{self.label}: the reply was cut off by the token limit "
                f"(max_tokens={limit}); raise max_tokens or ask for fewer rows per call",
                usage,
            )
        if self.structured_output is not None and kind in ("bad_request", "server_error"):
            from panelsynth.llm import modes

            field = modes.unsupported_request(inner, self.structured_output)
            if field is not None:
                said = scrub(modes.server_message(inner))
                return LLMCallError(
                    modes.UNSUPPORTED_KIND,
                    modes.unsupported_message(self.label, self.structured_output, field, said),
                    usage,
                )
        if is_retryable(kind):
            return _Transient(kind, detail, retry_after_seconds(inner))
        hint = {
            "auth": "check the key / permissions: that the API key is right and may use this model",
            "bad_request": "the provider rejected the request",
            "oversized": "the server sent more than max_tokens allows",
        }.get(kind, "unexpected failure")
        return LLMCallError(kind, f"{self.label}: {kind} ({hint}): {detail}", usage)

    def _gave_up(self, exc: _Transient, usage: Usage) -> LLMCallError:
        return LLMCallError(
            exc.kind,
            f"{self.label}: {exc.kind} persisted after {self.policy.max_attempts} attempt(s) "
            f"({usage.retries} retries): {exc}",
            usage,
        )
