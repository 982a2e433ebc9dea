"""`panelsynth run` through the CLI and as a subprocess, against a local OpenAI-compatible stub."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fakes import write_tiny_workspace
from servers.openai_stub import OpenAIStub, request_schema, schema_example
from typer.testing import CliRunner

from panelsynth.cli import app
from panelsynth.workspace import Workspace

PANELSYNTH = str(Path(sys.executable).with_name("panelsynth"))


def varied_rows(body: dict[str, Any]) -> Any:
    """Valid, varied answers for every step, built from the request's own schema."""
    schema = request_schema(body) or {}
    rows = schema.get("properties", {}).get("rows")
    if not rows:
        return schema_example(schema)
    rng = random.Random(json.dumps(body["messages"])[-200:])
    out = []
    for _ in range(rows["minItems"]):
        row = {}
        for name, prop in rows["items"]["properties"].items():
            main = next(o for o in prop.get("anyOf", [prop]) if o.get("type") != "null")
            row[name] = (
                rng.choice(main["enum"])
                if "enum" in main
                else rng.randint(int(main["minimum"]), int(main["maximum"]))
            )
        out.append(row)
    return {"rows": out}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_missing_key_fails_before_any_work(
    tiny_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    r = CliRunner().invoke(
        app,
        [
            "run",
            "-w",
            str(tiny_workspace),
            "--wave",
            "1",
            "--model",
            "anthropic/claude-sonnet-4-20250514",
        ],
    )
    assert r.exit_code == 2
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "ANTHROPIC_API_KEY" in lines[0] and lines[0].startswith("Error:")
    ws = Workspace(tiny_workspace)
    assert not (ws.root / "Final_gen_data" / "claude-sonnet-4-20250514").exists()
    assert not ws.cache_dir().exists()


def test_unknown_provider_exit_2(tiny_workspace: Path) -> None:
    r = CliRunner().invoke(
        app, ["run", "-w", str(tiny_workspace), "--wave", "1", "--model", "nosuch/model"]
    )
    assert r.exit_code == 2 and "nosuch" in r.output and "Traceback" not in r.output


def test_http_path_end_to_end(tiny_workspace: Path) -> None:
    with OpenAIStub(responder=varied_rows) as stub:
        r = CliRunner().invoke(
            app,
            [
                "run",
                "-w",
                str(tiny_workspace),
                "--wave",
                "2",
                "--model",
                "openai/stub-model",
                "--base-url",
                stub.base_url,
                "--model-dir",
                "stub",
                "--n-outputs",
                "4",
                "--n-batches",
                "3",
                "--yes",
            ],
        )
        assert r.exit_code == 0, r.output
        assert len(stub.requests) == 5  # step 1 + step 2 + 3 batches
    df = pd.read_csv(Workspace(tiny_workspace).output_csv("stub", "2"))
    assert len(df) == 12 and set(df["cluster"]) <= {1, 2}
    m = json.loads(Workspace(tiny_workspace).manifest("stub", "2").read_text())
    assert m["tokens"]["input"] == sum(c["input_tokens"] for c in m["calls"]) > 0


def _start(ws: Path, url: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            PANELSYNTH,
            "run",
            "-w",
            str(ws),
            "--wave",
            "2",
            "--model",
            "openai/stub-model",
            "--base-url",
            url,
            "--model-dir",
            "stub",
            "--n-outputs",
            "3",
            "--n-batches",
            "12",
            "--concurrency",
            "2",
            "--yes",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )


def _finished_batches(ws: Workspace) -> list[int]:
    ck = ws.checkpoint("stub", "2")
    if not ck.exists():
        return []
    out = []
    for line in ck.read_text().splitlines()[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not rec.get("failed"):
            out.append(rec["batch"])
    return out


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_kill_then_resume_loses_and_duplicates_nothing(tmp_path: Path, sig: int) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    rng = random.Random(sig)
    with OpenAIStub(responder=varied_rows, latency=0.15) as stub:
        for attempt in range(5):
            proc = _start(root, stub.base_url, *(["--resume"] if attempt else []))
            deadline = time.time() + 60
            target = len(_finished_batches(ws)) + rng.randint(1, 3)
            while (
                time.time() < deadline
                and len(_finished_batches(ws)) < target
                and proc.poll() is None
            ):
                time.sleep(0.02)
            if proc.poll() is None:
                proc.send_signal(sig)
            out, _ = proc.communicate(timeout=60)
            assert (
                not ws.output_csv("stub", "2").exists()
                or len(pd.read_csv(ws.output_csv("stub", "2"))) == 36
            )
            if sig == signal.SIGINT and proc.returncode == 130:
                assert "--resume" in out and "Traceback" not in out
            done = _finished_batches(ws)
            assert len(done) == len(set(done)), "a batch was written twice"
        proc = _start(root, stub.base_url, "--resume")
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
    df = pd.read_csv(ws.output_csv("stub", "2"))
    assert len(df) == 36
    done = _finished_batches(ws)
    assert len(done) == len(set(done))
    assert not list(ws.output_dir("stub").glob("*.tmp")) and not list(
        ws.output_dir("stub").glob(".*.tmp")
    )


def test_seed_script_runs_in_a_workspace(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    (root / "panelsynth.toml").write_text("[generation]\nn_outputs = 2\nn_batches = 2\n")
    with OpenAIStub(responder=varied_rows) as stub:
        toml = (root / "panelsynth.toml").read_text()
        toml += (
            '\n[[models]]\nlabel = "openai/stub-model"\ndir = "stub"\n'
            f'base_url = "{stub.base_url}"\n'
        )
        (root / "panelsynth.toml").write_text(toml)
        script = root / "run_data_gen_pipeline.py"
        proc = subprocess.run(
            [sys.executable, str(script), "1", "openai/stub-model", "stub", "sk-test-not-real"],
            input="y\n",
            capture_output=True,
            text=True,
            cwd=root,
            env=_env(),
            timeout=120,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Continue?" in proc.stdout
    assert len(pd.read_csv(Workspace(root).output_csv("stub", "1"))) == 4
    # 'n' aborts without generating anything
    proc = subprocess.run(
        [sys.executable, str(script), "2", "openai/stub-model", "stub", "sk-test-not-real"],
        input="n\n",
        capture_output=True,
        text=True,
        cwd=root,
        env=_env(),
        timeout=60,
    )
    assert proc.returncode == 1 and not Workspace(root).output_csv("stub", "2").exists()
