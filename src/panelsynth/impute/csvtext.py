"""A CSV file as text and cell spans, so cells can be read and replaced without re-serialising.

The text is decoded and its dialect sniffed by :mod:`panelsynth.io`, as every reader does;
:func:`field_spans` gives the ``[start, end)`` span of every cell (RFC 4180 quoting), which lets
:mod:`panelsynth.impute.output` replace only the empty cells and :mod:`panelsynth.impute.gaps`
read the respondent ids exactly as written.
"""

from __future__ import annotations

import re


def field_spans(text: str, sep: str) -> list[list[tuple[int, int]]]:
    """Character spans ``[start, end)`` of every cell of every record (RFC 4180 quoting; blank
    lines are records of one empty cell)."""
    if '"' not in text:
        return _spans_unquoted(text, sep)
    return _spans_general(text, sep)


def _spans_general(text: str, sep: str) -> list[list[tuple[int, int]]]:
    """:func:`field_spans` character by character (quoted cells may hold separators)."""
    records: list[list[tuple[int, int]]] = []
    n = len(text)
    i = 0
    fields: list[tuple[int, int]] = []
    while i < n:
        start = i
        if text[i] == '"':
            i += 1
            while i < n:
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        i += 2
                        continue
                    i += 1
                    break
                i += 1
        while i < n and text[i] not in (sep, "\n", "\r"):
            i += 1
        fields.append((start, i))
        if i < n and text[i] == sep:
            i += 1
            if i == n:
                fields.append((n, n))
            continue
        records.append(fields)
        fields = []
        if i < n - 1 and text[i] == "\r" and text[i + 1] == "\n":
            i += 2
        elif i < n:
            i += 1
    if fields:  # the last line ends with a separator and no line break
        records.append(fields)
    return records


_LINE_RE = re.compile(r"[^\r\n]*")


def _spans_unquoted(text: str, sep: str) -> list[list[tuple[int, int]]]:
    """:func:`field_spans` of a text without quotes, by splitting lines (much faster)."""
    records: list[list[tuple[int, int]]] = []
    n = len(text)
    pos = 0
    while pos < n:
        end = _LINE_RE.match(text, pos).end()  # type: ignore[union-attr]
        fields = []
        start = pos
        for cell in text[pos:end].split(sep):
            fields.append((start, start + len(cell)))
            start += len(cell) + 1
        records.append(fields)
        pos = end + (2 if text.startswith("\r\n", end) else 1)
    return records


def unquote(cell: str) -> str:
    """The value of a cell as written: surrounding whitespace and quotes removed."""
    c = cell.strip()
    if len(c) >= 2 and c[0] == c[-1] == '"':
        c = c[1:-1].replace('""', '"')
    return c


def data_rows(text: str, sep: str) -> list[list[tuple[int, int]]]:
    """The spans of the data rows: records after the header, blank lines skipped (as pandas)."""
    return [r for r in field_spans(text, sep)[1:] if not (len(r) == 1 and r[0][0] == r[0][1])]
