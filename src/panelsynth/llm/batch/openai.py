"""OpenAI Batch API: a JSONL file of chat-completion requests, uploaded, run within 24 hours.

Wire shapes (platform.openai.com/docs/api-reference/batch):

* input line: ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {model,
  messages, max_completion_tokens, temperature, seed, response_format: {"type": "json_schema",
  "json_schema": {"name", "strict": true, "schema"}}}}``;
* ``POST /v1/files`` (multipart, ``purpose=batch``) -> ``{"id": "file-..."}``;
* ``POST /v1/batches`` ``{input_file_id, endpoint, completion_window: "24h", metadata}``;
* ``GET /v1/batches/{id}`` -> ``status`` (validating, in_progress, finalizing, completed, failed,
  expired, cancelling, cancelled), ``request_counts`` ``{total, completed, failed}``,
  ``output_file_id``, ``error_file_id``, ``errors``;
* ``GET /v1/files/{id}/content`` -> JSONL of ``{"custom_id", "response": {"status_code",
  "body"}, "error"}``; unfinished requests of an expired batch come back in the error file with
  ``error.code == "batch_expired"`` (``batch_cancelled`` after a cancel);
* ``POST /v1/batches/{id}/cancel``.
"""

from __future__ import annotations

import json
import uuid
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
from panelsynth.llm.batch.http import jsonl_records, status_kind
from panelsynth.llm.batch.job import BatchJob
from panelsynth.llm.batch.schema import strict_json_schema

ENDPOINT = "/v1/chat/completions"
_UNFINISHED_CODES = frozenset({"batch_expired", "batch_cancelled"})
_STATES = {
    "validating": "validating",
    "in_progress": "in_progress",
    "finalizing": "finalizing",
    "completed": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelling": "cancelling",
    "cancelled": "cancelled",
}
#: Metadata key that lets a submission whose answer was lost be found again.
SUBMISSION_KEY = "panelsynth_submission"


def request_line(model: str, request: BatchRequest) -> dict[str, Any]:
    """The JSONL input line of one request."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [dict(m) for m in request.messages],
        "max_completion_tokens": request.max_tokens,
        "temperature": request.temperature,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": request.schema_name,
                "strict": True,
                "schema": strict_json_schema(request.schema()),
            },
        },
    }
    if request.seed is not None:
        body["seed"] = request.seed
    return {"custom_id": request.custom_id, "method": "POST", "url": ENDPOINT, "body": body}


def _error_text(error: Any) -> tuple[str, str]:
    if isinstance(error, dict):
        return str(error.get("code") or error.get("type") or ""), str(error.get("message") or "")
    return "", str(error or "")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage(body: dict[str, Any]) -> Usage:
    """Billed tokens of a chat-completion body (``prompt_tokens`` include cached ones)."""
    raw = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(raw, dict):
        return Usage()
    details = raw.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return Usage(
        input_tokens=_int(raw.get("prompt_tokens")),
        output_tokens=_int(raw.get("completion_tokens")),
        cached_input_tokens=cached,
    )


def parse_output_line(record: dict[str, Any], models: ResponseModels) -> BatchResult | None:
    """One line of an output or error file as a validated :class:`BatchResult`."""
    cid = record.get("custom_id")
    if not isinstance(cid, str):
        return None
    code, text = _error_text(record.get("error"))
    if record.get("error"):
        if code in _UNFINISHED_CODES:
            return failed_result(cid, UNFINISHED, f"{code}: {text}")
        return failed_result(cid, "other", f"{code}: {text}")
    response = record.get("response") or {}
    body = response.get("body") or {}
    status = response.get("status_code")
    usage = _usage(body)
    if status != 200:
        code, text = _error_text(body.get("error"))
        kind = status_kind(status)
        if "context_length" in code or "context_length" in text:
            kind = "context_overflow"
        return failed_result(cid, kind, f"HTTP {status}: {code}: {text}", usage)
    model = response_model_for(models, cid)
    try:
        choice = body["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        return failed_result(cid, "invalid_output", "the response has no message", usage)
    finish = choice.get("finish_reason")
    if message.get("refusal"):
        return failed_result(cid, "invalid_output", f"refused: {message['refusal']}", usage)
    if model is None:
        return failed_result(cid, "other", "no response model for this custom_id", usage)
    content = message.get("content")
    if not isinstance(content, str):
        return failed_result(cid, "invalid_output", "the response has no text content", usage)
    return validate_reply(
        cid, content, model, usage, finish_reason=finish, truncated=finish == "length"
    )


@register_batch_api
class OpenAIBatchApi(BatchApi):
    """The OpenAI Batch API (50,000 requests and 200 MB per batch, results within 24 hours)."""

    provider = "openai"
    default_base_url = "https://api.openai.com/v1"
    max_requests = 50_000
    max_bytes = 200_000_000

    def _auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def request_bytes(self, request: BatchRequest) -> int:
        return len(json.dumps(request_line(self.model, request), ensure_ascii=False).encode())

    def jsonl(self, requests: Sequence[BatchRequest]) -> bytes:
        """The input file of ``requests``."""
        lines = (json.dumps(request_line(self.model, r), ensure_ascii=False) for r in requests)
        return ("\n".join(lines) + "\n").encode("utf-8")

    def _submit(self, requests: Sequence[BatchRequest]) -> BatchJob:
        upload = self.api.request(
            "POST",
            "files",
            files={"file": ("panelsynth-batch.jsonl", self.jsonl(requests), "application/jsonl")},
            data={"purpose": "batch"},
        )
        file_id = self.api.json_object(upload, "files").get("id")
        if not isinstance(file_id, str):
            raise BatchError("other", "openai batch: the file upload returned no id")
        token = uuid.uuid4().hex
        body = {
            "input_file_id": file_id,
            "endpoint": ENDPOINT,
            "completion_window": "24h",
            "metadata": {SUBMISSION_KEY: token},
        }
        try:
            batch = self.api.post_json("batches", body, creates=True)
        except BatchError as err:
            if err.kind not in ("timeout", "connection"):
                raise
            batch = self._find_submission(token)  # the answer was lost: did it get created?
            if batch is None:
                raise
        job = BatchJob(
            provider=self.provider,
            model=self.model,
            batch_id=str(batch["id"]),
            custom_ids=[r.custom_id for r in requests],
            input_file_id=file_id,
        )
        job.update(self._parse_status(batch, job))
        return job

    def _find_submission(self, token: str) -> dict[str, Any] | None:
        """The recent batch created with metadata ``token``, if there is one."""
        try:
            listing = self.api.get_json("batches?limit=100")
        except BatchError:
            return None
        for batch in listing.get("data") or []:
            if (
                isinstance(batch, dict)
                and (batch.get("metadata") or {}).get(SUBMISSION_KEY) == token
            ):
                return batch
        return None

    def _parse_status(self, batch: dict[str, Any], job: BatchJob) -> BatchStatus:
        raw = str(batch.get("status") or "")
        state = _STATES.get(raw)
        if state is None:
            raise BatchError("other", f"openai batch {job.batch_id}: unknown status {raw!r}")
        counts = batch.get("request_counts") or {}
        total = int(counts.get("total") or len(job.custom_ids))
        done, failed = int(counts.get("completed") or 0), int(counts.get("failed") or 0)
        rest = max(0, total - done - failed)
        terminal = state in ("completed", "failed", "expired", "cancelled")
        job.output_file_id = batch.get("output_file_id") or job.output_file_id
        job.error_file_id = batch.get("error_file_id") or job.error_file_id
        errors = (batch.get("errors") or {}).get("data") or []
        message = "; ".join(
            f"{e.get('code')}: {e.get('message')}"
            + (f" (line {e['line']})" if e.get("line") else "")
            for e in errors
            if isinstance(e, dict)
        )
        return BatchStatus(
            state,
            raw,
            BatchCounts(
                total=total,
                succeeded=done,
                failed=failed,
                unfinished=rest if terminal else 0,
                processing=0 if terminal else rest,
            ),
            message[:500],
        )

    def _status(self, job: BatchJob) -> BatchStatus:
        return self._parse_status(self.api.get_json(f"batches/{job.batch_id}"), job)

    def _results(
        self, job: BatchJob, status: BatchStatus, models: ResponseModels
    ) -> dict[str, BatchResult]:
        found: dict[str, BatchResult] = {}
        # errors first: a request in both files (it should not be) keeps its result
        for file_id in (job.error_file_id, job.output_file_id):
            if not file_id:
                continue
            text = self.api.request("GET", f"files/{file_id}/content").text
            for record in jsonl_records(text, f"openai file {file_id}"):
                result = parse_output_line(record, models)
                if result is not None:
                    found[result.custom_id] = result
        return found

    def _cancel(self, job: BatchJob) -> None:
        self.api.post_json(f"batches/{job.batch_id}/cancel")
