"""Exact carried values for schema-fixed clients (see :meth:`PanelCarry.schema_fixed
<panelsynth.panel.carry.PanelCarry.schema_fixed>`).

A schema-guided decoder (a local model) given a numeric range writes its lowest value nearly
every time, so for such clients the host fixes one value inside each carried band: a shift
item's previous value plus a change drawn from the real panel's distribution of changes, a
first-wave banded anchor a real value of the respondent's cluster inside the band. Every draw is
a quantile ``u`` seeded per respondent, wave and item, so it does not depend on call order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from panelsynth.calibrate.profiles import Band, _inside, _numbers
from panelsynth.values import plain

#: Most support points of a shift item's distribution of changes (more: equal-weight quantiles).
MAX_CHANGES = 64
#: Offset of the stream of exact values from the run seed (anchors 29, patterns 31).
EXACT_STREAM = 37

Changes = tuple[tuple[float, float], ...]


def distribution(values: np.ndarray) -> Changes:
    """``(value, share)`` of ``values`` (at most :data:`MAX_CHANGES` points)."""
    if not len(values):
        return ()
    uniq, counts = np.unique(np.asarray(values, dtype=float), return_counts=True)
    return capped([(float(v), float(c) / len(values)) for v, c in zip(uniq, counts, strict=True)])


def convolve(a: Changes, b: Changes) -> Changes:
    """The distribution of the sum of independent changes (empty when either is unknown)."""
    if not a or not b:
        return ()
    out: dict[float, float] = {}
    for x, p in a:
        for y, q in b:
            key = round(x + y, 9)
            out[key] = out.get(key, 0.0) + p * q
    return capped(sorted(out.items()))


def capped(points: Sequence[tuple[float, float]]) -> Changes:
    """``points`` (sorted by value), or :data:`MAX_CHANGES` equal-weight quantiles of them."""
    if len(points) <= MAX_CHANGES:
        return tuple(points)
    values = np.array([v for v, _ in points])
    cum = np.cumsum([w for _, w in points])
    at = (np.arange(MAX_CHANGES) + 0.5) / MAX_CHANGES * cum[-1]
    picks = values[np.minimum(np.searchsorted(cum, at), len(values) - 1)]
    return tuple((float(v), 1.0 / MAX_CHANGES) for v in picks)


def uniform(seed: int, rid: str, wave: str, item: str) -> float:
    """A seeded number in [0, 1) for one respondent, wave and item."""
    h = hashlib.sha256(f"{rid}\0{wave}\0{item}".encode()).digest()
    rng = np.random.default_rng([seed, EXACT_STREAM, int.from_bytes(h[:8], "big")])
    return float(rng.random())


def shifted(prev: float, band: Band, changes: Changes, integer: bool, u: float) -> int | float:
    """``prev`` plus a change drawn at quantile ``u`` among ``changes`` that stay inside
    ``band`` (an integer item's rounded); without such changes, the band's whole number at
    ``u`` (integer items) or its middle."""
    options: dict[float, float] = {}
    for change, share in changes:
        v = float(math.floor(prev + change + 0.5)) if integer else prev + change
        if band.contains(v):
            options[v] = options.get(v, 0.0) + share
    if not options and integer:
        options = {float(v): 1.0 for v in range(int(band.low), int(band.high) + 1)}
    if not options:
        return plain((band.low + band.high) / 2)
    values = sorted(options)
    cum = np.cumsum([options[v] for v in values])
    i = int(np.searchsorted(cum, u * cum[-1], side="right"))
    return plain(values[min(i, len(values) - 1)])


def real_values(
    frame: pd.DataFrame, cluster_column: str, names: Sequence[str], clusters: Sequence[int]
) -> dict[int, dict[str, np.ndarray]]:
    """Per cluster and item of ``names``, the real values of ``frame`` (sorted)."""
    labels = pd.to_numeric(frame[cluster_column], errors="coerce")
    return {
        int(c): {n: np.sort(_numbers(frame.loc[labels == c, n])) for n in names if n in frame}
        for c in clusters
    }


def in_band(pool: np.ndarray | None, band: Band, u: float) -> int | float | Band:
    """The value of ``pool`` inside ``band`` at quantile ``u`` (``band`` when there is none)."""
    inside = _inside(pool, band) if pool is not None else ()
    if not len(inside):
        return band
    return plain(float(inside[min(int(u * len(inside)), len(inside) - 1)]))
