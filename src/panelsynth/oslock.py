"""Locks of the operating system (``fcntl.flock``) on files of a workspace.

A lock is held by an open file description for the life of the holder: the kernel releases it
when the holder exits, however it ends (SIGKILL included), and a holder that is merely stalled
keeps it. The holder writes its pid and host into the file, but only for the message another
process shows when it is refused; nobody ever decides anything from the file's contents.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from panelsynth.errors import PanelsynthError, WorkspaceError

#: Builds the error a refused process raises from what the holder wrote (``None``: unreadable).
Busy = Callable[[dict[str, Any] | None], PanelsynthError]


def read_holder(path: Path) -> dict[str, Any] | None:
    """What the holder of ``path`` wrote about itself (pid, host, started), if readable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_holder(holder: dict[str, Any] | None) -> str:
    """``process 123 on host-a`` (or ``another process`` when it has not said who it is)."""
    if not holder or "pid" not in holder:
        return "another process"
    return f"process {holder.get('pid')} on {holder.get('host', 'an unknown host')}"


class OsLock:
    """An exclusive ``flock`` on ``path``, held from :meth:`acquire` to :meth:`release`.

    Args:
        path: The lock file (created if missing; a symlink is refused).
        busy: Builds the error raised when another process holds the lock (not waiting).
        wait: Block until the lock is free instead of refusing.
    """

    def __init__(self, path: Path, busy: Busy, *, wait: bool = False) -> None:
        self.path = path
        self.busy = busy
        self.wait = wait
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
        for _ in range(20):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, flags, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                raise self.busy(read_holder(self.path)) from None
            except BaseException:
                os.close(fd)
                raise
            # A holder releasing the lock unlinks the file: if ours is no longer the file at
            # ``path``, another process may lock the new one; start again on that.
            try:
                same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
            self._fd = fd
            return
        raise WorkspaceError(f"could not take the lock {self.path} — is another process busy?")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                self.path.unlink()  # still ours: no one else can have locked this file
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> OsLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
