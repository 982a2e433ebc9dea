"""Anthropic Message Batches: Messages requests with custom ids, run within 24 hours.

Wire shapes (docs.anthropic.com/en/api/creating-message-batches and neighbours):

* ``POST /v1/messages/batches`` ``{"requests": [{"custom_id", "params": {model, max_tokens,
  temperature, system, messages, tools: [{name, description, input_schema}], tool_choice:
  {"type": "tool", "name"}}}]}``; the shared prefix of the last message is its own text block
  with ``cache_control: {"type": "ephemeral"}`` (tools and system come before it, so they are
  cached with it);
* ``GET /v1/messages/batches/{id}`` -> ``processing_status`` (in_progress, canceling, ended),
  ``request_counts`` ``{processing, succeeded, errored, canceled, expired}``, ``results_url``;
* results (JSONL): ``{"custom_id", "result": {"type": "succeeded", "message"} | {"type":
  "errored", "error"} | {"type": "canceled"} | {"type": "expired"}}``;
* ``POST /v1/messages/batches/{id}/cancel``.

Anthropic takes no ``seed``; a request's seed is not sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from panelsynth.llm.base import Usage
from panelsynth.llm.batch.api import (
    BatchApi,
    ResponseModels,
    register_batch_api,
    response_model_for,
)
from panelsynth.llm.batch.core import (
    UNFINISHED,
    BatchCounts,
    BatchError,
    BatchRequest,
    BatchResult,
    BatchStatus,
    failed_result,
    validate_reply,
)
from panelsynth.llm.batch.http import jsonl_records
from panelsynth.llm.batch.job import BatchJob
from panelsynth.llm.structured import response_tokens

API_VERSION = "2023-06-01"

#: Anthropic error types -> fault kinds.
ERROR_KINDS: dict[str, str] = {
    "invalid_request_error": "bad_request",
    "not_found_error": "bad_request",
    "request_too_large": "bad_request",
    "authentication_error": "auth",
    "permission_error": "auth",
    "billing_error": "auth",
    "rate_limit_error": "rate_limit",
    "api_error": "server_error",
    "overloaded_error": "server_error",
    "timeout_error": "timeout",
}


def request_params(model: str, request: BatchRequest) -> dict[str, Any]:
    """The ``params`` of one batch request (a Messages API request)."""
    system = [m["content"] for m in request.messages if m.get("role") == "system"]
    messages: list[dict[str, Any]] = [
        {"role": m["role"], "content": m["content"]}
        for m in request.messages
        if m.get("role") != "system"
    ]
    shared = request.prefix_chars
    if messages and shared > 0:
        text = messages[-1]["content"]
        blocks: list[dict[str, Any]] = [
            {"type": "text", "text": text[:shared], "cache_control": {"type": "ephemeral"}}
        ]
        if text[shared:]:
            blocks.append({"type": "text", "text": text[shared:]})
        messages[-1] = {"role": messages[-1]["role"], "content": blocks}
    name = request.schema_name
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "messages": messages,
        "tools": [
            {
                "name": name,
                "description": (request.response_model.__doc__ or name).strip()[:1000],
                "input_schema": request.schema(),
            }
        ],
        "tool_choice": {"type": "tool", "name": name},
    }
    if system:
        params["system"] = "\n\n".join(system)
    return params


def _error_of(result: dict[str, Any]) -> tuple[str, str]:
    error = result.get("error") or {}
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]  # {"type": "error", "error": {"type", "message"}}
    if not isinstance(error, dict):
        return "", str(error)
    return str(error.get("type") or ""), str(error.get("message") or "")


def parse_result_line(record: dict[str, Any], models: ResponseModels) -> BatchResult | None:
    """One line of the results file as a validated :class:`BatchResult`."""
    cid = record.get("custom_id")
    result = record.get("result")
    if not isinstance(cid, str) or not isinstance(result, dict):
        return None
    rtype = result.get("type")
    if rtype in ("canceled", "expired"):
        return failed_result(cid, UNFINISHED, f"request {rtype} before it ran")
    if rtype == "errored":
        etype, text = _error_of(result)
        kind = ERROR_KINDS.get(etype, "other")
        if "prompt is too long" in text:
            kind = "context_overflow"
        return failed_result(cid, kind, f"{etype}: {text}", Usage(attempts=1))
    if rtype != "succeeded":
        return failed_result(cid, "other", f"unknown result type {rtype!r}")
    message = result.get("message") or {}
    tokens = response_tokens(message) or (0, 0, 0)
    usage = Usage(input_tokens=tokens[0], output_tokens=tokens[1], cached_input_tokens=tokens[2])
    raw_usage = message.get("usage") or {}
    written = int(raw_usage.get("cache_creation_input_tokens") or 0)
    stop = message.get("stop_reason")
    model = response_model_for(models, cid)
    if model is None:
        return failed_result(cid, "other", "no response model for this custom_id", usage)
    tool = next(
        (
            b
            for b in message.get("content") or []
            if isinstance(b, dict) and b.get("type") == "tool_use"
        ),
        None,
    )
    if stop == "max_tokens":
        return failed_result(
            cid,
            "truncated",
            "reply cut off by max_tokens",
            usage,
            finish_reason=stop,
            cache_write_tokens=written,
        )
    if tool is None or not isinstance(tool.get("input"), dict):
        return failed_result(
            cid,
            "invalid_output",
            "the reply has no tool call",
            usage,
            finish_reason=stop,
            cache_write_tokens=written,
        )
    return validate_reply(
        cid, tool["input"], model, usage, finish_reason=stop, cache_write_tokens=written
    )


@register_batch_api
class AnthropicBatchApi(BatchApi):
    """Anthropic Message Batches (100,000 requests or 256 MB per batch, within 24 hours)."""

    provider = "anthropic"
    default_base_url = "https://api.anthropic.com/v1"
    max_requests = 100_000
    max_bytes = 256_000_000

    def __init__(self, model: str, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._results_urls: dict[str, str] = {}  # results_url of each batch polled

    def _auth_headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key, "anthropic-version": API_VERSION}

    def request_bytes(self, request: BatchRequest) -> int:
        item = {"custom_id": request.custom_id, "params": request_params(self.model, request)}
        return len(json.dumps(item).encode())

    def batch_body(self, requests: Sequence[BatchRequest]) -> dict[str, Any]:
        """The body of the create call."""
        return {
            "requests": [
                {"custom_id": r.custom_id, "params": request_params(self.model, r)}
                for r in requests
            ]
        }

    def _submit(self, requests: Sequence[BatchRequest]) -> BatchJob:
        batch = self.api.post_json("messages/batches", self.batch_body(requests), creates=True)
        if not isinstance(batch.get("id"), str):
            raise BatchError("other", "anthropic batch: the create call returned no id")
        job = BatchJob(
            provider=self.provider,
            model=self.model,
            batch_id=batch["id"],
            custom_ids=[r.custom_id for r in requests],
        )
        job.update(self._parse_status(batch, job))
        return job

    def _parse_status(self, batch: dict[str, Any], job: BatchJob) -> BatchStatus:
        raw = str(batch.get("processing_status") or "")
        c = batch.get("request_counts") or {}
        n = {k: int(c.get(k) or 0) for k in ("processing", "succeeded", "errored", "canceled")}
        expired = int(c.get("expired") or 0)
        if raw == "in_progress":
            state = "in_progress"
        elif raw == "canceling":
            state = "cancelling"
        elif raw == "ended":
            if batch.get("cancel_initiated_at"):
                state = "cancelled"
            elif expired:
                state = "expired"
            else:
                state = "completed"
        else:
            raise BatchError("other", f"anthropic batch {job.batch_id}: unknown status {raw!r}")
        counts = BatchCounts(
            total=len(job.custom_ids),
            succeeded=n["succeeded"],
            failed=n["errored"],
            unfinished=n["canceled"] + expired,
            processing=n["processing"],
        )
        return BatchStatus(state, raw, counts)

    def _status(self, job: BatchJob) -> BatchStatus:
        batch = self.api.get_json(f"messages/batches/{job.batch_id}")
        if isinstance(batch.get("results_url"), str):
            self._results_urls[job.batch_id] = batch["results_url"]
        return self._parse_status(batch, job)

    def _results(
        self, job: BatchJob, status: BatchStatus, models: ResponseModels
    ) -> dict[str, BatchResult]:
        url = self._results_urls.get(job.batch_id)
        if url is None or not self.api.same_origin(url):
            url = f"messages/batches/{job.batch_id}/results"  # never send the key elsewhere
        text = self.api.request("GET", url).text
        found: dict[str, BatchResult] = {}
        for record in jsonl_records(text, f"anthropic batch {job.batch_id} results"):
            result = parse_result_line(record, models)
            if result is not None:
                found[result.custom_id] = result
        return found

    def _cancel(self, job: BatchJob) -> None:
        self.api.post_json(f"messages/batches/{job.batch_id}/cancel")
