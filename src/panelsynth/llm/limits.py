"""Bounds on one HTTP request to a model server: a total deadline and a cap on the reply's size.

An HTTP client's ``timeout`` bounds each wait for the network (connect, each read), not the whole
request: a server that sends the headers and then one byte per second never trips it. And
nothing bounds the size of a reply: a broken server can stream hundreds of megabytes into memory.
:func:`limit_transport` wraps an httpx transport so that

* the whole request — headers and the last byte of the body — ends within ``timeout`` seconds,
  else it fails as a timeout (``httpx.ReadTimeout``; retried like any timeout);
* the body is read only up to :func:`reply_byte_cap` bytes of the call's ``max_tokens`` (a
  ``Content-Length`` above it fails before reading), else it fails as
  :class:`ReplyTooLargeError` (kind ``oversized``; memory stays bounded).

The call's ``max_tokens`` reaches the transport through :data:`REPLY_CAP` (set around each call
by the client; asyncio tasks and worker threads copy context variables).
"""

from __future__ import annotations

import asyncio
import sys
import time
from contextvars import ContextVar
from typing import Any

#: Bytes of reply allowed per output token (JSON escapes and tool-call wrapping included)…
BYTES_PER_TOKEN = 16
#: …plus this much for the envelope (ids, usage, finish reason).
REPLY_MARGIN_BYTES = 256 * 1024
#: Output tokens assumed when a call sets no ``max_tokens``.
DEFAULT_REPLY_TOKENS = 8192

#: The reply-size cap in bytes of the call running in this context (``None``: the default).
REPLY_CAP: ContextVar[int | None] = ContextVar("panelsynth_reply_cap", default=None)


def reply_byte_cap(max_tokens: int | None) -> int:
    """Largest reply (bytes) a call asking for at most ``max_tokens`` output tokens may send."""
    return BYTES_PER_TOKEN * (max_tokens or DEFAULT_REPLY_TOKENS) + REPLY_MARGIN_BYTES


class ReplyTooLargeError(Exception):
    """The server sent more bytes than the call's ``max_tokens`` allows (kind ``oversized``)."""

    kind = "oversized"

    def __init__(self, cap: int) -> None:
        super().__init__(
            f"the reply exceeded {cap:,} bytes, more than max_tokens allows; it was cut off"
        )
        self.cap = cap


def _httpx() -> Any:
    """The httpx module the OpenAI SDK uses (``httpx2`` from openai 3 on, else ``httpx``)."""
    try:
        import httpx2 as mod  # type: ignore[import-not-found]
    except ImportError:
        import httpx as mod
    return mod


def _too_large(headers: Any, cap: int) -> bool:
    try:
        return int(headers.get("content-length") or 0) > cap
    except (TypeError, ValueError):
        return False


def limit_transport(inner: Any, timeout: float, *, is_async: bool, httpx: Any = None) -> Any:
    """``inner`` (an httpx transport) with a total deadline of ``timeout`` s and a size cap.

    ``httpx``: the module of ``inner`` (``httpx`` or ``httpx2``; default: the OpenAI SDK's).
    """
    httpx = httpx or _httpx()

    def deadline_error(request: Any) -> Exception:
        return httpx.ReadTimeout(
            f"the reply did not arrive in full within {timeout:g} s (generation.timeout)",
            request=request,
        )

    class SyncLimited(httpx.SyncByteStream):
        def __init__(self, stream: Any, request: Any, deadline: float, cap: int) -> None:
            self._stream, self._request, self._deadline, self._cap = stream, request, deadline, cap

        def __iter__(self) -> Any:
            size = 0
            for chunk in self._stream:
                size += len(chunk)
                if size > self._cap:
                    raise ReplyTooLargeError(self._cap)
                if time.monotonic() > self._deadline:
                    raise deadline_error(self._request)
                yield chunk

        def close(self) -> None:
            self._stream.close()

    class AsyncLimited(httpx.AsyncByteStream):
        def __init__(self, stream: Any, request: Any, deadline: float, cap: int) -> None:
            self._stream, self._request, self._deadline, self._cap = stream, request, deadline, cap

        async def __aiter__(self) -> Any:
            size = 0
            chunks = self._stream.__aiter__()
            while True:
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    raise deadline_error(self._request)
                try:
                    chunk = await asyncio.wait_for(chunks.__anext__(), remaining)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise deadline_error(self._request) from None
                size += len(chunk)
                if size > self._cap:
                    raise ReplyTooLargeError(self._cap)
                yield chunk

        async def aclose(self) -> None:
            await self._stream.aclose()

    class SyncTransport(httpx.BaseTransport):
        def handle_request(self, request: Any) -> Any:
            deadline = time.monotonic() + timeout
            cap = REPLY_CAP.get() or reply_byte_cap(None)
            response = inner.handle_request(request)
            if _too_large(response.headers, cap):
                response.close()
                raise ReplyTooLargeError(cap)
            response.stream = SyncLimited(response.stream, request, deadline, cap)
            return response

        def close(self) -> None:
            inner.close()

    class AsyncTransport(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: Any) -> Any:
            deadline = time.monotonic() + timeout
            cap = REPLY_CAP.get() or reply_byte_cap(None)
            try:
                response = await asyncio.wait_for(inner.handle_async_request(request), timeout)
            except TimeoutError:
                raise deadline_error(request) from None
            if _too_large(response.headers, cap):
                await response.aclose()
                raise ReplyTooLargeError(cap)
            response.stream = AsyncLimited(response.stream, request, deadline, cap)
            return response

        async def aclose(self) -> None:
            await inner.aclose()

    return AsyncTransport() if is_async else SyncTransport()


def limited_http_client(timeout: float, *, is_async: bool, verify: Any = True) -> Any:
    """An httpx client (of the SDK's httpx) whose requests are bounded by :func:`limit_transport`.

    Keeps the OpenAI SDK's defaults (connection limits, redirects) and its timeout.
    """
    httpx = _httpx()
    import openai

    base = openai.DefaultAsyncHttpxClient if is_async else openai.DefaultHttpxClient
    limits = getattr(openai, "DEFAULT_CONNECTION_LIMITS", None) or httpx.Limits(
        max_connections=1000, max_keepalive_connections=100
    )
    if is_async:
        inner = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    else:
        inner = httpx.HTTPTransport(verify=verify, limits=limits)
    return base(transport=limit_transport(inner, timeout, is_async=is_async), timeout=timeout)


def limit_sdk_client(sdk_client: Any, timeout: float) -> bool:
    """Wrap the transport of a Stainless-generated SDK client (OpenAI, Anthropic) in place.

    Returns whether it could (SDKs built otherwise keep their own timeouts only).
    """
    http = getattr(sdk_client, "_client", None)
    transport = getattr(http, "_transport", None)
    if transport is None:
        return False
    httpx = sys.modules.get(type(transport).__module__.split(".")[0])  # httpx or httpx2
    if httpx is None or not hasattr(httpx, "BaseTransport"):
        return False
    if isinstance(transport, httpx.AsyncBaseTransport):
        http._transport = limit_transport(transport, timeout, is_async=True, httpx=httpx)
    elif isinstance(transport, httpx.BaseTransport):
        http._transport = limit_transport(transport, timeout, is_async=False, httpx=httpx)
    else:
        return False
    return True
