"""Profiles: the cluster and anchor values (and missingness pattern) the host draws for each row."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.data import cluster_shares
from panelsynth.demographics import resolve_demographics
from panelsynth.errors import ConfigError
from panelsynth.generate import (
    row_key,
)
from panelsynth.pydantic_models.rows import RowSpec
from panelsynth.values import plain

#: Lower edges of the age bands used in profiles (the last band runs to the variable's maximum).
AGE_BAND_EDGES: tuple[int, ...] = (18, 25, 35, 45, 55, 65, 75)


#: Bands of a continuous anchor that is not an age: quantile bands of the real values.
N_QUANTILE_BANDS = 5


# ----------------------------------------------------------------------------------------------
# anchors and profiles
@dataclass(frozen=True)
class Band:
    """A range of a continuous anchor: ``low <= value <= high`` (``value < high`` if open)."""

    low: float
    high: float
    integer: bool = True
    open_high: bool = False

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in the band (NA never does)."""
        v = _as_float(value)
        if v is None:
            return False
        return self.low <= v and (v < self.high if self.open_high else v <= self.high)

    def text(self) -> str:
        lo, hi = _num_text(self.low), _num_text(self.high)
        return f"{lo} to under {hi}" if self.open_high else f"{lo}-{hi}"


@dataclass(frozen=True)
class Profile:
    """What one requested row must keep: its cluster and the values of the anchors.

    An anchor value is a code (coded variables), a :class:`Band` (continuous ones) or ``None``
    (no answer, only where the mode allows NA).
    """

    cluster: int
    anchors: tuple[tuple[str, Any], ...] = ()
    #: Questions this respondent leaves unanswered (full mode: the missingness pattern of the
    #: real respondent the anchors come from); the other items of the pattern are answered.
    missing: tuple[str, ...] = ()

    def text(self, cluster_column: str = "cluster") -> str:
        """``"cluster 2, age 35-44, sex 2"`` (the cluster column under its own name)."""
        name = "cluster" if cluster_column == "cluster" else cluster_column
        parts = [f"{name} {self.cluster}"]
        for var, value in (*self.anchors, *((m, None) for m in self.missing)):
            if value is None:
                parts.append(f"{var} null (no answer)")
            elif isinstance(value, Band):
                parts.append(f"{var} {value.text()}")
            else:
                parts.append(f"{var} {_num_text(value)}")
        return ", ".join(parts)

    def keeps(self, row: Mapping[str, Any], cluster_column: str = "cluster") -> bool:
        """Whether ``row`` keeps this profile (cluster and every anchor; numbers inside bands)."""
        if _as_float(row.get(cluster_column)) != float(self.cluster):
            return False
        for var, value in self.anchors:
            got = row.get(var)
            if value is None:
                if _as_float(got) is not None or (isinstance(got, str) and got.strip()):
                    return False
            elif isinstance(value, Band):
                if not value.contains(got):
                    return False
            elif row_key([got]) != row_key([value]):
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cluster": self.cluster}
        for var, value in self.anchors:
            out[var] = value.text() if isinstance(value, Band) else plain(value)
        if self.missing:
            out["no_answer"] = list(self.missing)
        return out


def default_anchors(demographics: Sequence[str], variables: Sequence[str]) -> list[str]:
    """The demographics (config ``prepare.demographics``) that are variables of the wave; one
    missing under its name is found under another of its kind (``gender`` for ``sex``), as
    ``prepare`` does."""
    return resolve_demographics(demographics, variables).used


def resolve_anchors(
    requested: Sequence[str] | None,
    specs: Sequence[RowSpec],
    *,
    demographics: Sequence[str],
    cluster_column: str,
) -> list[str]:
    """Anchor variables of a calibrated run, checked against the wave's columns.

    Args:
        requested: The anchors asked for (``None``: the demographics present in the wave).
        specs: Column specs of the wave.
        demographics: Config ``prepare.demographics``.
        cluster_column: The cluster column (always fixed by the profile, never an anchor).

    Raises:
        ConfigError: an anchor is not a column of the wave.
    """
    names = [s.name for s in specs if s.name != cluster_column]
    if requested is None:
        return default_anchors(demographics, names)
    out: list[str] = []
    for a in requested:
        a = a.strip()
        if not a or a == cluster_column:
            continue
        if a not in names:
            raise ConfigError(
                f"anchor {a!r} is not a variable of this wave (variables: {', '.join(names)}) — "
                f"fix --anchors / generation.anchors"
            )
        if a not in out:
            out.append(a)
    return out


def anchor_bands(name: str, spec: RowSpec, values: pd.Series) -> list[Band]:
    """Bands of a continuous anchor: standard age bands for an age, else quantile bands.

    Args:
        name: Variable name (an age is recognised by ``"age"`` in its name).
        spec: Its column spec (bounds, integer or not).
        values: Its real values (NA ignored).
    """
    x = pd.to_numeric(values, errors="coerce").dropna().astype(float)
    low = spec.low if spec.low is not None else (float(x.min()) if len(x) else 0.0)
    high = spec.high if spec.high is not None else (float(x.max()) if len(x) else low)
    if "age" in name.lower():
        inner = [float(e) for e in AGE_BAND_EDGES if low < e <= high]
    else:
        qs = np.quantile(x, np.linspace(0, 1, N_QUANTILE_BANDS + 1)[1:-1]) if len(x) else []
        inner = sorted({float(round(q)) if spec.integer else float(q) for q in qs})
        inner = [e for e in inner if low < e <= high]
    edges = [float(low), *inner]
    bands: list[Band] = []
    for i, lo in enumerate(edges):
        last = i == len(edges) - 1
        if spec.integer:
            hi = float(high) if last else edges[i + 1] - 1
            bands.append(Band(lo, max(lo, hi), integer=True))
        else:
            hi = float(high) if last else edges[i + 1]
            bands.append(Band(lo, hi, integer=False, open_high=not last))
    return bands


def _band_of(value: float, bands: Sequence[Band]) -> Band:
    for b in bands:
        if b.contains(value):
            return b
    # outside every band (beyond the bounds): the nearest one
    return bands[0] if value < bands[0].low else bands[-1]


@dataclass
class ProfileDesign:
    """Where profiles come from: real cluster shares and each cluster's anchor tuples.

    Build it with :meth:`from_frame`; :meth:`draw` gives seeded profiles.
    """

    cluster_column: str
    shares: dict[int, float]
    anchors: list[str]
    donors: dict[int, list[tuple[Any, ...]]]
    seed: int
    #: Items whose missingness pattern each profile carries (full mode), and per cluster the
    #: pattern of every donor (the items it left unanswered), aligned with ``donors``.
    pattern_columns: list[str] = field(default_factory=list)
    patterns: dict[int, list[tuple[str, ...]]] = field(default_factory=dict)
    #: Per cluster and banded anchor, the real values (sorted); set (``exact_values``): each
    #: profile fixes an exact value inside its band, drawn from these (schema-guided decoders).
    values: dict[int, dict[str, np.ndarray]] | None = None

    @classmethod
    def from_frame(
        cls,
        real: pd.DataFrame,
        specs: Sequence[RowSpec],
        anchors: Sequence[str],
        *,
        cluster_column: str,
        seed: int,
        pattern_columns: Sequence[str] = (),
        exact_values: bool = False,
    ) -> ProfileDesign:
        """Cluster shares and per-cluster anchor tuples (continuous anchors banded) of ``real``.

        A respondent whose anchor is NA gives a donor tuple only where the anchor's spec allows
        NA (full mode); in the dense mode such respondents give no tuple. With
        ``pattern_columns``, each donor also gives its missingness pattern over them (which it
        left unanswered), drawn together with its anchors. With ``exact_values`` (a response
        schema fixes each profile, as for local models), a banded anchor's profile value is an
        exact number inside its band: one real value of that cluster in that band, drawn per
        profile (see :meth:`exact`), never the donor's other answers with it.

        Raises:
            ConfigError: a cluster has no respondent with a usable anchor tuple.
        """
        by_name = {s.name: s for s in specs}
        labels = pd.to_numeric(real[cluster_column], errors="coerce")
        shares = cluster_shares(real[cluster_column])
        clusters = list(shares)
        bands = {a: anchor_bands(a, by_name[a], real[a]) for a in anchors if not by_name[a].codes}
        donors: dict[int, list[tuple[Any, ...]]] = {}
        patterns: dict[int, list[tuple[str, ...]]] = {}
        pcols = [p for p in pattern_columns if p in real.columns]
        for c in clusters:
            sub = real.loc[labels == c, list(anchors)]
            na = real.loc[labels == c, pcols].isna().to_numpy() if pcols else None
            tuples: list[tuple[Any, ...]] = []
            missing: list[tuple[str, ...]] = []
            for i, row in enumerate(sub.itertuples(index=False)):
                values: list[Any] = []
                ok = True
                for a, v in zip(anchors, row, strict=True):
                    f = _as_float(v)
                    if f is None and (v is None or _is_na(v)):
                        if not by_name[a].nullable:
                            ok = False
                            break
                        values.append(None)
                    elif a in bands:
                        values.append(_band_of(float(v), bands[a]))
                    else:
                        values.append(plain(v))
                if ok:
                    tuples.append(tuple(values))
                    if na is not None:
                        missing.append(tuple(p for p, gap in zip(pcols, na[i], strict=True) if gap))
            if not tuples:
                raise ConfigError(
                    f"cluster {c} has no respondent with a value for every anchor "
                    f"({', '.join(anchors)}) — choose other --anchors"
                )
            donors[c] = tuples
            if pcols:
                patterns[c] = missing
        values = None
        if exact_values:
            values = {
                c: {a: np.sort(_numbers(real.loc[labels == c, a])) for a in anchors if a in bands}
                for c in clusters
            }
        return cls(cluster_column, shares, list(anchors), donors, seed, pcols, patterns, values)

    def draw(self, n: int) -> list[Profile]:
        """``n`` profiles: cluster counts allocated from the shares, order and donors seeded."""
        counts = allocate(self.shares, n)
        labels = np.repeat(list(counts), list(counts.values()))
        rng = np.random.default_rng([self.seed, 8001])
        labels = rng.permutation(labels)
        return [self.exact(self._profile(int(c), rng), i) for i, c in enumerate(labels)]

    def extra(self, index: int) -> Profile:
        """Profile ``index`` beyond the planned ones (cluster drawn from the shares), seeded."""
        rng = np.random.default_rng([self.seed, 8002, index])
        clusters = list(self.shares)
        p = np.array([self.shares[c] for c in clusters])
        profile = self._profile(int(clusters[rng.choice(len(clusters), p=p / p.sum())]), rng)
        return self.exact(profile, index)

    def exact(self, profile: Profile, index: int) -> Profile:
        """``profile`` (number ``index``) with each band replaced by an exact value inside it.

        Only with :attr:`values` (``exact_values``), else ``profile`` as it is. A schema-guided
        decoder given a band as a numeric range writes its lowest value nearly every time (SmolLM2:
        every age at 25, 35, ...), so the host fixes the value: a real value of the profile's
        cluster inside the band, drawn uniformly over that cluster's respondents (the band's real
        distribution, one value, not a row), seeded by the design's seed and ``index`` (its own
        stream: the clusters and donors are those of the banded profiles). A band without real
        values of the cluster in it (a donor outside the variable's bounds) stays a band.
        """
        if self.values is None:
            return profile
        pool = self.values.get(profile.cluster, {})
        rng = np.random.default_rng([self.seed, 8003, index])
        anchors: list[tuple[str, Any]] = []
        for name, value in profile.anchors:
            if isinstance(value, Band) and name in pool:
                inside = _inside(pool[name], value)
                if len(inside):
                    value = plain(float(inside[int(rng.integers(len(inside)))]))
            anchors.append((name, value))
        return Profile(profile.cluster, tuple(anchors), profile.missing)

    def _profile(self, cluster: int, rng: np.random.Generator) -> Profile:
        pool = self.donors[cluster]
        i = int(rng.integers(len(pool)))
        missing = self.patterns[cluster][i] if self.patterns else ()
        return Profile(cluster, tuple(zip(self.anchors, pool[i], strict=True)), missing)


def allocate(shares: Mapping[int, float], n: int) -> dict[int, int]:
    """Split ``n`` into integer counts proportional to ``shares`` (largest remainder)."""
    keys = list(shares)
    total = sum(shares.values()) or 1.0
    raw = [n * shares[k] / total for k in keys]
    base = [int(math.floor(r)) for r in raw]
    rest = n - sum(base)
    order = sorted(range(len(keys)), key=lambda i: (-(raw[i] - base[i]), i))
    for i in order[:rest]:
        base[i] += 1
    return {k: base[i] for i, k in enumerate(keys)}


def profile_first(columns: Sequence[str], cluster_column: str, anchors: Sequence[str]) -> list[str]:
    """``columns`` reordered: cluster, anchors, then the rest (the LLM writes the profile first)."""
    head = [cluster_column, *[a for a in anchors if a != cluster_column]]
    return [c for c in head if c in columns] + [c for c in columns if c not in head]


# ----------------------------------------------------------------------------------------------
# helpers
def _numbers(values: pd.Series) -> np.ndarray:
    """The numbers of ``values`` as floats (NA and text dropped)."""
    return pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)


def _inside(values: np.ndarray, band: Band) -> np.ndarray:
    """The (sorted) ``values`` inside ``band``."""
    upper = values < band.high if band.open_high else values <= band.high
    return values[(values >= band.low) & upper]


def _is_na(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _as_float(v: Any) -> float | None:
    if v is None or _is_na(v):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _num_text(v: Any) -> str:
    v = plain(v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
