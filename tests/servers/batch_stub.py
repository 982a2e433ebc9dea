"""A local stub of the OpenAI Batch and Anthropic Message Batches APIs, for tests.

The server listens on ``127.0.0.1`` (any free port) in a background thread, stops by itself after
``lifetime`` seconds (or at the end of a ``with`` block), and refuses bodies over
``max_body_bytes``. It serves:

* OpenAI: ``POST /v1/files`` (multipart, ``purpose=batch``), ``POST /v1/batches``,
  ``GET /v1/batches`` (list), ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``,
  ``GET /v1/files/{id}/content`` (input, output and error files);
* Anthropic: ``POST /v1/messages/batches``, ``GET /v1/messages/batches/{id}``,
  ``GET /v1/messages/batches/{id}/results``, ``POST /v1/messages/batches/{id}/cancel``.

Every request must carry the stub's key (``Authorization: Bearer`` / ``x-api-key``); a wrong key
gets a 401 whose message *echoes the key given*, as real servers partly do, so tests can check
that the client scrubs it.

Each request of a batch is answered with a minimal instance of the JSON schema it carries
(``response_format.json_schema.schema`` or the forced tool's ``input_schema``, built by
:func:`tests.servers.openai_stub.schema_example`), unless a knob makes it fault. The knobs pick
exact shares of a batch's requests (seeded shuffle):

* ``fail_share``: errored requests (OpenAI error file with HTTP 500/429/...; Anthropic
  ``errored``), cycling through ``fail_kinds``;
* ``invalid_share``: replies that do not validate (malformed JSON / wrong-typed tool input);
* ``truncated_share``: replies cut off by the token limit;
* ``expire_share``: requests left unfinished; the batch ends ``expired`` (OpenAI writes them to
  the error file as ``batch_expired``, Anthropic reports them ``expired``);
* ``polls_in_progress``: how many polls report the batch as still running before it ends;
* ``reject``: OpenAI batches fail validation (status ``failed`` with this error message);
* ``per_batch``: overrides of these shares for the k-th batch created (0-based), e.g.
  ``{1: {"expire_share": 0.5}}``, and ``"delay"``: seconds its creation takes;
* ``answer``: ``answer(prompt_text, schema, k) -> reply`` replaces the minimal instance of the
  schema for the requests that succeed (``k``: the batch's ordinal);
* cancel: the batch ends ``cancelled`` on the next poll; the first ``done_before_cancel`` share
  of its requests has results, the rest none (OpenAI: missing from both files; Anthropic:
  ``canceled``).

Transport faults of the API itself come from :meth:`BatchStub.script`: ``rate_limit`` (429 with
``Retry-After: 0``), ``server_error`` (500), ``drop`` (connection closed before acting) and
``drop_after`` (the request is acted on, then the connection closes without an answer); ``ok``
answers one request normally.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.servers.openai_stub import estimate_tokens, schema_example

#: Kinds of a failing request, with the OpenAI status and the Anthropic error type they get.
FAIL_KINDS: dict[str, tuple[int, str, str]] = {
    "server_error": (500, "api_error", "stub server error"),
    "rate_limit": (429, "rate_limit_error", "stub rate limit"),
    "bad_request": (400, "invalid_request_error", "stub bad request"),
    "context_overflow": (400, "invalid_request_error", "prompt is too long: context_length"),
}
#: Transport faults :meth:`BatchStub.script` accepts.
TRANSPORT_FAULTS = ("ok", "rate_limit", "server_error", "drop", "drop_after")
#: Most batches one stub keeps.
MAX_BATCHES = 1000


@dataclass
class StubBatch:
    """One batch the stub holds."""

    provider: str
    id: str
    requests: list[dict[str, Any]]  # {"custom_id", "body"} (OpenAI body / Anthropic params)
    outcomes: dict[str, str]  # custom_id -> ok/fail:<kind>/invalid/truncated/unfinished
    input_file_id: str | None = None
    created: float = field(default_factory=time.time)
    polls: int = 0
    cancel_requested: bool = False
    cancel_polls: int = 0
    state: str = ""
    output_file_id: str | None = None
    error_file_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    ordinal: int = 0  # the k-th batch the stub created


def _prompt_text(messages: list[dict[str, Any]]) -> str:
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            out.append(content)
        else:
            out.extend(b.get("text", "") for b in content or [] if isinstance(b, dict))
    return "".join(out)


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    # -- plumbing ---------------------------------------------------------------------------
    def _send(self, status: int, payload: Any, ctype: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _error(self, status: int, provider: str, kind: str, message: str) -> None:
        if provider == "anthropic":
            body = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            body = {"error": {"message": message, "type": kind, "code": kind}}
        self._send(status, body)

    def _handle(self, method: str) -> None:
        stub = self.server.stub
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/")
        provider = "anthropic" if "/messages/" in path else "openai"
        length = int(self.headers.get("Content-Length") or 0)
        if length > stub.max_body_bytes:
            self._drop()
            return
        raw = self.rfile.read(length) if length else b""
        with stub._lock:
            stub.calls.append((method, path))
            fault = stub._script.popleft() if stub._script else None
        if fault == "drop":
            self._drop()
            return
        if fault in ("rate_limit", "server_error"):
            status, kind, text = FAIL_KINDS[fault]
            self._error(status, provider, kind if provider == "anthropic" else fault, text)
            return
        given = (
            self.headers.get("x-api-key")
            if provider == "anthropic"
            else (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        )
        if given != stub.api_key:
            kind = "authentication_error" if provider == "anthropic" else "invalid_api_key"
            self._error(401, provider, kind, f"Incorrect API key provided: {given}")
            return
        status, payload, ctype = stub._route(method, path, parts.query, raw, self.headers)
        if fault == "drop_after":
            self._drop()
            return
        self._send(status, payload, ctype)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64
    stub: BatchStub


class BatchStub:
    """Both providers' batch endpoints on 127.0.0.1.

    Args:
        api_key: The only key accepted.
        polls_in_progress: Polls that report the batch running before it ends.
        fail_share: Share of each batch's requests that error (see :data:`FAIL_KINDS`).
        fail_kinds: Kinds the failing requests cycle through.
        invalid_share: Share answered with a reply that does not validate.
        truncated_share: Share answered with a reply cut off by the token limit.
        expire_share: Share left unfinished by an expiring batch.
        done_before_cancel: Share of a cancelled batch's requests that were done.
        reject: Validation error that fails every OpenAI batch (``None``: none).
        cache_min_tokens: Shortest shared prompt prefix OpenAI reports as cached.
        seed: Seed of the draws of which requests fault.
        lifetime: Seconds after which the server stops by itself.
        max_body_bytes: Largest request body accepted.

    Attributes:
        calls: ``(method, path)`` of every request received.
        batches: Batches by id.
        files: Uploaded and produced files by id.
    """

    def __init__(
        self,
        *,
        api_key: str = "sk-stub-key-0123456789abcdef",
        polls_in_progress: int = 1,
        fail_share: float = 0.0,
        fail_kinds: tuple[str, ...] = ("server_error", "rate_limit"),
        invalid_share: float = 0.0,
        truncated_share: float = 0.0,
        expire_share: float = 0.0,
        done_before_cancel: float = 0.5,
        reject: str | None = None,
        cache_min_tokens: int = 1024,
        seed: int = 0,
        lifetime: float = 120.0,
        max_body_bytes: int = 50_000_000,
    ) -> None:
        shares = (fail_share, invalid_share, truncated_share, expire_share)
        if any(s < 0 for s in shares) or sum(shares) > 1.0 + 1e-9:
            raise ValueError("fault shares must be non-negative and sum to at most 1")
        for kind in fail_kinds:
            if kind not in FAIL_KINDS:
                raise ValueError(f"unknown fail kind {kind!r}; known: {', '.join(FAIL_KINDS)}")
        self.api_key = api_key
        self.polls_in_progress = polls_in_progress
        self.fail_share = fail_share
        self.fail_kinds = fail_kinds
        self.invalid_share = invalid_share
        self.truncated_share = truncated_share
        self.expire_share = expire_share
        self.done_before_cancel = done_before_cancel
        self.reject = reject
        self.cache_min_tokens = cache_min_tokens
        self.seed = seed
        self.lifetime = lifetime
        self.max_body_bytes = max_body_bytes
        self.per_batch: dict[int, dict[str, float]] = {}
        self.answer: Callable[[str, dict[str, Any] | None, int], Any] | None = None
        self.calls: list[tuple[str, str]] = []
        self.batches: dict[str, StubBatch] = {}
        self.files: dict[str, bytes] = {}
        self._script: deque[str] = deque()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> BatchStub:
        """Bind a free port on 127.0.0.1 and serve until :meth:`stop` or ``lifetime``."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.stub = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent; also called by the lifetime timer)."""
        with self._lock:
            server, self._server = self._server, None
            timer, self._timer = self._timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> BatchStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` (both providers)."""
        if self._server is None:
            raise RuntimeError("BatchStub is not running; call start() or use `with`")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # -- knobs and books ---------------------------------------------------------------------
    def script(self, *faults: str) -> BatchStub:
        """Queue transport faults for the next API requests, in order."""
        for f in faults:
            if f not in TRANSPORT_FAULTS:
                raise ValueError(f"unknown fault {f!r}; known: {', '.join(TRANSPORT_FAULTS)}")
        with self._lock:
            self._script.extend(faults)
        return self

    def creations(self, provider: str | None = None) -> int:
        """How many batches were created (for one provider, or all)."""
        return sum(1 for b in self.batches.values() if provider in (None, b.provider))

    def outcomes(self, batch_id: str) -> dict[str, str]:
        """What the stub decided for each request of a batch."""
        return dict(self.batches[batch_id].outcomes)

    # -- routing ---------------------------------------------------------------------------
    def _route(
        self, method: str, path: str, query: str, raw: bytes, headers: Any
    ) -> tuple[int, Any, str]:
        segs = [s for s in path.split("/") if s][1:]  # drop "v1"
        json_type = "application/json"
        try:
            if segs == ["files"] and method == "POST":
                return 200, self._upload(raw, headers.get("Content-Type") or ""), json_type
            if len(segs) == 3 and segs[0] == "files" and segs[2] == "content" and method == "GET":
                data = self.files.get(segs[1])
                if data is None:
                    return 404, {"error": {"message": "no such file"}}, json_type
                return 200, data, "application/jsonl"
            if segs == ["batches"] and method == "POST":
                return 200, self._openai_create(json.loads(raw or b"{}")), json_type
            if segs == ["batches"] and method == "GET":
                data = [self._openai_view(b) for b in reversed(list(self.batches.values()))]
                data = [d for d in data if d is not None]
                return 200, {"object": "list", "data": data}, json_type
            if segs == ["messages", "batches"] and method == "POST":
                return 200, self._anthropic_create(json.loads(raw or b"{}")), json_type
            if segs[:2] == ["messages", "batches"] and len(segs) >= 3:
                return self._anthropic_route(method, segs[2], segs[3:])
            if segs[:1] == ["batches"] and len(segs) >= 2:
                return self._openai_route(method, segs[1], segs[2:])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            return 400, {"error": {"message": f"bad request: {err}"}}, json_type
        return 404, {"error": {"message": f"unknown path {path}"}}, json_type

    def _new_batch(self, provider: str, requests: list[dict[str, Any]]) -> StubBatch:
        if len(self.batches) >= MAX_BATCHES:
            raise ValueError("too many batches")
        ids = [r["custom_id"] for r in requests]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate custom_id")
        ordinal = len(self.batches)
        knobs = {
            "fail_share": self.fail_share,
            "invalid_share": self.invalid_share,
            "truncated_share": self.truncated_share,
            "expire_share": self.expire_share,
            "delay": 0.0,
            **self.per_batch.get(ordinal, {}),
        }
        if knobs["delay"]:
            time.sleep(knobs["delay"])
        rng = random.Random(self.seed * 1000 + ordinal)
        order = list(ids)
        rng.shuffle(order)
        n = len(order)
        outcomes = {cid: "ok" for cid in ids}
        pos = 0
        n_fail = round(knobs["fail_share"] * n)
        for i, cid in enumerate(order[pos : pos + n_fail]):
            outcomes[cid] = "fail:" + self.fail_kinds[i % len(self.fail_kinds)]
        pos += n_fail
        for share, label in (
            (knobs["invalid_share"], "invalid"),
            (knobs["truncated_share"], "truncated"),
            (knobs["expire_share"], "unfinished"),
        ):
            k = round(share * n)
            for cid in order[pos : pos + k]:
                outcomes[cid] = label
            pos += k
        prefix = "batch_" if provider == "openai" else "msgbatch_"
        batch = StubBatch(provider, prefix + uuid.uuid4().hex[:24], requests, outcomes)
        batch.ordinal = ordinal
        with self._lock:
            self.batches[batch.id] = batch
        return batch

    def _advance(self, batch: StubBatch) -> str:
        """One poll: ``running``, ``cancelling`` or the final state (``completed``/...)."""
        if batch.state in ("completed", "expired", "cancelled", "failed"):
            return batch.state
        if batch.cancel_requested:
            batch.cancel_polls += 1
            if batch.cancel_polls == 1:
                return "cancelling"
            self._finish(batch, "cancelled")
            return batch.state
        batch.polls += 1
        if batch.polls <= self.polls_in_progress:
            return "running"
        unfinished = any(v == "unfinished" for v in batch.outcomes.values())
        self._finish(batch, "expired" if unfinished else "completed")
        return batch.state

    def _finish(self, batch: StubBatch, state: str) -> None:
        if state == "cancelled":
            done = round(self.done_before_cancel * len(batch.requests))
            for r in batch.requests[done:]:
                batch.outcomes[r["custom_id"]] = "cancelled"
        batch.state = state
        if batch.provider == "openai":
            out, err = self._openai_files(batch)
            if out:
                batch.output_file_id = "file-out-" + uuid.uuid4().hex[:12]
                self.files[batch.output_file_id] = out
            if err:
                batch.error_file_id = "file-err-" + uuid.uuid4().hex[:12]
                self.files[batch.error_file_id] = err

    def _counts(self, batch: StubBatch, running: bool) -> dict[str, int]:
        n = len(batch.requests)
        if running:
            done = n * batch.polls // (self.polls_in_progress + 1)
            return {"done": done, "failed": 0, "unfinished": 0, "processing": n - done}
        values = list(batch.outcomes.values())
        failed = sum(v.startswith("fail:") for v in values)
        unfinished = sum(v in ("unfinished", "cancelled") for v in values)
        return {
            "done": n - failed - unfinished,
            "failed": failed,
            "unfinished": unfinished,
            "processing": 0,
        }

    # -- answers -----------------------------------------------------------------------------
    def _reply(self, schema: dict[str, Any] | None, outcome: str, prompt: str, k: int) -> Any:
        if self.answer is not None and outcome != "invalid":
            value = self.answer(prompt, schema, k)
        else:
            value = schema_example(schema) if schema else {}
        if outcome == "invalid":
            props = (schema or {}).get("properties") or {"value": {}}
            return {k: {"wrong": "type"} for k in props}
        return value

    # OpenAI ---------------------------------------------------------------------------------
    def _upload(self, raw: bytes, ctype: str) -> dict[str, Any]:
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
        )
        fields: dict[str, bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = part.get_payload(decode=True) or b""
        if fields.get("purpose") != b"batch" or "file" not in fields:
            raise ValueError("expected multipart fields purpose=batch and file")
        for line in fields["file"].decode().splitlines():
            if line.strip():
                json.loads(line)  # every line must be JSON
        file_id = "file-" + uuid.uuid4().hex[:24]
        self.files[file_id] = fields["file"]
        return {"id": file_id, "object": "file", "purpose": "batch", "bytes": len(fields["file"])}

    def _openai_create(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            raise ValueError("endpoint must be /v1/chat/completions, completion_window 24h")
        data = self.files[body["input_file_id"]]
        lines = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
        for line in lines:
            if line.get("method") != "POST" or line.get("url") != "/v1/chat/completions":
                raise ValueError("every line needs method POST and url /v1/chat/completions")
        batch = self._new_batch(
            "openai", [{"custom_id": x["custom_id"], "body": x["body"]} for x in lines]
        )
        batch.input_file_id = body["input_file_id"]
        batch.metadata = dict(body.get("metadata") or {})
        if self.reject:
            batch.state = "failed"
        return self._openai_view(batch, "validating")

    def _openai_view(self, batch: StubBatch, phase: str | None = None) -> dict[str, Any] | None:
        if batch.provider != "openai":
            return None
        status = phase or batch.state or "in_progress"
        running = status in ("validating", "in_progress", "finalizing", "cancelling")
        c = self._counts(batch, running)
        errors = None
        if batch.state == "failed":
            error = {"code": "invalid_request", "message": self.reject, "line": 1, "param": None}
            errors = {"object": "list", "data": [error]}
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": errors,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": status,
            "output_file_id": None if running else batch.output_file_id,
            "error_file_id": None if running else batch.error_file_id,
            "created_at": int(batch.created),
            "request_counts": {
                "total": len(batch.requests),
                "completed": c["done"],
                "failed": c["failed"],
            },
            "metadata": batch.metadata,
        }

    def _openai_route(self, method: str, batch_id: str, rest: list[str]) -> tuple[int, Any, str]:
        batch = self.batches.get(batch_id)
        if batch is None or batch.provider != "openai":
            return (
                404,
                {"error": {"message": f"No batch found with id '{batch_id}'"}},
                "application/json",
            )
        if method == "POST" and rest == ["cancel"]:
            if batch.state not in ("completed", "expired", "cancelled"):
                batch.cancel_requested = True
            return 200, self._openai_view(batch, batch.state or "cancelling"), "application/json"
        if method == "GET" and not rest:
            phase = self._advance(batch)
            phase = "in_progress" if phase == "running" else phase
            return 200, self._openai_view(batch, phase), "application/json"
        return 404, {"error": {"message": "unknown batch path"}}, "application/json"

    def _openai_files(self, batch: StubBatch) -> tuple[bytes, bytes]:
        out: list[str] = []
        err: list[str] = []
        first = _prompt_text(batch.requests[0]["body"].get("messages", []))
        for i, r in enumerate(batch.requests):
            cid, body = r["custom_id"], r["body"]
            outcome = batch.outcomes[cid]
            line: dict[str, Any] = {"id": f"batch_req_{i}", "custom_id": cid}
            if outcome == "cancelled":
                continue  # unprocessed requests of a cancelled batch are in neither file
            if outcome == "unfinished":
                line["response"] = None
                line["error"] = {"code": "batch_expired", "message": "This request expired."}
                err.append(json.dumps(line))
                continue
            if outcome.startswith("fail:"):
                status, _, text = FAIL_KINDS[outcome[5:]]
                code = "context_length_exceeded" if outcome.endswith("overflow") else outcome[5:]
                line["response"] = {
                    "status_code": status,
                    "request_id": f"req_{i}",
                    "body": {"error": {"message": text, "type": outcome[5:], "code": code}},
                }
                line["error"] = None
                err.append(json.dumps(line))
                continue
            schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
            prompt = _prompt_text(body.get("messages", []))
            text = json.dumps(self._reply(schema, outcome, prompt, batch.ordinal))
            finish = "stop"
            if outcome == "invalid":
                text = text[: max(1, len(text) // 2)] + ' "oops'
            elif outcome == "truncated":
                text, finish = text[: max(1, len(text) // 2)], "length"
            shared = estimate_tokens(prompt[: _common_prefix(prompt, first)]) if i else 0
            cached = shared if shared >= self.cache_min_tokens else 0
            line["response"] = {
                "status_code": 200,
                "request_id": f"req_{i}",
                "body": {
                    "id": f"chatcmpl-{i}",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text, "refusal": None},
                            "finish_reason": finish,
                        }
                    ],
                    "usage": {
                        "prompt_tokens": estimate_tokens(prompt),
                        "completion_tokens": estimate_tokens(text),
                        "total_tokens": estimate_tokens(prompt) + estimate_tokens(text),
                        "prompt_tokens_details": {"cached_tokens": cached},
                    },
                },
            }
            line["error"] = None
            out.append(json.dumps(line))
        return (
            ("\n".join(out) + "\n").encode() if out else b"",
            ("\n".join(err) + "\n").encode() if err else b"",
        )

    # Anthropic ------------------------------------------------------------------------------
    def _anthropic_create(self, body: dict[str, Any]) -> dict[str, Any]:
        requests = body["requests"]
        if not isinstance(requests, list) or not requests:
            raise ValueError("requests must be a non-empty list")
        for r in requests:
            params = r["params"]
            if not params.get("model") or int(params.get("max_tokens", 0)) < 1:
                raise ValueError(f"{r.get('custom_id')}: params need model and max_tokens")
        batch = self._new_batch(
            "anthropic", [{"custom_id": r["custom_id"], "body": r["params"]} for r in requests]
        )
        return self._anthropic_view(batch, "in_progress")

    def _anthropic_view(self, batch: StubBatch, phase: str) -> dict[str, Any]:
        status = {"running": "in_progress", "cancelling": "canceling"}.get(phase, phase)
        ended = status not in ("in_progress", "canceling")
        c = self._counts(batch, not ended)
        values = list(batch.outcomes.values())
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "ended" if ended else status,
            "request_counts": {
                "processing": c["processing"] if not ended else 0,
                "succeeded": c["done"],
                "errored": c["failed"],
                "canceled": sum(v == "cancelled" for v in values) if ended else 0,
                "expired": sum(v == "unfinished" for v in values) if ended else 0,
            },
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch.created)),
            "cancel_initiated_at": "2026-01-01T00:00:00Z" if batch.cancel_requested else None,
            "ended_at": "2026-01-01T00:00:00Z" if ended else None,
            "results_url": f"{self.base_url}/messages/batches/{batch.id}/results"
            if ended
            else None,
        }

    def _anthropic_route(self, method: str, batch_id: str, rest: list[str]) -> tuple[int, Any, str]:
        batch = self.batches.get(batch_id)
        not_found = {"type": "error", "error": {"type": "not_found_error", "message": batch_id}}
        if batch is None or batch.provider != "anthropic":
            return 404, not_found, "application/json"
        if method == "POST" and rest == ["cancel"]:
            if batch.state not in ("completed", "expired", "cancelled"):
                batch.cancel_requested = True
            return 200, self._anthropic_view(batch, batch.state or "cancelling"), "application/json"
        if method == "GET" and not rest:
            return 200, self._anthropic_view(batch, self._advance(batch)), "application/json"
        if method == "GET" and rest == ["results"]:
            if not batch.state:
                return (
                    400,
                    {
                        "type": "error",
                        "error": {"type": "invalid_request_error", "message": "batch not ended"},
                    },
                    "application/json",
                )
            return 200, self._anthropic_results(batch), "application/x-jsonl"
        return 404, not_found, "application/json"

    def _anthropic_results(self, batch: StubBatch) -> bytes:
        lines = []
        written = False
        for r in batch.requests:
            cid, params = r["custom_id"], r["body"]
            outcome = batch.outcomes[cid]
            if outcome in ("unfinished", "cancelled"):
                rtype = "expired" if outcome == "unfinished" else "canceled"
                lines.append({"custom_id": cid, "result": {"type": rtype}})
                continue
            if outcome.startswith("fail:"):
                _, etype, text = FAIL_KINDS[outcome[5:]]
                error = {"type": "error", "error": {"type": etype, "message": text}}
                lines.append({"custom_id": cid, "result": {"type": "errored", "error": error}})
                continue
            tools = params.get("tools") or [{}]
            schema = tools[0].get("input_schema")
            prompt = _prompt_text(params.get("messages", []))
            reply = self._reply(schema, outcome, prompt, batch.ordinal)
            stop = "tool_use"
            if outcome == "truncated":
                reply, stop = {}, "max_tokens"
            messages = params.get("messages", [])
            total = estimate_tokens(
                json.dumps(tools) + str(params.get("system", "")) + _prompt_text(messages)
            )
            prefix = 0
            for m in messages:
                for block in m.get("content") if isinstance(m.get("content"), list) else []:
                    if isinstance(block, dict) and block.get("cache_control"):
                        prefix = estimate_tokens(
                            json.dumps(tools) + str(params.get("system", "")) + block["text"]
                        )
            usage = {
                "input_tokens": total - prefix,
                "output_tokens": estimate_tokens(json.dumps(reply)),
                "cache_creation_input_tokens": prefix if prefix and not written else 0,
                "cache_read_input_tokens": prefix if prefix and written else 0,
            }
            written = written or bool(prefix)
            message = {
                "id": "msg_" + cid,
                "type": "message",
                "role": "assistant",
                "model": params.get("model"),
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_" + cid,
                        "name": tools[0].get("name"),
                        "input": reply,
                    }
                ],
                "stop_reason": stop,
                "usage": usage,
            }
            lines.append({"custom_id": cid, "result": {"type": "succeeded", "message": message}})
        return ("\n".join(json.dumps(x) for x in lines) + "\n").encode()


@contextmanager
def serve_batch_stub(**kwargs: Any) -> Iterator[BatchStub]:
    """Run a :class:`BatchStub` for the duration of a ``with`` block."""
    stub = BatchStub(**kwargs)
    stub.start()
    try:
        yield stub
    finally:
        stub.stop()


__all__ = ["FAIL_KINDS", "TRANSPORT_FAULTS", "BatchStub", "StubBatch", "serve_batch_stub"]
