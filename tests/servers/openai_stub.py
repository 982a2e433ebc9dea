"""A reusable OpenAI-compatible chat-completions server for tests and benchmarks.

The server listens on ``127.0.0.1`` (port 0, i.e. any free port) in a background thread and answers
``POST /v1/chat/completions`` (and ``GET /v1/models``). It serves concurrent requests
(``ThreadingHTTPServer``), so a per-call ``latency`` measures client concurrency honestly.

What a reply contains:

* the ``responder(request_json)`` callback returns the *content*: a ``dict``/``list`` (sent as
  JSON) or a ``str`` (sent verbatim, which is how to send malformed JSON). Without a responder the
  server builds a minimal valid instance of the JSON schema found in the request (tool parameters
  or ``response_format.json_schema``), so Instructor's TOOLS, JSON_SCHEMA and JSON modes all work.
* if the request carries ``tools`` the content goes into a tool call (Instructor ``TOOLS`` mode),
  otherwise into ``message.content`` (``JSON`` / ``JSON_SCHEMA`` / ``MD_JSON`` modes).
* ``usage`` (prompt/completion/total tokens, estimated as characters / 4) and ``finish_reason``.

Faults (see :data:`FAULT_KINDS`) come either from a scripted sequence (:meth:`OpenAIStub.script`,
consumed first, ``None`` meaning "answer normally") or, when the script is empty, from seeded
probabilities ``fault_rates={"rate_limit": 0.1, "drop": 0.05}``. Every request is recorded in
:attr:`OpenAIStub.requests` with the fault it received.

A stub built with ``rejects=("json_schema",)`` answers requests carrying that structured-output
form the way llama-cpp-python's server does (HTTP 500 whose body is the request validation
error naming ``response_format.type``); ``rejects`` may also name ``json_object`` and ``tools``.
Such answers are recorded with the fault ``"rejected"``.

Example::

    with OpenAIStub(responder=lambda req: {"name": "x"}) as stub:
        stub.script("rate_limit", "drop")      # 1st call 429, 2nd dropped, then normal
        client = openai.OpenAI(base_url=stub.base_url, api_key="x")
        ...
        assert len(stub.requests) == 3
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], Any]

#: Fault kinds the server can inject.
FAULT_KINDS: tuple[str, ...] = (
    "rate_limit",  # 429 with a Retry-After header (seconds, or an HTTP-date)
    "server_error",  # 500
    "unavailable",  # 503
    "drop",  # the connection is closed without any response
    "malformed",  # 200 whose content (or tool arguments) is not valid JSON
    "truncated",  # 200 whose reply is cut off: finish_reason "length", content incomplete
    "stall",  # no answer for `stall_seconds` (past the client's timeout), then the connection drops
    "bad_request",  # 400
    "auth",  # 401
)

#: Faults that test the client's limits, not part of the random fault mix (too slow or too big).
LIMIT_FAULT_KINDS: tuple[str, ...] = (
    "trickle",  # 200 whose headers come at once and whose body then comes one byte at a time
    "huge",  # 200 whose body never ends (no length; closed only when the client stops reading)
)


@dataclass
class Fault:
    """One injected fault with optional parameters.

    Attributes:
        kind: One of :data:`FAULT_KINDS`.
        retry_after: ``Retry-After`` header value for ``rate_limit``/``unavailable`` (a number of
            seconds such as ``"0.05"`` or an HTTP-date); ``None`` uses the server default.
        message: Error message of an HTTP error fault (default ``"stub <kind>"``).
    """

    kind: str
    retry_after: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS + LIMIT_FAULT_KINDS:
            known = ", ".join(FAULT_KINDS + LIMIT_FAULT_KINDS)
            raise ValueError(f"unknown fault {self.kind!r}; known: {known}")


@dataclass
class RecordedRequest:
    """A request the server received, and what it answered."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    fault: str | None
    started: float
    finished: float = 0.0


@dataclass
class _Config:
    responder: Responder | None
    latency: float
    fault_rates: dict[str, float]
    retry_after: str | None
    stall_seconds: float
    model: str
    rng: random.Random
    fault_filter: Callable[[dict[str, Any]], bool] | None = None
    script: deque[Fault | None] = field(default_factory=deque)
    trickle_seconds: float = 1.0
    usage: Callable[[dict[str, int]], dict[str, Any] | None] | None = None
    #: bytes a ``huge`` reply sent before the client stopped reading (per request, in order)
    huge_sent: list[int] = field(default_factory=list)
    rejects: tuple[str, ...] = ()


def estimate_tokens(text: str) -> int:
    """The stub's token estimate: ``ceil(len(text) / 4)``, at least 1 for non-empty text."""
    return (len(text) + 3) // 4


def schema_example(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """Build a minimal instance that validates against a (Pydantic-generated) JSON schema.

    Enums take their first value, numbers their lower bound, arrays their ``minItems`` (at least
    1) copies of an example item, objects all their properties.

    Args:
        schema: The JSON schema (may contain ``$defs`` and ``$ref``).
        defs: Definitions inherited from the enclosing schema.

    Returns:
        A JSON-compatible value.
    """
    defs = {**(defs or {}), **schema.get("$defs", {})}
    if "$ref" in schema:
        return schema_example(defs[schema["$ref"].split("/")[-1]], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return schema_example(options[0], defs)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {k: schema_example(v, defs) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        n = max(1, int(schema.get("minItems", 1)))
        return [schema_example(schema.get("items", {}), defs) for _ in range(n)]
    if kind == "integer":
        return int(schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1))
    if kind == "number":
        return float(schema.get("minimum", 0.0))
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return "x"


def request_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a chat-completions request asks for, if it carries one.

    Looks at the first tool's ``function.parameters`` and at
    ``response_format.json_schema.schema`` (or ``response_format.schema``).
    """
    tools = body.get("tools") or []
    if tools:
        return tools[0].get("function", {}).get("parameters")
    fmt = body.get("response_format") or {}
    if isinstance(fmt.get("json_schema"), dict):
        return fmt["json_schema"].get("schema")
    return fmt.get("schema")


#: Structured-output forms a stub can reject, and the literal values the server then accepts.
REJECTABLE: tuple[str, ...] = ("json_schema", "json_object", "tools")


def rejection(body: dict[str, Any], rejects: tuple[str, ...]) -> str | None:
    """The error message a server that does not support ``rejects`` gives for ``body``.

    The text is the one llama-cpp-python's server (0.3.x, FastAPI) returns with HTTP 500 for a
    ``response_format`` whose type it does not know: the request validation error, with the
    field's location and the values it accepts.
    """
    fmt = body.get("response_format") or {}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in rejects and kind in ("json_schema", "json_object"):
        allowed = [k for k in ("text", "json_object", "json_schema") if k not in rejects]
        expected = " or ".join(f"'{k}'" for k in allowed)
        err = {
            "type": "literal_error",
            "loc": ("body", "response_format", "type"),
            "msg": f"Input should be {expected}",
            "input": kind,
            "ctx": {"expected": expected},
        }
        return (
            f'1 validation error:\n  {err}\n\n  File "llama_cpp/server/app.py", line 376, in '
            f"create_chat_completion\n    POST /v1/chat/completions"
        )
    if "tools" in rejects and body.get("tools"):
        return (
            "1 validation error:\n  {'type': 'extra_forbidden', 'loc': ('body', 'tools'), "
            "'msg': 'Extra inputs are not permitted'}\n"
        )
    return None


def default_responder(body: dict[str, Any]) -> Any:
    """Answer with a minimal instance of the requested schema (``{}`` when there is none)."""
    schema = request_schema(body)
    return schema_example(schema) if schema else {}


class _Handler(BaseHTTPRequestHandler):
    server: _StubHTTPServer
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every keep-alive call, which real servers do not
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        stub = self.server.stub
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(200, {"object": "list", "data": [{"id": stub.config.model}]})
        else:
            self._send_json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        stub = self.server.stub
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send_json(400, {"error": {"message": "request body is not JSON"}})
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(404, {"error": {"message": f"unknown path {self.path}"}})
            return
        rejected = rejection(body, stub.config.rejects) if stub.config.rejects else None
        fault = None if rejected else stub._next_fault(body)
        record = RecordedRequest(
            path=self.path,
            body=body,
            headers={k.lower(): v for k, v in self.headers.items()},
            fault="rejected" if rejected else (fault.kind if fault else None),
            started=time.monotonic(),
        )
        with stub._lock:
            stub.requests.append(record)
        if rejected:
            payload = {
                "message": rejected,
                "type": "internal_server_error",
                "param": None,
                "code": None,
            }
            self._send_json(500, {"error": payload}, {"x-should-retry": "false"})
            record.finished = time.monotonic()
            return
        try:
            self._answer(stub, body, fault, record.started)
        finally:
            record.finished = time.monotonic()

    def _answer(
        self, stub: OpenAIStub, body: dict[str, Any], fault: Fault | None, arrived: float
    ) -> None:
        cfg = stub.config
        kind = fault.kind if fault else None
        # The reply is built first and sent ``latency`` seconds after the request arrived: the
        # latency is the server's whole time per call, its own work included (as for a model
        # server), so concurrent calls do not queue behind the stub's Python.
        reply = self._completion(stub, body, kind) if kind in _ANSWERING else None
        wait = max(0.0, cfg.latency - (time.monotonic() - arrived))
        if cfg.latency > 0 and stub._stop.wait(wait):
            self._drop()
            return
        if kind == "stall":
            stub._stop.wait(cfg.stall_seconds)
            self._drop()
            return
        if kind == "drop":
            self._drop()
            return
        if kind == "trickle":
            self._trickle(stub, reply)
            return
        if kind == "huge":
            self._huge(stub)
            return
        if reply is None:
            assert kind is not None
            status = {
                "rate_limit": 429,
                "unavailable": 503,
                "server_error": 500,
                "bad_request": 400,
                "auth": 401,
            }[kind]
            headers: dict[str, str] = {}
            retry_after = fault.retry_after if fault and fault.retry_after else cfg.retry_after
            if kind in ("rate_limit", "unavailable") and retry_after is not None:
                headers["Retry-After"] = retry_after
            # The OpenAI SDK retries on its own when told so; the stub lets the client decide.
            headers["x-should-retry"] = "false"
            text = fault.message if fault and fault.message else f"stub {kind}"
            self._send_json(status, {"error": {"message": text, "type": kind}}, headers)
            return
        self._send_json(200, reply)

    def _trickle(self, stub: OpenAIStub, reply: dict | None) -> None:
        """Headers at once, then the body one byte every ``trickle_seconds``."""
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.flush()
        try:
            for i in range(len(data)):
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                if stub._stop.wait(stub.config.trickle_seconds):
                    break
        except OSError:  # the client gave up
            pass
        self._drop()

    def _huge(self, stub: OpenAIStub) -> None:
        """A reply without a length whose body goes on until the client stops reading."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b" " * 65536
        sent = 0
        try:
            self.wfile.write(b'{"id": "huge", "choices": [{"message": {"content": "')
            while sent < 300_000_000 and not stub._stop.is_set():
                self.wfile.write(chunk)
                sent += len(chunk)
        except OSError:  # the client closed the connection
            pass
        with stub._lock:
            stub.config.huge_sent.append(sent)
        self._drop()

    def _completion(self, stub: OpenAIStub, body: dict[str, Any], kind: str | None) -> dict:
        """The chat-completion payload for ``body``
        (``kind``: ``malformed``/``truncated`` or None)."""
        cfg = stub.config
        content = (cfg.responder or default_responder)(body)
        text = content if isinstance(content, str) else json.dumps(content)
        finish_reason = "stop"
        if kind == "malformed":
            text = text[: max(1, len(text) // 2)] + ' "oops'
        elif kind == "truncated":
            text = text[: max(1, len(text) // 2)]
            finish_reason = "length"
        message: dict[str, Any] = {"role": "assistant", "content": None}
        tools = body.get("tools") or []
        if tools:
            choice = body.get("tool_choice")
            name = (
                choice.get("function", {}).get("name")
                if isinstance(choice, dict)
                else tools[0].get("function", {}).get("name")
            )
            message["tool_calls"] = [
                {
                    "id": f"call_{len(stub.requests)}",
                    "type": "function",
                    "function": {"name": name, "arguments": text},
                }
            ]
        else:
            message["content"] = text
        prompt_text = "".join(
            m.get("content") if isinstance(m.get("content"), str) else json.dumps(m.get("content"))
            for m in body.get("messages", [])
        )
        if tools:
            prompt_text += json.dumps(tools)
        prompt_tokens = estimate_tokens(prompt_text)
        completion_tokens = estimate_tokens(text)
        usage: dict[str, Any] | None = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if cfg.usage is not None:  # a server that reports wrong usage (or none)
            usage = cfg.usage(dict(usage))
        reply = {
            "id": f"chatcmpl-stub-{len(stub.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", cfg.model),
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        }
        if usage is not None:
            reply["usage"] = usage
        return reply


#: Fault kinds (and ``None``) whose reply is a completion.
_ANSWERING = (None, "malformed", "truncated", "trickle")


class _StubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default listen backlog is 5: a burst of more concurrent connections loses
    # SYNs, which the client only retransmits after a second
    request_queue_size = 128
    stub: OpenAIStub

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that closed its connection (a killed or timed-out run) is not an error of
        the server; anything else is reported as usual."""
        import sys

        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class OpenAIStub:
    """An OpenAI-compatible chat-completions server on 127.0.0.1, run in a background thread.

    Args:
        responder: ``responder(request_json) -> content``; a dict/list is JSON-encoded, a str is
            sent as is. Defaults to :func:`default_responder` (a minimal valid instance of the
            requested schema).
        latency: Seconds every chat-completions call sleeps before answering.
        fault_rates: Probability per fault kind (e.g. ``{"rate_limit": 0.1}``), drawn with ``seed``
            whenever the scripted sequence is empty. Probabilities must sum to at most 1.
        seed: Seed of the fault draws, so a faulty run is reproducible.
        retry_after: Default ``Retry-After`` value sent with 429/503 faults (``None``: no header).
        stall_seconds: How long a ``stall`` fault keeps the client waiting before dropping.
        model: Model id reported by ``/v1/models`` and in replies.
        fault_filter: ``fault_filter(request_json) -> bool``; when given, only requests for which
            it is true receive faults (scripted or drawn) and the others are answered normally,
            e.g. to fault the generation calls of a run but not its description calls.
        trickle_seconds: Pause between the bytes of a ``trickle`` reply.
        usage: ``usage(honest_usage) -> usage`` replaces the ``usage`` object of every reply
            (``None``: the reply carries none), for servers that report wrong token counts.
        rejects: Structured-output forms answered like a server that does not support them
            (:data:`REJECTABLE`; see :func:`rejection`).

    Attributes:
        requests: Every chat-completions request received, in arrival order.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: float = 0.0,
        fault_rates: dict[str, float] | None = None,
        seed: int = 0,
        retry_after: str | None = "0",
        stall_seconds: float = 5.0,
        model: str = "stub-model",
        fault_filter: Callable[[dict[str, Any]], bool] | None = None,
        trickle_seconds: float = 1.0,
        usage: Callable[[dict[str, int]], dict[str, Any] | None] | None = None,
        rejects: tuple[str, ...] = (),
    ) -> None:
        unknown = [r for r in rejects if r not in REJECTABLE]
        if unknown:
            raise ValueError(f"cannot reject {unknown}; known: {', '.join(REJECTABLE)}")
        rates = dict(fault_rates or {})
        for kind in rates:
            Fault(kind)
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault_rates must sum to at most 1")
        self.config = _Config(
            responder=responder,
            latency=latency,
            fault_rates=rates,
            retry_after=retry_after,
            stall_seconds=stall_seconds,
            model=model,
            rng=random.Random(seed),
            fault_filter=fault_filter,
            trickle_seconds=trickle_seconds,
            usage=usage,
            rejects=tuple(rejects),
        )
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: _StubHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> OpenAIStub:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._stop.clear()
        server = _StubHTTPServer(("127.0.0.1", 0), _Handler)
        server.stub = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; stalled or sleeping handlers are released at once."""
        if self._server is None:
            return
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._server is None:
            raise RuntimeError("OpenAIStub is not running; call start() or use `with`")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- behaviour -------------------------------------------------------------------------
    def script(self, *faults: str | Fault | None) -> OpenAIStub:
        """Queue faults for the next calls, in order; ``None`` answers one call normally.

        Args:
            *faults: Fault kinds, :class:`Fault` objects or ``None``.

        Returns:
            The stub, for chaining.
        """
        with self._lock:
            for f in faults:
                self.config.script.append(Fault(f) if isinstance(f, str) else f)
        return self

    def set_responder(self, responder: Responder | None) -> None:
        """Replace the responder for the following calls."""
        self.config.responder = responder

    def set_fault_rates(self, fault_rates: dict[str, float]) -> None:
        """Replace the fault probabilities for the following calls."""
        for kind in fault_rates:
            Fault(kind)
        self.config.fault_rates = dict(fault_rates)

    def reset(self) -> None:
        """Forget recorded requests and any queued script."""
        with self._lock:
            self.requests.clear()
            self.config.script.clear()

    def fault_counts(self) -> dict[str, int]:
        """How many requests received each fault (``"ok"`` for normal answers)."""
        counts: dict[str, int] = {}
        with self._lock:
            for r in self.requests:
                key = r.fault or "ok"
                counts[key] = counts.get(key, 0) + 1
        return counts

    def _next_fault(self, body: dict[str, Any] | None = None) -> Fault | None:
        flt = self.config.fault_filter
        if flt is not None and not flt(body or {}):
            return None
        with self._lock:
            if self.config.script:
                return self.config.script.popleft()
            rates = self.config.fault_rates
            if not rates:
                return None
            draw = self.config.rng.random()
            acc = 0.0
            for kind, p in rates.items():
                acc += p
                if draw < acc:
                    return Fault(kind)
            return None


@contextmanager
def serve_openai_stub(responder: Responder | None = None, **kwargs: Any) -> Iterator[OpenAIStub]:
    """Run an :class:`OpenAIStub` for the duration of a ``with`` block.

    Args:
        responder: See :class:`OpenAIStub`.
        **kwargs: Further :class:`OpenAIStub` options.

    Yields:
        The running stub.
    """
    stub = OpenAIStub(responder, **kwargs)
    stub.start()
    try:
        yield stub
    finally:
        stub.stop()
