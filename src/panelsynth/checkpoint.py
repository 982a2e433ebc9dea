"""Crash-safe state of step 3: an append-only checkpoint per (model dir, wave) and a run lock."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from panelsynth import faultpoint
from panelsynth.errors import RunLockedError, WorkspaceError
from panelsynth.io import atomic_write_with, fsync_dir, umask
from panelsynth.llm.keys import scrub_data
from panelsynth.oslock import OsLock, describe_holder

log = logging.getLogger("panelsynth")


class Checkpoint:
    """JSON lines: a header with the run's fingerprint, then one line per finished call.

    Each line is written with a single ``write`` of a complete line, flushed and fsync'ed, so a
    crash can at worst leave a torn last line, which :meth:`load` ignores. The file is never
    emptied in place: a new checkpoint and a cleaned one are written to a temporary file that is
    renamed over the old one (:meth:`start`, :meth:`rewrite`). Symbolic links are not followed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Line numbers (1-based) of damaged lines the last :meth:`load` skipped.
        self.skipped: list[int] = []
        #: Whether the last :meth:`load` dropped a torn last line.
        self.torn = False

    def exists(self) -> bool:
        _refuse_link(self.path)
        return self.path.exists() and self.path.stat().st_size > 0

    def start(self, header: dict[str, Any]) -> None:
        """A new checkpoint holding only ``header``; a non-empty one is never replaced."""
        if self.exists():
            raise WorkspaceError(
                f"{self.path} already holds finished calls — pass --resume to continue them or "
                f"--restart to set them aside"
            )
        self.rewrite(header, [])

    def rewrite(self, header: dict[str, Any], records: list[dict[str, Any]]) -> None:
        """Replace the checkpoint by ``header`` + ``records`` through a temporary file, fsync and
        rename: at every moment the file on disk is the old one or the new one, whole."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _refuse_link(self.path)

        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(json.dumps({"header": header}, sort_keys=True) + "\n")
                for i, record in enumerate(records):
                    if i == len(records) // 2:
                        fh.flush()
                        faultpoint.reach("checkpoint-rewrite")
                    fh.write(_record_line(record))

        atomic_write_with(self.path, write)
        fsync_dir(self.path.parent)

    def append(self, record: dict[str, Any]) -> None:
        """Append one call record as a single fsync'ed line; a link is refused, never followed;
        a line cut by a full disk is taken back (the file keeps only whole records)."""
        line = _record_line(record).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise WorkspaceError(_link_message(self.path)) from None
            raise
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError as err:  # e.g. a full disk: take back a partly written line
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass
                raise OSError(err.errno, err.strerror, str(self.path)) from None
        finally:
            os.close(fd)
        faultpoint.reach("checkpoint-append")

    def load(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """Header and readable records.

        A torn last line (a crash mid-write) is dropped (:attr:`torn`); a damaged line anywhere
        else (not JSON, not a call record: ``42``, ``{}``) is skipped and its number kept in
        :attr:`skipped`, and the records after it are read on. The header is ``None`` when the
        first line is not one.
        """
        self.skipped, self.torn = [], False
        _refuse_link(self.path)
        if not self.path.exists():
            return None, []
        header = None
        records = []
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.endswith("\n"):
                    self.torn = True  # torn write at a crash
                    break
                try:
                    obj = json.loads(raw)
                except (json.JSONDecodeError, RecursionError):
                    obj = None
                if number == 1 and isinstance(obj, dict) and isinstance(obj.get("header"), dict):
                    header = obj["header"]
                elif _is_record(obj):
                    records.append(obj)
                else:
                    self.skipped.append(number)
        return header, records

    @property
    def damaged(self) -> bool:
        """Whether the last :meth:`load` skipped a damaged line or dropped a torn one."""
        return bool(self.skipped) or self.torn

    def keep_copy(self) -> Path:
        """Copy the checkpoint, as it is, to a new unique name next to it (before a rewrite)."""
        return _copy_unique(self.path, f"{self.path.stem}.original")

    def archive(self) -> Path:
        """Move the checkpoint aside (never delete a user's paid-for calls).

        The name carries a UTC timestamp with microseconds and, if that name is taken, a counter;
        an existing archive is never replaced.
        """
        dest = _unique_name(self.path.parent, self.path.stem, ".jsonl")
        _move_no_replace(self.path, dest)
        return dest


def _record_line(record: dict[str, Any]) -> str:
    return json.dumps(scrub_data(record), sort_keys=True, default=_json_default) + "\n"


def _is_record(obj: Any) -> bool:
    """Whether a checkpoint line is a call record: a batch number, then rows or a failure; or a
    provider batch job (``{"batch_job": {...}}``, see ``llm.batch.job``), kept for its resume."""
    if not isinstance(obj, dict):
        return False
    if "batch_job" in obj:
        return isinstance(obj["batch_job"], dict) and len(obj) == 1
    batch = obj.get("batch")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 0:
        return False
    if obj.get("failed"):
        return isinstance(obj["failed"], str)
    rows = obj.get("rows")
    return isinstance(rows, list) and all(isinstance(r, dict) for r in rows)


def _link_message(path: Path) -> str:
    return (
        f"{path} is a symbolic link — panelsynth does not follow links in its generated folders; "
        f"replace it with the file itself"
    )


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise WorkspaceError(_link_message(path))


def _unique_name(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem.<UTC timestamp with microseconds>[-n]suffix`` that does not exist yet."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    for n in range(1000):
        name = f"{stem}.{stamp}{'' if n == 0 else f'-{n}'}{suffix}"
        dest = folder / name
        if not dest.exists() and not dest.is_symlink():
            return dest
    raise WorkspaceError(f"no free archive name for {stem} in {folder}")  # pragma: no cover


def _move_no_replace(src: Path, dest: Path) -> None:
    """Rename ``src`` to ``dest``; fails rather than replace an existing ``dest``.

    A hard link is made first (``link`` never replaces), then ``src`` is removed; where hard
    links are not supported the content is copied into a file created exclusively.
    """
    while True:
        try:
            os.link(src, dest, follow_symlinks=False)
        except FileExistsError:
            dest = _unique_name(dest.parent, dest.name.split(".", 1)[0], dest.suffix)
            continue
        except OSError:
            _copy_exclusive(src, dest)
        break
    os.unlink(src)
    fsync_dir(dest.parent)


def _copy_unique(src: Path, stem: str) -> Path:
    while True:
        dest = _unique_name(src.parent, stem, src.suffix)
        try:
            _copy_exclusive(src, dest)
        except FileExistsError:
            continue
        return dest


def _copy_exclusive(src: Path, dest: Path) -> None:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666 & ~umask())
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as fh:
            shutil.copyfileobj(fh, out)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def keep_aside(path: Path, next_to: Path) -> Path | None:
    """Copy ``path`` (e.g. a manifest) under a new unique name into ``next_to``'s folder, named
    after ``next_to`` (an archived checkpoint); ``None`` when ``path`` does not exist."""
    if not path.is_file() or path.is_symlink():
        return None
    stem = next_to.name.removesuffix(next_to.suffix)
    while True:
        dest = next_to.parent / f"{stem}.{path.name}"
        if dest.exists():
            dest = _unique_name(next_to.parent, f"{stem}.{path.stem}", path.suffix)
        try:
            _copy_exclusive(path, dest)
        except FileExistsError:
            continue
        return dest


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class RunLock:
    """One live run per (workspace, model dir, wave): an OS lock (``fcntl.flock``) on the lock
    file, held for the run's life. A dead run's lock is released by the kernel; a stalled run
    keeps it. The holder's pid and host in the file only name it in the refusal."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._lock = OsLock(path, self._busy)

    def _busy(self, holder: dict[str, Any] | None) -> RunLockedError:
        return RunLockedError(
            f"{self.what} is being generated by {describe_holder(holder)} "
            f"— wait for it to finish or stop it (lock: {self.path})"
        )

    def acquire(self) -> None:
        self._lock.acquire()

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
