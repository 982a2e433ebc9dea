"""Paid calls are never lost nor paid twice: resume, damaged checkpoints, restarts, kills.

Kill-timing tests use the fault-injection points of :mod:`panelsynth.faultpoint`: the process
signals itself at the exact moment (``PANELSYNTH_FAULT_AT``), no sleeps.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from fakes import fake_answer, write_tiny_workspace
from relhelpers import PANELSYNTH, clean_env, is_step3, nonblank_lines, responder, run_cli
from servers.openai_stub import OpenAIStub

import panelsynth.checkpoint as checkpoint_mod
from panelsynth.checkpoint import Checkpoint
from panelsynth.errors import GenerationExhaustedError, PanelsynthError
from panelsynth.llm.base import FakeClient, LLMCallError, Usage
from panelsynth.run.wave import RunOptions, run_wave
from panelsynth.workspace import Workspace

N_BATCHES = 12


def _args(ws: Path, url: str, *extra: str) -> list[str]:
    return [
        "run", "-w", str(ws), "--wave", "2", "--model", "openai/stub-model", "--base-url", url,
        "--model-dir", "stub", "--n-outputs", "3", "--n-batches", str(N_BATCHES), "--yes", *extra,
    ]


def _records(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines()[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "batch" in rec:
            out.append(rec)
    return out


def _finished_run(tmp_path: Path, url: str) -> tuple[Workspace, Path]:
    """A wave whose 12 calls are all in the checkpoint; CSV and manifest removed (as if the run
    had been stopped after its last call)."""
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    r = run_cli(_args(root, url))
    assert r.exit_code == 0, r.output
    ws.output_csv("stub", "2").unlink()
    ws.manifest("stub", "2").unlink()
    return ws, ws.checkpoint("stub", "2")


@pytest.mark.parametrize("sig", ["KILL", "TERM", "INT"])
def test_a_kill_during_the_resume_rewrite_loses_no_call(tmp_path: Path, sig: str) -> None:
    with OpenAIStub(responder()) as stub:
        ws, ck = _finished_run(tmp_path, stub.base_url)
        with open(ck, "a") as fh:
            fh.write('{"batch": 12, "rows": [')  # a torn last line: the resume must rewrite
        original = ck.read_bytes()
        stub.reset()
        env = clean_env(PANELSYNTH_FAULT_AT="checkpoint-rewrite", PANELSYNTH_FAULT_SIGNAL=sig)
        proc = subprocess.run(
            [PANELSYNTH, *_args(ws.root, stub.base_url, "--resume")],
            capture_output=True, text=True, env=env, timeout=120,
        )
        expected = {"KILL": -signal.SIGKILL, "TERM": -signal.SIGTERM, "INT": 130}[sig]
        assert proc.returncode == expected, proc.stdout + proc.stderr
        assert ck.read_bytes() == original  # the old file, whole: the new one was never in place
        assert len(_records(ck)) == N_BATCHES
        copies = list(ck.parent.glob("wave2.original.*.jsonl"))
        assert len(copies) == 1 and copies[0].read_bytes() == original
        if sig == "INT":  # Ctrl-C claims only what is on disk
            assert f"Every finished call is saved in {ws.rel(ck)} ({N_BATCHES} calls" in proc.stdout
            assert "Traceback" not in proc.stdout + proc.stderr
        assert not any(is_step3(r.body) for r in stub.requests)
        # the next resume pays nothing again and leaves no temporary behind
        r = run_cli(_args(ws.root, stub.base_url, "--resume"))
        assert r.exit_code == 0, r.output
        assert not any(is_step3(r.body) for r in stub.requests)
    assert len(pd.read_csv(ws.output_csv("stub", "2"))) == 3 * N_BATCHES
    assert not list(ck.parent.glob(".*.tmp"))


def test_a_clean_checkpoint_is_only_appended_to(tmp_path: Path) -> None:
    with OpenAIStub(responder()) as stub:
        ws, ck = _finished_run(tmp_path, stub.base_url)
        lines = ck.read_text().splitlines(keepends=True)
        ck.write_text("".join(lines[:-4]))  # four calls to go
        before = ck.read_bytes()
        inode = ck.stat().st_ino
        r = run_cli(_args(ws.root, stub.base_url, "--resume"))
        assert r.exit_code == 0, r.output
    assert ck.read_bytes().startswith(before) and ck.stat().st_ino == inode
    assert not list(ck.parent.glob("wave2.original.*"))  # nothing to repair, no copy
    assert len(_records(ck)) == N_BATCHES


def _run(root: Path, client: FakeClient, **kw) -> object:
    opts = RunOptions(n_outputs=4, n_batches=kw.pop("n_batches", 6), **kw)
    return run_wave(root, "2", client, "fake", opts)


def _step3_calls(client: FakeClient) -> int:
    return sum(1 for c in client.calls if c["response_model"].__name__ == "SyntheticRespondents")


def test_damaged_lines_are_skipped_counted_and_the_calls_after_them_kept(
    tiny_workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = Workspace(tiny_workspace)
    _run(tiny_workspace, FakeClient(default=fake_answer))
    ws.output_csv("fake", "2").unlink()
    ck = ws.checkpoint("fake", "2")
    lines = ck.read_text().splitlines(keepends=True)
    assert len(lines) == 7  # header + 6 calls
    lines[3] = "\x00garbage{{\n"  # the call of batch 2 is lost
    lines.insert(5, "42\n")
    lines.insert(6, "{}\n")
    ck.write_text("".join(lines))
    damaged = ck.read_bytes()
    client = FakeClient(default=fake_answer)
    caplog.set_level(logging.WARNING, logger="panelsynth")
    res = _run(tiny_workspace, client, resume=True)
    assert res.rows == 24
    assert _step3_calls(client) == 1  # only the unreadable call is made again
    assert "skipped 3 damaged line(s) (line 4, 6, 7)" in caplog.text
    assert "the 5 readable calls after them are kept" in caplog.text
    copies = list(ck.parent.glob("wave2.original.*.jsonl"))
    assert len(copies) == 1 and copies[0].read_bytes() == damaged
    assert Checkpoint(ck).load()[0] is not None and len(_records(ck)) == 6


@pytest.mark.parametrize("first_line", ["", "not json at all\n", '{"header": 42}\n'])
def test_a_checkpoint_without_a_readable_header_is_refused_unless_accepted(
    tiny_workspace: Path, first_line: str
) -> None:
    ws = Workspace(tiny_workspace)
    _run(tiny_workspace, FakeClient(default=fake_answer))
    ws.output_csv("fake", "2").unlink()
    ws.manifest("fake", "2").unlink()
    ck = ws.checkpoint("fake", "2")
    lines = ck.read_text().splitlines(keepends=True)
    ck.write_text(first_line + "".join(lines[1:]))
    before = ck.read_bytes()
    with pytest.raises(PanelsynthError, match="--accept-headerless-checkpoint") as info:
        _run(tiny_workspace, FakeClient(default=fake_answer), resume=True)
    assert "no readable header" in str(info.value) and "6 calls" in str(info.value)
    assert ck.read_bytes() == before and not ws.output_csv("fake", "2").exists()
    client = FakeClient(default=fake_answer)
    res = _run(tiny_workspace, client, resume=True, accept_headerless_checkpoint=True)
    assert res.rows == 24 and _step3_calls(client) == 0
    assert Checkpoint(ck).load()[0] is not None  # written with this run's header now
    assert any(p.read_bytes() == before for p in ck.parent.glob("wave2.original.*.jsonl"))


def test_a_headerless_checkpoint_through_the_cli_is_one_line(tmp_path: Path) -> None:
    with OpenAIStub(responder()) as stub:
        ws, ck = _finished_run(tmp_path, stub.base_url)
        ck.write_text("".join(ck.read_text().splitlines(keepends=True)[1:]))
        r = run_cli(_args(ws.root, stub.base_url, "--resume"))
        assert r.exit_code == 2, r.output
        errors = [x for x in nonblank_lines(r.output) if x.startswith("Error:")]
        assert len(errors) == 1 and "Traceback" not in r.output
        assert "--accept-headerless-checkpoint" in errors[0]
        assert "step 1" not in r.output  # refused before steps 1-2 (even from the cache)
        r = run_cli(_args(ws.root, stub.base_url, "--resume", "--accept-headerless-checkpoint"))
        assert r.exit_code == 0, r.output


def test_restart_archives_never_overwrite_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen = datetime(2026, 10, 25, 1, 30, 0, 0, tzinfo=UTC)  # a repeated local hour

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001 - datetime's own signature
            return frozen

    monkeypatch.setattr(checkpoint_mod, "datetime", Clock)
    ck = Checkpoint(tmp_path / "wave2.jsonl")
    archives = []
    for i in range(3):
        ck.start({"fingerprint": f"run{i}"})
        archives.append(ck.archive())
    assert len(set(archives)) == 3
    assert [json.loads(p.read_text())["header"]["fingerprint"] for p in archives] == [
        "run0", "run1", "run2"
    ]
    assert archives[0].name == "wave2.20261025T013000.000000Z.jsonl"
    assert archives[1].name == "wave2.20261025T013000.000000Z-1.jsonl"


def test_two_restarts_keep_both_previous_runs(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    _run(tiny_workspace, FakeClient(default=fake_answer))
    for _ in range(2):
        _run(tiny_workspace, FakeClient(default=fake_answer), restart=True)
    folder = ws.checkpoint("fake", "2").parent
    archives = sorted(folder.glob("wave2.2*.jsonl"))
    assert len(archives) == 2 and all(len(_records(p)) == 6 for p in archives)
    manifests = sorted(folder.glob("wave2.2*.wave2_manifest.json"))
    assert len(manifests) == 2


def test_a_failed_restart_keeps_the_previous_manifest(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    _run(tiny_workspace, FakeClient(default=fake_answer))
    manifest = ws.manifest("fake", "2")
    good = manifest.read_bytes()
    csv = ws.output_csv("fake", "2").read_bytes()

    def refuse(messages: list[dict], model: type) -> object:
        if model.__name__ == "SyntheticRespondents":
            return LLMCallError("auth", "401 invalid key", Usage(attempts=1))
        return fake_answer(messages, model)

    with pytest.raises(GenerationExhaustedError):
        _run(tiny_workspace, FakeClient(default=refuse), restart=True)
    assert json.loads(manifest.read_text())["status"] == "incomplete"
    assert ws.output_csv("fake", "2").read_bytes() == csv  # the old CSV is still there
    kept = list(ws.checkpoint("fake", "2").parent.glob("wave2.2*.wave2_manifest.json"))
    assert len(kept) == 1 and kept[0].read_bytes() == good
    archive = kept[0].name.removesuffix(".wave2_manifest.json") + ".jsonl"
    assert len(_records(kept[0].parent / archive)) == 6  # next to the previous checkpoint


def test_a_kill_between_the_csv_and_the_manifest_is_rebuilt_for_free(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    with OpenAIStub(responder()) as stub:
        env = clean_env(PANELSYNTH_FAULT_AT="after-csv")
        proc = subprocess.run(
            [PANELSYNTH, *_args(root, stub.base_url)], capture_output=True, text=True, env=env,
            timeout=120,
        )
        assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
        csv = ws.output_csv("stub", "2").read_bytes()
        assert not ws.manifest("stub", "2").exists()
        stub.reset()
        r = run_cli(_args(root, stub.base_url))  # a plain rerun, no --resume
        assert r.exit_code == 0, r.output
        assert "rebuilding the manifest from the checkpoint" in " ".join(r.output.split())
        assert stub.requests == []  # steps 1-2 from the cache, step 3 from the checkpoint
    m = json.loads(ws.manifest("stub", "2").read_text())
    assert m["status"] == "complete" and m["rows"] == 3 * N_BATCHES
    assert ws.output_csv("stub", "2").read_bytes() == csv


def test_a_csv_without_manifest_nor_checkpoint_still_needs_restart(tiny_workspace: Path) -> None:
    ws = Workspace(tiny_workspace)
    _run(tiny_workspace, FakeClient(default=fake_answer))
    ws.manifest("fake", "2").unlink()
    ws.checkpoint("fake", "2").unlink()
    with pytest.raises(PanelsynthError, match="already exists — pass --restart"):
        _run(tiny_workspace, FakeClient(default=fake_answer))

