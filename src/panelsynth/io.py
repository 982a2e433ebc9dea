"""The one place where panelsynth touches files as bytes and text.

- the atomic writer (a temporary file in the same folder, fsync'ed, given the usual
  ``0666 & ~umask`` mode, renamed into place) in its shapes: text, bytes, a table as CSV and "let
  a library write the temporary" (:func:`atomic_write_with`);
- the clean-up of the temporaries a killed process left behind;
- the decoder of text files as users bring them (UTF-8 with or without BOM, Windows-1252,
  Latin-1) and the CSV dialect sniffer (separator and decimal mark) that every reader uses.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

#: A semicolon file whose cells hold decimal commas ("45,5"), as some locales export.
_DECIMAL_COMMA_RE = re.compile(r"(?:^|;)\s*-?\d+,\d+\s*(?:;|$)", re.MULTILINE)

#: Age after which a temporary file in a folder that several runs share (the cache) is stale: an
#: atomic write lives for well under a second.
STALE_TEMPORARY_SECONDS = 15 * 60


def umask() -> int:
    """The process's umask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode an ordinary new file gets (``tempfile.mkstemp`` would make it private)."""
    return 0o666 & ~umask()


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders have no handles)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _temporary(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:  # a read-only folder: name the folder, not a random temporary
        raise OSError(err.errno, err.strerror, str(path.parent)) from None


def atomic_write_with(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` fills a temporary file next to ``path``; it is then fsync'ed, given the
    ordinary file mode and renamed into place. On any failure the temporary is removed and
    ``path`` keeps its old content; an OS error names ``path``, not the temporary."""
    fd, tmp = _temporary(path)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as err:  # a full disk, ...: the message names the file, not the temporary
        Path(tmp).unlink(missing_ok=True)
        if err.filename is None or err.filename == tmp:
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write_with`)."""
    atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically, newlines as given (see :func:`atomic_write_with`)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding=encoding, newline="") as fh:
            fh.write(text)

    atomic_write_with(path, write)


def atomic_write_csv(path: Path, frame: pd.DataFrame, float_format: str | None = None) -> None:
    """Write a table to ``path`` atomically as CSV: pandas' format, no index, ``\\n`` line ends."""
    text = frame.to_csv(index=False, lineterminator="\n", float_format=float_format)
    atomic_write_text(path, text)


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files of atomic writes of ``path`` that a killed process left behind
    (the file itself is intact). Only call it when no other process can be writing ``path``
    (e.g. with the run's lock held)."""
    if path.parent.is_dir():
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)


def remove_stale_temporaries_of(paths: Iterable[Path]) -> None:
    """:func:`remove_stale_temporaries` for each of ``paths`` (a command's outputs)."""
    for path in paths:
        remove_stale_temporaries(path)


def remove_old_temporaries(folder: Path, older_than: float = STALE_TEMPORARY_SECONDS) -> int:
    """Remove ``.*.tmp`` files older than ``older_than`` seconds in ``folder`` (one that other
    runs may be writing at the same time, so only files no live write can own); returns how many.
    """
    if not folder.is_dir() or folder.is_symlink():
        return 0
    removed = 0
    now = time.time()
    for stale in folder.glob(".*.tmp"):
        try:
            if stale.is_file() and now - stale.lstat().st_mtime > older_than:
                stale.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def decode_bytes(raw: bytes) -> tuple[str, str]:
    """The text and the encoding that writes it back to the same bytes (a BOM kept or not)."""
    for enc in ("utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8", "cp1252", "latin-1"):
        try:
            return raw.decode(enc), enc
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1"), "latin-1"  # pragma: no cover - latin-1 decodes every byte


def read_text(path: Path) -> str:
    """A text file's content, whatever its encoding (see :func:`decode_bytes`)."""
    return decode_bytes(path.read_bytes())[0]


def csv_dialect(text: str) -> tuple[str, str]:
    """(separator, decimal mark) of a CSV text, sniffed from its first 20 lines."""
    head = "\n".join(text.splitlines()[:20])
    try:
        sep = csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except csv.Error:
        sep = ","
    decimal = "," if sep == ";" and _DECIMAL_COMMA_RE.search(head) else "."
    return sep, decimal
