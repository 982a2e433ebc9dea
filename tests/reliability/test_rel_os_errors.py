"""Operating-system errors are one line, exit 2, data intact (issue 13, item 20).

A full disk while a checkpoint line or the final CSV is written (simulated by an ``os`` whose
``write``/``fsync`` fails with ENOSPC), a read-only workspace for ``run``, ``prepare`` and
``init`` (an ``os`` whose ``mkdir``/``open`` fail with EROFS under the workspace), a
``--model-dir`` or ``--wave`` of 300 characters and a ``panelsynth.toml`` that is a folder: each
ends with one ``Error:`` line naming the path and the cause, no traceback, exit 2, and every
finished call still there (``--resume`` then finishes without paying for them again).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fakes import write_tiny_workspace
from relhelpers import hash_tree, is_step3, nonblank_lines, responder, run_cli, stub_args
from servers.openai_stub import OpenAIStub
from test_prepare import write_raw_panel

from panelsynth import checkpoint as checkpoint_module
from panelsynth import io as io_module
from panelsynth.workspace import Workspace


class _Os:
    """The ``os`` module with some functions replaced (for one module's global ``os``)."""

    def __init__(self, **overrides: Any) -> None:
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _error_line(output: str) -> str:
    errors = [x for x in nonblank_lines(output) if x.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


def _args(root: Path, url: str, *extra: str) -> list[str]:
    args = stub_args(root, url, "2", "--concurrency", "1", *extra)
    args[args.index("--n-batches") + 1] = "4"
    return args


def _records(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    return [json.loads(x) for x in lines[1:]]  # every line whole: json.loads would fail


def test_disk_full_at_a_checkpoint_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    ckpt = ws.checkpoint("stub", "2")
    appended = []

    def write(fd: int, data: bytes) -> int:
        if len(appended) == 2:  # the third line: half of it reaches the disk, then ENOSPC
            os.write(fd, bytes(data[: len(data) // 2]))
            raise _enospc()
        appended.append(1)
        return os.write(fd, data)

    monkeypatch.setattr(checkpoint_module, "os", _Os(write=write))
    with OpenAIStub(responder()) as stub:
        r = run_cli(_args(root, stub.base_url))
        assert r.exit_code == 2, r.output
        line = _error_line(r.output)
        assert str(ckpt) in line and "No space left on device" in line and "--resume" in line
        kept = _records(ckpt)  # the half line was taken back
        assert [x["batch"] for x in kept] == [0, 1]

        monkeypatch.undo()
        before = len(stub.requests)
        r = run_cli(_args(root, stub.base_url, "--resume"))
        assert r.exit_code == 0, r.output
        assert sum(is_step3(q.body) for q in stub.requests[before:]) == 2  # batches 3 and 4
    assert len(pd.read_csv(ws.output_csv("stub", "2"))) == 12


def test_disk_full_at_the_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    ws = Workspace(root)
    out = ws.output_csv("stub", "2")

    def fsync(fd: int) -> None:
        if ".gen_data_wave2.csv." in os.readlink(f"/proc/self/fd/{fd}"):
            raise _enospc()
        os.fsync(fd)

    monkeypatch.setattr(io_module, "os", _Os(fsync=fsync))
    with OpenAIStub(responder()) as stub:
        r = run_cli(_args(root, stub.base_url))
        assert r.exit_code == 2, r.output
        line = _error_line(r.output)
        assert str(out) in line and "No space left on device" in line
        assert not out.exists() and not list(out.parent.glob(".gen_data_wave2.csv.*"))
        assert len(_records(ws.checkpoint("stub", "2"))) == 4  # every paid call is kept

        monkeypatch.undo()
        before = len(stub.requests)
        r = run_cli(_args(root, stub.base_url, "--resume"))
        assert r.exit_code == 0, r.output
        assert not any(is_step3(q.body) for q in stub.requests[before:])  # nothing paid again
    assert len(pd.read_csv(out)) == 12


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch):
    """Make everything under a folder read-only (as a read-only mount would)."""
    roots: list[str] = []
    real_mkdir, real_open = os.mkdir, os.open

    def under(path: Any) -> bool:
        p = os.path.abspath(os.fsdecode(path))
        return any(p == r or p.startswith(r + os.sep) for r in roots)

    def mkdir(path: Any, *a: Any, **kw: Any) -> None:
        if under(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        real_mkdir(path, *a, **kw)

    def open_(path: Any, flags: int, *a: Any, **kw: Any) -> int:
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)
    return roots


def test_read_only_workspace_for_run_prepare_and_init(tmp_path: Path, read_only) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    raw = tmp_path / "raw"
    write_raw_panel(raw, n=120, waves=("1",))
    before = {**hash_tree(root), **hash_tree(raw)}
    read_only += [str(root), str(raw)]
    with OpenAIStub(responder()) as stub:
        r = run_cli(_args(root, stub.base_url))
        line = _error_line(r.output)
        assert r.exit_code == 2 and "Read-only file system" in line and str(root) in line
        assert not stub.requests  # refused before any paid call
    r = run_cli(["prepare", "-w", str(raw)])
    line = _error_line(r.output)
    assert r.exit_code == 2 and "Read-only file system" in line and str(raw) in line
    r = run_cli(["init", str(root / "new")])
    line = _error_line(r.output)
    assert r.exit_code == 2 and "Read-only file system" in line and "new" in line
    assert {**hash_tree(root), **hash_tree(raw)} == before


@pytest.mark.parametrize("option", ["--model-dir", "--wave"])
def test_a_300_character_name(tmp_path: Path, option: str) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    before = hash_tree(root)
    with OpenAIStub(responder()) as stub:
        args = stub_args(root, stub.base_url)
        args[args.index(option) + 1] = "x" * 300
        r = run_cli(args)
        assert not stub.requests
    line = _error_line(r.output)
    assert r.exit_code == 2 and "300 characters" in line and len(line) < 300
    assert hash_tree(root) == before


def test_a_config_file_that_is_a_folder(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws")
    (root / "panelsynth.toml").unlink()
    (root / "panelsynth.toml").mkdir()
    for args in (
        ["run", "-w", str(root), "--wave", "2", "--model", "openai/x", "--base-url",
         "http://127.0.0.1:9/v1", "--yes"],
        ["prepare", "-w", str(root)],
    ):
        r = run_cli(args)
        line = _error_line(r.output)
        assert r.exit_code == 2 and "panelsynth.toml" in line and "is a folder" in line, args
