"""How ``panelsynth prepare`` puts its outputs in place: all of them or none, under a lock.

``prepare`` writes many files (every wave's data, var types and metadata in two modes, reports,
``Prepare/manifest.json``). Replaced one at a time, a kill part-way would leave a mix of two runs,
and the manifest would no longer match the files. So:

1. The whole run holds an OS lock (``.panelsynth/prepare.lock``, ``fcntl.flock``): a second
   ``prepare`` of the same workspace is refused, naming the holder.
2. Every output, the manifest last, is written to ``.panelsynth/prepare-staging/`` first.
3. The commit point: a journal (``.panelsynth/prepare-journal.json``) listing the staged files
   and their targets is written atomically.
4. The staged files are renamed over their targets, the manifest last; then the journal and the
   staging folder are removed.

A kill before step 3 leaves the old set untouched (the next run removes the staging folder: a
roll-back). A kill after it leaves a journal, and the next ``prepare`` or ``run`` finishes the
switch before anything else (a roll-forward): the files and the manifest then all belong to the
new run. Either way no file is left that the manifest does not describe.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from panelsynth import faultpoint
from panelsynth.errors import PanelsynthError
from panelsynth.io import atomic_write_text, file_mode
from panelsynth.oslock import OsLock, describe_holder
from panelsynth.workspace import Workspace

log = logging.getLogger("panelsynth")


class PrepareLockedError(PanelsynthError):
    """Another ``panelsynth prepare`` is working on the same workspace."""


def prepare_lock(ws: Workspace) -> OsLock:
    """The workspace's ``prepare`` lock (an OS lock; refuses when held)."""

    def busy(holder: dict[str, Any] | None) -> PanelsynthError:
        return PrepareLockedError(
            f"the workspace is being prepared by {describe_holder(holder)} — wait for it to "
            f"finish or stop it (lock: {ws.prepare_lock()})"
        )

    return OsLock(ws.prepare_lock(), busy)


class StagedOutputs:
    """Outputs written to the staging folder, switched in together by :meth:`switch`."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.root = ws.prepare_staging()
        self._pending: dict[Path, tuple[Path, str]] = {}  # target -> (staged file, sha256)

    def write(self, path: Path, text: str) -> None:
        """Stage ``text`` as the next content of ``path`` (written in full and fsync'ed)."""
        data = text.encode("utf-8")
        staged = self.root / f"{len(self._pending):05d}-{path.name}"
        if path in self._pending:
            staged = self._pending[path][0]
        staged.parent.mkdir(parents=True, exist_ok=True)
        with open(staged, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(staged, file_mode())
        self._pending[path] = (staged, hashlib.sha256(data).hexdigest())

    def digest(self, path: Path) -> str | None:
        """SHA-256 of the staged content of ``path`` (``None`` if not staged)."""
        entry = self._pending.get(path)
        return entry[1] if entry else None

    def targets(self) -> list[Path]:
        return list(self._pending)

    def switch(self) -> list[Path]:
        """Switch every staged file in (the last staged one last); returns the targets."""
        entries = [
            {"staged": _rel(self.ws, staged), "target": _rel(self.ws, target)}
            for target, (staged, _) in self._pending.items()
        ]
        faultpoint.reach("prepare-staged")
        atomic_write_text(self.ws.prepare_journal(), json.dumps({"switch": entries}, indent=1))
        faultpoint.reach("prepare-journal")
        targets = list(self._pending)
        self._pending.clear()
        _roll_forward(self.ws, entries)
        return targets

    def discard(self) -> None:
        """Forget the staged files (nothing was switched in)."""
        self._pending.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def finish_interrupted_prepare(ws: Workspace, *, locked: bool = False) -> bool:
    """Complete a switch a killed ``prepare`` left half-done, or remove its staged files.

    Args:
        ws: The workspace.
        locked: The caller holds the prepare lock already; otherwise it is taken (and a
            ``prepare`` running now is reported as :class:`PrepareLockedError`).

    Returns:
        Whether an interrupted switch was completed.
    """
    journal, staging = ws.prepare_journal(), ws.prepare_staging()
    if not journal.exists() and not staging.exists():
        return False
    lock = None if locked else prepare_lock(ws)
    if lock is not None:
        lock.acquire()
    try:
        if not journal.exists():  # killed before its commit point: the old set stands
            shutil.rmtree(staging, ignore_errors=True)
            return False
        try:
            entries = json.loads(journal.read_text(encoding="utf-8"))["switch"]
            entries = [{"staged": str(e["staged"]), "target": str(e["target"])} for e in entries]
        except (ValueError, KeyError, TypeError) as err:
            raise PanelsynthError(
                f"{ws.rel(journal)} is unreadable ({type(err).__name__}) — run `panelsynth "
                f"prepare` again (move that file away first)"
            ) from None
        log.warning(
            "an interrupted `panelsynth prepare` left its outputs half switched in: finishing it "
            "(%d files)",
            len(entries),
        )
        _roll_forward(ws, entries)
        return True
    finally:
        if lock is not None:
            lock.release()


def _roll_forward(ws: Workspace, entries: list[dict[str, str]]) -> None:
    """Rename each staged file that is still there over its target, in order; then clean up."""
    for n, entry in enumerate(entries, start=1):
        staged, target = ws.root / entry["staged"], ws.root / entry["target"]
        if not staged.exists():  # switched in before the kill
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        _move(staged, target)
        faultpoint.reach(f"prepare-switch:{n}")  # a kill after the n-th file (tests)
    ws.prepare_journal().unlink(missing_ok=True)
    shutil.rmtree(ws.prepare_staging(), ignore_errors=True)


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as err:
        if err.errno != errno.EXDEV:  # the target folder is on another file system
            raise
        tmp = dst.with_name(f".{dst.name}.switch.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        src.unlink()


def _rel(ws: Workspace, path: Path) -> str:
    return path.relative_to(ws.root).as_posix()
