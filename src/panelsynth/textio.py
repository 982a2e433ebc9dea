"""Text files as users bring them: the one decoder (UTF-8 with or without BOM, Windows-1252,
Latin-1) and the one CSV dialect sniffer (separator and decimal mark) that every reader uses."""

from __future__ import annotations

import csv
import re
from pathlib import Path

#: A semicolon file whose cells hold decimal commas ("45,5"), as some locales export.
_DECIMAL_COMMA_RE = re.compile(r"(?:^|;)\s*-?\d+,\d+\s*(?:;|$)", re.MULTILINE)


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
