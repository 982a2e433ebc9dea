"""The OpenAI-compatible latency stub in its own process, for benchmarks that time the client:
the stub's work must not take the measured process's CPU."""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
from collections.abc import Iterator
from contextlib import contextmanager


def _serve(responder: str, latency: float, ports: mp.Queue, stop: mp.Event) -> None:  # type: ignore[type-arg]
    from servers.openai_stub import OpenAIStub

    module, _, name = responder.partition(":")
    answer = getattr(importlib.import_module(module), name)
    if name.endswith("_responder"):  # a factory of responders (panelstub.panel_responder)
        answer = answer()
    with OpenAIStub(responder=answer, latency=latency) as stub:
        ports.put(stub.port)
        stop.wait()


@contextmanager
def stub_in_process(responder: str, latency: float) -> Iterator[str]:
    """Start the stub in a spawned process and yield its base URL (``.../v1``).

    Args:
        responder: ``"module:name"`` of the responder (importable from ``tests/``), or of a
            ``*_responder`` factory that makes one.
        latency: Seconds every call sleeps before answering.
    """
    ctx = mp.get_context("spawn")
    ports: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    stop = ctx.Event()
    server = ctx.Process(target=_serve, args=(responder, latency, ports, stop), daemon=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=60)}/v1"
    finally:
        stop.set()
        server.join(timeout=10)


def load_average() -> str:
    """The machine's load average, printed next to every timed figure."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"
