"""The HTTP seam of the batch layer: httpx with the project's retry policy and key scrubbing.

Transport failures (429, 5xx, timeouts, dropped connections) are retried with
:class:`~panelsynth.llm.retry.RetryPolicy` (exponential backoff, jitter, ``Retry-After``).
A request that creates something (a batch) is retried only when the server cannot have acted
on it: the connection was never made, or the server answered 429/5xx. What is left surfaces as
:class:`~panelsynth.llm.batch.core.BatchError` with a one-line message free of keys.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from panelsynth.llm.batch.core import BatchError
from panelsynth.llm.keys import scrub
from panelsynth.llm.retry import (
    OnRetry,
    RetryPolicy,
    classify_exception,
    is_retryable,
    retry_after_seconds,
    short_message,
)

logger = logging.getLogger("panelsynth")

#: httpx failures raised before any byte of the request reached the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class HttpStatusError(Exception):
    """An HTTP error answer (status >= 400), classified like an SDK error by its status."""

    def __init__(self, response: httpx.Response, message: str) -> None:
        super().__init__(message)
        self.response = response
        self.status_code = response.status_code


def _server_message(response: httpx.Response) -> str:
    """The error message a JSON error body carries (OpenAI and Anthropic shapes), or its text."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return short_message(Exception(response.text or response.reason_phrase), 200)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        kind = error.get("type") or error.get("code") or ""
        text = error.get("message") or ""
        return short_message(Exception(f"{kind}: {text}" if kind else text), 200)
    return short_message(Exception(json.dumps(body)), 200)


class HttpApi:
    """Calls to one provider API.

    Args:
        label: Shown in messages (``openai batch``).
        base_url: API root, e.g. ``https://api.openai.com/v1``.
        headers: Headers of every request (authentication included; never logged).
        timeout: Seconds before one request is abandoned (and retried).
        policy: Transport retry policy.
        on_retry: Called as ``on_retry(kind, wait_seconds)`` before each retry.
        sleep: Waits between retries (tests pass a fake).
    """

    def __init__(
        self,
        label: str,
        base_url: str,
        headers: dict[str, str],
        *,
        timeout: float = 120.0,
        policy: RetryPolicy | None = None,
        on_retry: OnRetry | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.label = label
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers)
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self.on_retry = on_retry
        self._sleep = sleep
        self._client: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        if self._client is None:
            from panelsynth.llm.registry import shared_ssl_context

            self._client = httpx.Client(timeout=self.timeout, verify=shared_ssl_context())
        return self._client

    def close(self) -> None:
        """Close the connection pool (the next request opens a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:  # never show the headers (they hold the key)
        return f"HttpApi({self.label!r}, base_url={self.base_url!r})"

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` (relative to the base URL)."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def same_origin(self, url: str) -> bool:
        """Whether ``url`` is on the API's scheme, host and port (where the key may be sent)."""
        a, b = httpx.URL(self.base_url), httpx.URL(url)
        return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
        creates: bool = False,
    ) -> httpx.Response:
        """Send a request, retrying transport failures; return the successful response.

        Args:
            method: HTTP method.
            path: Path relative to the base URL, or an absolute URL on the same origin.
            json_body: JSON body.
            files: Multipart files (``{"file": (name, bytes, content_type)}``).
            data: Multipart form fields.
            creates: The request creates a resource: after a failure that may have reached the
                server (read timeout, dropped connection) it is not retried.

        Raises:
            BatchError: The request failed for good; ``kind`` says how.
        """
        url = path if path.startswith(("http://", "https://")) else self.url(path)
        if not self.same_origin(url):
            raise BatchError("bad_request", f"{self.label}: refusing to send the key to {url}")
        where = f"{self.label}: {method} {httpx.URL(url).path}"
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http().request(
                    method, url, headers=self._headers, json=json_body, files=files, data=data
                )
                if response.status_code >= 400:
                    raise HttpStatusError(
                        response, f"HTTP {response.status_code}: {_server_message(response)}"
                    )
                return response
            except (httpx.HTTPError, HttpStatusError) as exc:
                kind = classify_exception(exc)
                ambiguous = creates and not isinstance(exc, (*_NOT_SENT, HttpStatusError))
                message = f"{where}: {kind} ({scrub(short_message(exc))})"
                if ambiguous:
                    raise BatchError(
                        kind,
                        f"{message}; the server may have acted on it — list the provider's "
                        "batches before submitting again",
                    ) from None
                if not is_retryable(kind) or attempt >= self.policy.max_attempts:
                    suffix = f" after {attempt} attempts" if attempt > 1 else ""
                    raise BatchError(kind, message + suffix) from None
                wait = self.policy.backoff(attempt, retry_after_seconds(exc))
                logger.warning(
                    "%s; attempt %d/%d, retrying in %.2f s",
                    message,
                    attempt,
                    self.policy.max_attempts,
                    wait,
                )
                if self.on_retry is not None:
                    self.on_retry(kind, wait)
                self._sleep(wait)

    def get_json(self, path: str) -> dict[str, Any]:
        """``GET`` a JSON object."""
        return self.json_object(self.request("GET", path), path)

    def post_json(self, path: str, body: Any = None, *, creates: bool = False) -> dict[str, Any]:
        """``POST`` JSON, return the JSON object answered."""
        return self.json_object(self.request("POST", path, json_body=body, creates=creates), path)

    def json_object(self, response: httpx.Response, path: str) -> dict[str, Any]:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            body = None
        if not isinstance(body, dict):
            raise BatchError("other", f"{self.label}: {path}: the answer is not a JSON object")
        return body


def jsonl_records(text: str, source: str) -> list[dict[str, Any]]:
    """Parse JSON lines; a line that is not a JSON object is skipped with a warning."""
    out: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            out.append(obj)
        else:
            logger.warning("%s: line %d is not a JSON object; skipped", source, n)
    return out


class _StatusOnly(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status


def status_kind(status: int | None) -> str:
    """The fault kind of an HTTP status of a per-request result (200 counts as ``other``)."""
    if not isinstance(status, int) or status < 400:
        return "other"
    return classify_exception(_StatusOnly(status))
