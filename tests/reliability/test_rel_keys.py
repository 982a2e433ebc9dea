"""Key hygiene: a sentinel API key never appears in anything a run writes, prints or logs.

The key reaches the tool three ways — ``--api-key``, the provider's environment variable, and the
seed script's positional ``API_KEY`` — and each way is used for a run that succeeds and for one
that fails while the server echoes the key back in its error body (as real providers do with
"Incorrect API key provided: ..."). Afterwards every file under the workspace (logs, examples,
checkpoints, manifests, outputs, ``.panelsynth/cache``), the captured stdout/stderr and every log
record (debug level) are searched for the key. The stub records the ``Authorization`` header, which
proves the key was really used.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import write_tiny_workspace
from relhelpers import clean_env, is_step3, nonblank_lines, responder, run_cli, stub_args
from servers.openai_stub import Fault, OpenAIStub

from panelsynth.workspace import Workspace

KEYS = ["sk-SENTINEL-abc123", "plainSENTINELsecret42"]  # a key shape, and one only we know


def _echo(key: str) -> Fault:
    return Fault("auth", message=f"Incorrect API key provided: {key}. Find your key at ...")


def _scan(key: str, texts: dict[str, str], root: Path) -> list[str]:
    """Where the key (or its unique middle) shows up."""
    needles = [key, key.removeprefix("sk-")]
    hits = [name for name, text in texts.items() if any(n in text for n in needles)]
    for p in root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            if any(n.encode() in data for n in needles):
                hits.append(str(p.relative_to(root)))
    return hits


@pytest.mark.parametrize("key", KEYS)
def test_sentinel_key_is_never_written_printed_or_logged(
    key: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    texts: dict[str, str] = {}
    with OpenAIStub(responder()) as stub:
        # --api-key: a run that succeeds, then one whose generation calls are refused with echoes
        r = run_cli(["-v", *stub_args(root, stub.base_url, "1", "--api-key", key)])
        assert r.exit_code == 0, r.output
        assert stub.requests[-1].headers["authorization"] == f"Bearer {key}"
        texts["flag ok"] = r.output
        stub.config.fault_filter = is_step3
        stub.script(*[_echo(key)] * 40)
        r = run_cli(["-v", *stub_args(root, stub.base_url, "2", "--api-key", key)])
        assert r.exit_code == 2 and "only 0 of 6 valid rows" in r.output and "auth" in r.output, (
            r.output
        )
        assert "Incorrect API key provided: ***" in r.output
        texts["flag failing"] = r.output
        assert ws.checkpoint("stub", "2").exists()
        stub.reset()
        stub.config.fault_filter = None

        # the provider's environment variable (hosted client; the SDK finds the stub by URL)
        monkeypatch.setenv("OPENAI_API_KEY", key)
        monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
        env_args = [
            "-v",
            "run",
            "-w",
            str(root),
            "--model",
            "openai/stub-model",
            "--model-dir",
            "env",
            "--n-outputs",
            "3",
            "--n-batches",
            "2",
            "--yes",
            "--wave",
        ]
        r = run_cli([*env_args, "1"])
        assert r.exit_code == 0, r.output
        assert stub.requests[-1].headers["authorization"] == f"Bearer {key}"
        texts["env ok"] = r.output
        stub.script(_echo(key))
        r = run_cli([*env_args, "2", "--no-cache"])
        assert r.exit_code == 2 and "step 1 (cluster descriptions) failed" in r.output, r.output
        assert len([x for x in nonblank_lines(r.output) if x.startswith("Error:")]) == 1
        texts["env failing"] = r.output
        monkeypatch.delenv("OPENAI_API_KEY")
        monkeypatch.delenv("OPENAI_BASE_URL")

        # the seed script's positional API_KEY (a separate process)
        toml = (
            f'[[models]]\nlabel = "openai/stub-model"\ndir = "seed"\nbase_url = "{stub.base_url}"\n'
            "[generation]\nn_outputs = 2\nn_batches = 2\n"
        )
        (root / "panelsynth.toml").write_text(toml)
        script = root / "run_data_gen_pipeline.py"
        for wave, fault in (("1", None), ("2", _echo(key))):
            if fault:
                stub.script(fault)
            mode = ["--mode", "full"] if fault else []  # full mode: step 1 is not cached yet
            proc = subprocess.run(
                [
                    sys.executable,
                    str(script),
                    wave,
                    "openai/stub-model",
                    "seed",
                    key,
                    "--yes",
                    *mode,
                ],
                capture_output=True,
                text=True,
                cwd=root,
                env=clean_env(),
                timeout=120,
            )
            assert proc.returncode == (2 if fault else 0), proc.stdout + proc.stderr
            assert stub.requests[-1].headers["authorization"] == f"Bearer {key}"
            texts[f"seed {wave} stdout"] = proc.stdout
            texts[f"seed {wave} stderr"] = proc.stderr
        assert "step 1 (cluster descriptions) failed" in proc.stderr
        assert "Incorrect API key provided: ***" in proc.stderr

    assert ws.output_csv("stub", "1").exists() and ws.output_csv("env", "1").exists()
    assert ws.output_csv("seed", "1").exists() and ws.cache_dir().is_dir()
    records = caplog.records
    assert records, "nothing was logged: the log check would prove nothing"
    texts["log records"] = (
        "\n".join(rec.getMessage() + (rec.exc_text or "") for rec in records) + caplog.text
    )
    assert not _scan(key, texts, root)
