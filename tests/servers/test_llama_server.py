"""A tiny wave through llama-cpp-python's own OpenAI-compatible server (the real thing, on
127.0.0.1) serving the embedded SmolLM2 file, with AMX off.

A recording proxy between panelsynth and the server keeps every usage the server reported, so
the manifest's tokens are checked against the server's own counts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fakes import write_tiny_workspace
from typer.testing import CliRunner

from panelsynth.cli import app
from panelsynth.workspace import Workspace

pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m panelsynth.llm.llama_server`` on 127.0.0.1; yields its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    # half the CPUs, as the in-process client: ggml's threads spin while they wait, so on a busy
    # 2-core machine two threads are several times slower than one
    threads = str(max(1, (os.cpu_count() or 2) // 2))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "panelsynth.llm.llama_server", "--host", "127.0.0.1",
             "--port", str(port), "--model_alias", "smollm2", "--n_ctx", "8192",
             "--n_threads", threads, "--n_threads_batch", threads, "--verbose", "false"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the server exited ({proc.returncode}): {log.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True
    upstream: str
    answers: list[tuple[int, dict[str, Any]]]


class _Forward(BaseHTTPRequestHandler):
    server: _Recorder

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def _relay(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
        req = urllib.request.Request(
            self.server.upstream + self.path, data=body, method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                status, data = r.status, r.read()
        except urllib.error.HTTPError as err:
            status, data = err.code, err.read()
        if method == "POST":
            self.server.answers.append((status, json.loads(data or b"{}")))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._relay("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._relay("POST")


@pytest.fixture
def recorder(llama_server: str) -> Iterator[_Recorder]:
    server = _Recorder(("127.0.0.1", 0), _Forward)
    server.upstream = llama_server.removesuffix("/v1")
    server.answers = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_llama_cpp_python_server_rejects_json_schema_as_the_stub_does(llama_server: str) -> None:
    """The stub's rejection copies this server's answer (HTTP 500 naming response_format)."""
    body = {
        "model": "smollm2", "max_tokens": 4,
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
    }
    req = urllib.request.Request(
        f"{llama_server}/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=120)
    assert info.value.code == 500
    message = json.loads(info.value.read())["error"]["message"]
    from tests.servers.openai_stub import rejection

    stub = rejection(body, ("json_schema",))
    assert stub is not None
    # the same text, up to the source location (the installed file's path)
    assert message.split('File "')[0] == stub.split('File "')[0]


def test_a_tiny_wave_through_the_server(tmp_path: Path, recorder: _Recorder) -> None:
    ws_root = write_tiny_workspace(tmp_path / "ws", n=40)
    # one model call at a time on a shared CPU can take minutes: never abandon (and so repeat) one
    config = ws_root / "panelsynth.toml"
    text = config.read_text().replace("[generation]\n", "[generation]\ntimeout = 1200\n", 1)
    config.write_text(text)
    base_url = f"http://127.0.0.1:{recorder.server_address[1]}/v1"
    r = CliRunner().invoke(
        app,
        ["run", "-w", str(ws_root), "--wave", "1", "--model", "openai/smollm2",
         "--base-url", base_url, "--model-dir", "llama-server", "--n-outputs", "2",
         "--n-batches", "1", "--concurrency", "1", "--yes"],
    )
    assert r.exit_code == 0, r.output
    ws = Workspace(ws_root)
    df = pd.read_csv(ws.output_csv("llama-server", "1"))
    assert len(df) == 2
    assert set(df["cluster"]) <= {1, 2} and df["sex"].isin([1, 2]).all()
    for item, top in (("vaccimportant", 5), ("vaccsafe", 5)):
        assert df[item].between(1, top).all()
    m = json.loads(ws.manifest("llama-server", "1").read_text())
    assert m["structured_output"] == "auto (json)"
    ok = [a for status, a in recorder.answers if status == 200]
    rejected = [a for status, a in recorder.answers if status != 200]
    assert len(rejected) == 1  # json_schema, once
    assert m["tokens"]["input"] == sum(a["usage"]["prompt_tokens"] for a in ok) > 0
    assert m["tokens"]["output"] == sum(a["usage"]["completion_tokens"] for a in ok) > 0
