"""Calibrated generation: host-sampled profiles and oversample-and-select (issue 8).

LLM-written survey rows drift from the real distributions: cluster and demographic shares move,
answers pile on the modal option, spread shrinks. The calibrated mode keeps the LLM's job — writing
coherent respondents — and lets the host guarantee the distributions it knows:

1. **Profiles.** For every requested row the host draws the cluster label from the real cluster
   shares and a few *anchor* variables (by default the wave's demographics, e.g. age band and sex)
   jointly from that cluster's empirical distribution: the anchor tuple of a random real respondent
   of that cluster — never a whole real row. Continuous anchors are given as a band (``age
   35-44``). The prompt asks the LLM to complete exactly these profiles, and a returned row that
   does not keep its profile is rejected, counted and asked for again (:class:`CalibratedPrompt`).
   For schema-guided decoders (local models) each call's response schema also fixes the profiles
   (:func:`profiled_batch_model`); hosted models keep one shared schema for prompt caching.
   In the full mode a profile also carries the *missingness pattern* of the same real
   respondent (which items it left unanswered): the model answers only the other items, so the
   rows' item non-response follows the cluster's real patterns, not the model's habit of
   answering everything.
2. **Oversample and select.** The loop collects ``oversample x N`` valid rows, sampled at
   :data:`POOL_TEMPERATURE` unless the user set a temperature; :func:`select_rows`
   then keeps exactly ``N`` whole rows (cells of different rows are never mixed) whose per-cluster
   marginal distribution of every variable — NA included where the mode allows NA — is as close as
   possible to the real one, with cluster counts matched to the real shares. Rows identical to a
   real row or a few-shot example are used only when a cluster has no other rows left.

Everything is seeded and deterministic. Functions here are pure (data frames in, data frames and
numbers out) except :class:`CalibratedPrompt`, which keeps the books of which profile each call
was asked to complete.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from panelsynth.config import POOL_TEMPERATURE
from panelsynth.demographics import resolve_demographics
from panelsynth.errors import ConfigError
from panelsynth.generate import (
    GenerationPrompt,
    GenerationResult,
    GenerationSettings,
    row_key,
    with_request,
)
from panelsynth.llm.base import Message
from panelsynth.pydantic_models.rows import RowSpec
from panelsynth.values import plain

log = logging.getLogger("panelsynth")

#: Lower edges of the age bands used in profiles (the last band runs to the variable's maximum).
AGE_BAND_EDGES: tuple[int, ...] = (18, 25, 35, 45, 55, 65, 75)
#: Bands of a continuous anchor that is not an age: quantile bands of the real values.
N_QUANTILE_BANDS = 5
#: Bins of a continuous variable when its marginal is matched by the selection.
N_MATCH_BINS = 10
#: Copies are used only when a cluster has no other row: the penalty per copy exceeds any gain.
_COPY_PENALTY_PER_VARIABLE = 2.0

PROFILE_RULE = (
    "- Each request lists one profile per respondent: the cluster and some answers are fixed in "
    "advance. Respondent i of your answer completes profile i: it keeps that cluster and those "
    "values exactly (a number given as a range must lie inside the range) and answers every other "
    "question like a member of that cluster."
)


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
    ) -> ProfileDesign:
        """Cluster shares and per-cluster anchor tuples (continuous anchors banded) of ``real``.

        A respondent whose anchor is NA gives a donor tuple only where the anchor's spec allows
        NA (full mode); in the dense mode such respondents give no tuple. With
        ``pattern_columns``, each donor also gives its missingness pattern over them (which it
        left unanswered), drawn together with its anchors.

        Raises:
            ConfigError: a cluster has no respondent with a usable anchor tuple.
        """
        by_name = {s.name: s for s in specs}
        labels = pd.to_numeric(real[cluster_column], errors="coerce")
        counts = labels.dropna().astype(int).value_counts()
        clusters = sorted(int(c) for c in counts.index)
        total = float(counts.sum())
        shares = {c: float(counts[c]) / total for c in clusters}
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
        return cls(cluster_column, shares, list(anchors), donors, seed, pcols, patterns)

    def draw(self, n: int) -> list[Profile]:
        """``n`` profiles: cluster counts allocated from the shares, order and donors seeded."""
        counts = allocate(self.shares, n)
        labels = np.repeat(list(counts), list(counts.values()))
        rng = np.random.default_rng([self.seed, 8001])
        labels = rng.permutation(labels)
        return [self._profile(int(c), rng) for c in labels]

    def extra(self, index: int) -> Profile:
        """Profile ``index`` beyond the planned ones (cluster drawn from the shares), seeded."""
        rng = np.random.default_rng([self.seed, 8002, index])
        clusters = list(self.shares)
        p = np.array([self.shares[c] for c in clusters])
        return self._profile(int(clusters[rng.choice(len(clusters), p=p / p.sum())]), rng)

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


PATTERN_RULE = (
    "- A profile's questions given as null (no answer) stay null: the respondent skipped them. "
    "Answer every other question."
)


def add_profile_rule(prefix: list[Message], patterns: bool = False) -> list[Message]:
    """The step-3 prefix with the profile rule appended (static: prompt caching still applies).

    ``patterns``: the profiles carry missingness patterns (full mode), and a rule says so.
    """
    msgs = [dict(m) for m in prefix]
    msgs[-1]["content"] += "\n" + PROFILE_RULE + ("\n" + PATTERN_RULE if patterns else "")
    return msgs


# ----------------------------------------------------------------------------------------------
# the prompt of a calibrated run
@dataclass
class CalibratedPrompt(GenerationPrompt):
    """A step-3 prompt whose per-batch suffix lists the profiles to complete.

    Batch ``b`` of the planned ones completes profiles ``b*n .. b*n+n-1`` of :attr:`profiles`;
    top-up batches complete the profiles still unfulfilled (those whose rows were invalid,
    off-profile or copies), so the pool keeps the planned composition. Which profiles a batch was
    asked for and which it fulfilled go into its checkpoint record, so ``--resume`` continues with
    the same books.
    """

    profiles: list[Profile] = field(default_factory=list)
    design: ProfileDesign | None = None
    n_outputs: int = 10
    cluster_column: str = "cluster"
    assigned: dict[int, list[int]] = field(default_factory=dict)
    fulfilled: set[int] = field(default_factory=set)
    off_profile_rows: int = 0
    blanked_cells: int = 0  # answers to questions the profile leaves unanswered, set to NA
    unplanned_na: int = 0  # questions the profile answers that a row left NA (kept)
    row_model: type[BaseModel] | None = None  # set: profiles are also written into the schema
    _models: dict[tuple[Profile, ...], type[BaseModel]] = field(default_factory=dict, repr=False)

    @classmethod
    def wrap(
        cls,
        prompt: GenerationPrompt,
        design: ProfileDesign,
        n_profiles: int,
        n_outputs: int,
        *,
        row_model: type[BaseModel] | None = None,
    ) -> CalibratedPrompt:
        """A calibrated prompt with the prefix of ``prompt`` and ``n_profiles`` planned profiles.

        With ``row_model``, each call's response schema also fixes every row's profile (see
        :func:`profiled_batch_model`); without it the schema is the shared one and only the
        prompt and the validator hold rows to their profiles.
        """
        return cls(
            prefix=prompt.prefix,
            n_examples_used=prompt.n_examples_used,
            notes=list(prompt.notes),
            profiles=design.draw(n_profiles),
            design=design,
            n_outputs=n_outputs,
            cluster_column=design.cluster_column,
            row_model=row_model,
        )

    def profile(self, index: int) -> Profile:
        if index < len(self.profiles):
            return self.profiles[index]
        assert self.design is not None
        return self.design.extra(index)

    def profile_ids(self, batch: int) -> list[int]:
        """The profiles batch ``batch`` completes (planned batches: a fixed slice)."""
        if batch not in self.assigned:
            start = batch * self.n_outputs
            if start < len(self.profiles):
                self.assigned[batch] = list(range(start, start + self.n_outputs))
            else:  # a top-up batch that was not planned (e.g. its books were lost): fresh ones
                self.plan([batch])
        return self.assigned[batch]

    def plan(self, batches: Sequence[int]) -> None:
        """Give top-up batches the unfulfilled profiles, oldest first, then fresh ones.

        Called between rounds, when every batch asked so far has finished: a profile of a
        finished batch that got no row is free again.
        """
        pending = [i for i in range(len(self.profiles)) if i not in self.fulfilled]
        fresh = max([len(self.profiles), *(max(ids) + 1 for ids in self.assigned.values() if ids)])
        for b in batches:
            take, pending = pending[: self.n_outputs], pending[self.n_outputs :]
            while len(take) < self.n_outputs:
                take.append(fresh)
                fresh += 1
            self.assigned[b] = take

    def response_model(self, batch: int, default: type[BaseModel]) -> type[BaseModel]:
        """The shared batch model, or one whose schema fixes each row's profile."""
        if self.row_model is None:
            return default
        profiles = tuple(self.profile_ids(batch))
        key = tuple(self.profile(i) for i in profiles)
        if key not in self._models:
            self._models[key] = profiled_batch_model(
                self.row_model,
                [self.profile(i) for i in profiles],
                self.cluster_column,
                self.design.pattern_columns if self.design else (),
            )
        return self._models[key]

    def for_batch(self, batch: int, n_rows: int) -> list[Message]:
        ids = self.profile_ids(batch)[:n_rows]
        lines = [
            f"\n\nRequest {batch + 1}: generate exactly {len(ids)} new, distinct respondents as "
            f'{{"rows": [...]}}, one per profile below and in this order; keep each profile '
            f"exactly. Do not copy the examples.",
        ]
        lines += [
            f"Respondent {k + 1}: {self.profile(i).text(self.cluster_column)}"
            for k, i in enumerate(ids)
        ]
        return with_request(self.prefix, "\n".join(lines))

    def check_rows(
        self, batch: int, rows: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
        """Keep the rows that keep a profile of the batch (each profile at most once).

        A row is matched to its own position's profile when it keeps it, else to the first
        unmatched profile of the batch it keeps (rows before it may have been dropped as invalid,
        so positions are only a hint); a row that keeps none is rejected.

        Returns:
            The kept rows, one error per rejected row, and the fields for the checkpoint record.
        """
        ids = self.profile_ids(batch)
        used: set[int] = set()
        kept: list[dict[str, Any]] = []
        matched: list[int] = []
        errors: list[str] = []
        for pos, row in enumerate(rows):
            order = ([pos] if pos < len(ids) else []) + list(range(len(ids)))
            hit = next(
                (
                    k
                    for k in order
                    if k not in used and self.profile(ids[k]).keeps(row, self.cluster_column)
                ),
                None,
            )
            if hit is None:
                want = self.profile(ids[pos]).text(self.cluster_column) if pos < len(ids) else "-"
                errors.append(f"row {pos}: does not keep its profile ({want})")
                continue
            used.add(hit)
            kept.append(row)
            matched.append(ids[hit])
        blanked, unplanned = self._apply_patterns(kept, matched)
        self.fulfilled.update(matched)
        self.off_profile_rows += len(errors)
        book: dict[str, Any] = {"profiles": ids, "fulfilled": matched, "off_profile": len(errors)}
        if blanked or unplanned:
            book.update(blanked_cells=blanked, unplanned_na=unplanned)
        if errors:
            book["off_profile_errors"] = errors[:3]
        return kept, errors, book

    def _apply_patterns(self, rows: list[dict[str, Any]], matched: list[int]) -> tuple[int, int]:
        """Give every kept row its profile's missingness pattern (full mode).

        The pattern is the host's: an answer to a question the profile leaves unanswered is set
        to NA (a schema-guided decoder cannot write one); a question the profile answers that the
        row left NA stays NA and is counted. Returns (blanked cells, unplanned NA cells).
        """
        columns = self.design.pattern_columns if self.design else []
        if not columns:
            return 0, 0
        blanked = unplanned = 0
        for row, i in zip(rows, matched, strict=True):
            gaps = set(self.profile(i).missing)
            for col in columns:
                value = row.get(col)
                empty = value is None or _is_na(value)
                if col in gaps and not empty:
                    row[col] = None
                    blanked += 1
                elif col not in gaps and empty:
                    unplanned += 1
        self.blanked_cells += blanked
        self.unplanned_na += unplanned
        return blanked, unplanned

    def restore(self, record: Mapping[str, Any]) -> None:
        """Take the books of a checkpointed call (its profiles and which it fulfilled)."""
        b = int(record["batch"])
        if "profiles" in record:
            self.assigned[b] = [int(i) for i in record["profiles"]]
        self.fulfilled.update(int(i) for i in record.get("fulfilled", ()))
        self.off_profile_rows += int(record.get("off_profile", 0))
        self.blanked_cells += int(record.get("blanked_cells", 0))
        self.unplanned_na += int(record.get("unplanned_na", 0))

    def summary(self) -> dict[str, Any]:
        planned = len(self.profiles)
        out: dict[str, Any] = {
            "planned_profiles": planned,
            "fulfilled_planned_profiles": len([i for i in self.fulfilled if i < planned]),
            "off_profile_rows": self.off_profile_rows,
        }
        if self.design is not None and self.design.pattern_columns:
            out["missingness_patterns"] = {
                "items": list(self.design.pattern_columns),
                "source": "each profile's pattern of unanswered items is that of the real "
                "respondent of its cluster its anchors come from",
                "answers_set_to_na": self.blanked_cells,
                "unplanned_na_cells": self.unplanned_na,
            }
        return out


class _ProfiledRows(BaseModel):
    """Base of :func:`profiled_batch_model`: ``rows`` lists the respondents in order."""

    model_config = ConfigDict(extra="ignore")

    @property
    def rows(self) -> list[dict[str, Any]]:
        names = sorted(
            (k for k in type(self).model_fields if k.startswith("respondent_")),
            key=lambda k: int(k.rsplit("_", 1)[1]),
        )
        return [getattr(self, k) for k in names]


def profiled_batch_model(
    row_model: type[BaseModel],
    profiles: Sequence[Profile],
    cluster_column: str = "cluster",
    pattern_columns: Sequence[str] = (),
) -> type[BaseModel]:
    """A response model whose schema fixes each row's profile (for schema-guided decoders).

    The schema is an object ``respondent_1 .. respondent_n``; in respondent ``k`` the cluster and
    the coded anchors of profile ``k`` are constants and a banded anchor is a number inside its
    band. Validation stays lenient (each respondent is a plain object, validated row by row by
    the caller through ``.rows``), like :func:`~panelsynth.pydantic_models.rows.batch_model`.
    Constrained decoders (llama.cpp, vLLM, Ollama) then cannot leave the profile, which small
    models otherwise rarely keep; hosted models keep the shared schema so that prompt caching
    applies. With ``pattern_columns`` (full mode), a question the profile leaves unanswered is
    ``null`` and every other question of the pattern must be answered (no ``null`` option).
    """
    base = row_model.model_json_schema()
    if "$defs" in base:  # a workspace row model with references: keep its schema as it is
        return _profiled_model(
            [copy.deepcopy({k: v for k, v in base.items() if k != "title"})] * len(profiles),
            base.get("$defs"),
        )
    schemas = []
    for p in profiles:
        row = copy.deepcopy({k: v for k, v in base.items() if k != "title"})
        props = row.get("properties", {})
        gaps = set(p.missing)
        for name in pattern_columns:
            if name in props and name not in gaps:
                props[name] = _not_null(props[name])
        fixed = {cluster_column: p.cluster, **dict(p.anchors), **{m: None for m in p.missing}}
        for name, value in fixed.items():
            if name not in props:
                continue
            if value is None:
                props[name] = {"type": "null"}
            elif isinstance(value, Band):
                kind = "integer" if value.integer else "number"
                lo, hi = (
                    (int(value.low), int(value.high)) if value.integer else (value.low, value.high)
                )
                props[name] = {"type": kind, "minimum": lo, "maximum": hi}
            else:
                props[name] = {"const": plain(value)}
        schemas.append(row)
    return _profiled_model(schemas, None)


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A property schema without its ``null`` option."""
    options = prop.get("anyOf")
    if not options:
        return prop
    rest = [o for o in options if o.get("type") != "null"]
    if len(rest) != 1:
        return prop
    out = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**out, **rest[0]}


def _profiled_model(schemas: list[dict[str, Any]], defs: dict[str, Any] | None) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for k, schema in enumerate(schemas):
        extra = {"$defs": defs} if defs else {}
        typ = Annotated[dict[str, Any], WithJsonSchema({**schema, **extra})]
        fields[f"respondent_{k + 1}"] = (typ, Field(...))
    model = create_model("ProfiledRespondents", __base__=_ProfiledRows, **fields)
    model.__doc__ = f"{len(schemas)} synthetic survey respondents, each completing its profile."
    return model


# ----------------------------------------------------------------------------------------------
# selection
@dataclass
class _Var:
    name: str
    categories: list[Any]  # category labels; the NA category is the label None
    edges: np.ndarray | None  # interior bin edges of a continuous variable
    na_category: bool  # NA counted as a category (the mode allows NA)


@dataclass
class Targets:
    """What the selection aims at: cluster counts and per-cluster category shares."""

    cluster_column: str
    counts: dict[int, int]
    shares: dict[int, float]
    variables: list[_Var]
    distributions: dict[int, list[np.ndarray]]  # cluster -> per variable, shares of categories

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Category index of every cell (rows x variables); -1 for a value with no category."""
        out = np.full((len(frame), len(self.variables)), -1, dtype=np.int64)
        for j, var in enumerate(self.variables):
            out[:, j] = _categorise(frame[var.name], var)
        return out


def build_targets(
    real: pd.DataFrame,
    specs: Sequence[RowSpec],
    *,
    cluster_column: str,
    n: int,
    variables: Sequence[str] | None = None,
) -> Targets:
    """The real cluster counts for ``n`` rows and the real per-cluster marginals.

    Coded variables keep their codes as categories; continuous ones are cut at the deciles of the
    real values. NA is a category of its own where the spec allows NA (full mode); elsewhere the
    target is the distribution of the answers given (NA excluded), as the synthetic rows of the
    dense mode have no NA.

    Args:
        real: Real respondents of the wave (all of them: cluster shares come from here).
        specs: Column specs of the wave.
        cluster_column: The cluster column.
        n: Rows to select.
        variables: Variables to match (default: every spec but the cluster column).
    """
    names = (
        list(variables)
        if variables is not None
        else [s.name for s in specs if s.name != cluster_column]
    )
    by_name = {s.name: s for s in specs}
    labels = pd.to_numeric(real[cluster_column], errors="coerce")
    counts_real = labels.dropna().astype(int).value_counts()
    clusters = sorted(int(c) for c in counts_real.index)
    total = float(counts_real.sum())
    shares = {c: float(counts_real[c]) / total for c in clusters}
    counts = allocate(shares, n)
    vars_: list[_Var] = []
    for name in names:
        spec = by_name.get(name)
        na = bool(spec.nullable) if spec is not None else False
        if spec is not None and spec.codes:
            cats: list[Any] = [row_key([c])[0] for c in spec.codes]
            edges = None
        else:
            x = pd.to_numeric(real[name], errors="coerce").dropna().to_numpy(dtype=float)
            qs = np.quantile(x, np.linspace(0, 1, N_MATCH_BINS + 1)[1:-1]) if len(x) else []
            edges = np.unique(np.asarray(qs, dtype=float))
            cats = list(range(len(edges) + 1))
        if na:
            cats = [*cats, None]
        vars_.append(_Var(name, cats, edges, na))
    targets = Targets(cluster_column, counts, shares, vars_, {})
    codes = targets.codes(real)
    for c in clusters:
        mask = (labels == c).to_numpy()
        dists = []
        for j, var in enumerate(vars_):
            col = codes[mask, j]
            col = col[col >= 0]
            k = len(var.categories)
            d = np.bincount(col, minlength=k).astype(float)
            dists.append(d / d.sum() if d.sum() else np.full(k, 1.0 / k))
        targets.distributions[c] = dists
    return targets


def _categorise(values: pd.Series, var: _Var) -> np.ndarray:
    out = np.full(len(values), -1, dtype=np.int64)
    na = values.isna().to_numpy()
    if var.na_category:
        out[na] = len(var.categories) - 1
    if var.edges is not None:
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        ok = ~np.isnan(x)
        out[ok] = np.searchsorted(var.edges, x[ok], side="right")
        return out
    index = {c: i for i, c in enumerate(var.categories) if c is not None}
    for i, v in enumerate(values.tolist()):
        if not na[i]:
            out[i] = index.get(row_key([v])[0], -1)
    return out


def marginal_distance(frame: pd.DataFrame, targets: Targets) -> dict[str, Any]:
    """Total variation distance of each variable's per-cluster marginal from the real one.

    Returns:
        ``mean_tvd`` (mean over clusters and variables), ``per_cluster`` (cluster -> mean),
        ``per_variable`` (cluster -> variable -> TVD), ``cluster_shares`` (real vs these rows)
        and ``cluster_share_tvd``.
    """
    labels = pd.to_numeric(frame[targets.cluster_column], errors="coerce")
    codes = targets.codes(frame)
    per_var: dict[str, dict[str, float]] = {}
    per_cluster: dict[str, float] = {}
    values: list[float] = []
    for c, dists in targets.distributions.items():
        mask = (labels == c).to_numpy()
        row: dict[str, float] = {}
        for j, var in enumerate(targets.variables):
            col = codes[mask, j]
            col = col[col >= 0]
            if len(col) == 0:
                tvd = 1.0 if mask.any() or len(frame) else math.nan
            else:
                got = np.bincount(col, minlength=len(var.categories)) / len(col)
                tvd = 0.5 * float(np.abs(got - dists[j]).sum())
            row[var.name] = round(tvd, 6)
        per_var[str(c)] = row
        ok = [v for v in row.values() if not math.isnan(v)]
        per_cluster[str(c)] = round(float(np.mean(ok)), 6) if ok else math.nan
        values += ok
    shares_here = labels.value_counts(normalize=True)
    shares = {
        str(c): {"real": round(s, 6), "rows": round(float(shares_here.get(c, 0.0)), 6)}
        for c, s in targets.shares.items()
    }
    share_tvd = 0.5 * sum(abs(v["real"] - v["rows"]) for v in shares.values())
    return {
        "mean_tvd": round(float(np.mean(values)), 6) if values else math.nan,
        "per_cluster": per_cluster,
        "per_variable": per_var,
        "cluster_shares": shares,
        "cluster_share_tvd": round(share_tvd, 6),
    }


@dataclass
class Selection:
    """The selected rows and how far the pool and the selection are from the real marginals."""

    rows: pd.DataFrame
    indices: list[int]  # positions in the pool, ascending
    before: dict[str, Any]
    after: dict[str, Any]
    counts: dict[int, int]
    copies_pool: int = 0
    copies_selected: int = 0
    notes: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """JSON-ready summary for the manifest."""
        return {
            "pool_rows": int(self.before.get("rows", 0)),
            "selected_rows": int(len(self.rows)),
            "cluster_counts": {str(k): v for k, v in self.counts.items()},
            "marginal_distance_before": self.before,
            "marginal_distance_after": self.after,
            "copies_in_pool": self.copies_pool,
            "copies_selected": self.copies_selected,
            "notes": self.notes,
        }


def select_rows(
    pool: pd.DataFrame,
    real: pd.DataFrame,
    specs: Sequence[RowSpec],
    n: int,
    *,
    cluster_column: str,
    seed: int,
    avoid: Iterable[tuple[Any, ...]] = (),
    key_columns: Sequence[str] | None = None,
    variables: Sequence[str] | None = None,
    max_swaps: int | None = None,
) -> Selection:
    """Select ``n`` whole rows of ``pool`` whose per-cluster marginals match ``real``.

    Cluster counts are the real shares of ``n`` (largest remainder). Within each cluster a greedy
    pass picks, row by row, the row that most reduces the L1 distance between the selection's
    category counts and the target counts summed over variables, then a local search swaps a
    selected row for an unselected one while that lowers the distance. Rows whose
    :func:`~panelsynth.generate.row_key` over ``key_columns`` is in ``avoid`` (copies of a real
    row or a few-shot example) carry a penalty larger than any gain, so they are selected only
    when the cluster has no other row left. Ties are broken by a seeded shuffle of the pool.

    Args:
        pool: Valid synthetic rows (more than ``n``).
        real: Real respondents of the wave.
        specs: Column specs of the wave.
        n: Rows to keep.
        cluster_column: The cluster column.
        seed: Random state of the tie-breaking.
        avoid: Row keys of rows not to prefer.
        key_columns: Columns of the row keys (default: the pool's columns).
        variables: Variables to match (default: every spec but the cluster column).
        max_swaps: Bound on local-search swaps per cluster (default: ``4 * n`` + 100).

    Returns:
        The selection; rows keep the pool's order.
    """
    if n > len(pool):
        raise ValueError(f"cannot select {n} rows from a pool of {len(pool)}")
    targets = build_targets(real, specs, cluster_column=cluster_column, n=n, variables=variables)
    before = {"rows": int(len(pool)), **marginal_distance(pool, targets)}
    avoid_set = set(avoid)
    keys_cols = list(key_columns) if key_columns is not None else list(pool.columns)
    copies = (
        np.array(
            [row_key(r) in avoid_set for r in pool[keys_cols].itertuples(index=False)], dtype=bool
        )
        if avoid_set
        else np.zeros(len(pool), dtype=bool)
    )
    labels = pd.to_numeric(pool[cluster_column], errors="coerce").to_numpy()
    codes = targets.codes(pool)
    counts, notes = _feasible_counts(targets.counts, labels)
    rng = np.random.default_rng([seed, 8003])
    penalty = _COPY_PENALTY_PER_VARIABLE * max(1, len(targets.variables)) + 1.0
    chosen: list[int] = []
    for c, need in counts.items():
        if need <= 0:
            continue
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        dists = targets.distributions.get(c)
        if dists is None:  # a cluster the real data lacks: nothing to match, keep seeded order
            chosen += [int(i) for i in members[:need]]
            continue
        picked = _select_cluster(
            codes[members],
            copies[members],
            dists,
            need,
            penalty,
            rng,
            max_swaps if max_swaps is not None else 4 * need + 100,
        )
        chosen += [int(members[i]) for i in picked]
    chosen.sort()
    rows = pool.iloc[chosen].reset_index(drop=True)
    after = {"rows": int(len(rows)), **marginal_distance(rows, targets)}
    for note in notes:
        log.warning(note)
    return Selection(
        rows=rows,
        indices=chosen,
        before=before,
        after=after,
        counts=counts,
        copies_pool=int(copies.sum()),
        copies_selected=int(copies[chosen].sum()) if chosen else 0,
        notes=notes,
    )


def _feasible_counts(
    wanted: dict[int, int], labels: np.ndarray
) -> tuple[dict[int, int], list[str]]:
    """Target counts capped by the pool; a shortfall goes to the clusters with rows to spare."""
    have = {c: int((labels == c).sum()) for c in wanted}
    others = sorted({int(x) for x in labels[~np.isnan(labels.astype(float))]} - set(wanted))
    counts = {c: min(k, have[c]) for c, k in wanted.items()}
    notes: list[str] = []
    short = sum(wanted.values()) - sum(counts.values())
    if short:
        short_txt = ", ".join(
            f"cluster {c}: {have[c]} of {k}" for c, k in wanted.items() if have[c] < k
        )
        notes.append(
            f"the pool has too few rows of some clusters ({short_txt}); the {short} missing "
            f"rows come from other clusters, so cluster shares are off by up to "
            f"{short / max(1, sum(wanted.values())):.1%}"
        )
    while short:
        spare = {c: have.get(c, 0) - counts.get(c, 0) for c in [*wanted, *others]}
        best = max(spare, key=lambda c: (spare[c], -c))
        if spare[best] <= 0:
            break
        counts[best] = counts.get(best, 0) + 1
        short -= 1
    return counts, notes


def _select_cluster(
    codes: np.ndarray,
    copies: np.ndarray,
    dists: list[np.ndarray],
    need: int,
    penalty: float,
    rng: np.random.Generator,
    max_swaps: int,
) -> list[int]:
    """Indices (into ``codes``) of ``need`` rows: greedy, then best-improvement swaps."""
    m, v = codes.shape
    if need >= m:
        return list(range(m))
    sizes = [len(d) for d in dists]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    # flat category index per cell; a value outside every category gets a dump slot with target 0
    dump = int(sum(sizes))
    flat = np.where(codes >= 0, codes + offsets[None, :], dump)
    target = np.concatenate([*[d * need for d in dists], [0.0]])
    counts = np.zeros(dump + 1, dtype=float)
    cost = penalty * copies.astype(float)
    selected = np.zeros(m, dtype=bool)

    # greedy: gain of adding a row = sum over its cells of |S - T| - |S + 1 - T|
    for _ in range(need):
        gain_cell = np.abs(counts - target) - np.abs(counts + 1 - target)
        gain = gain_cell[flat].sum(axis=1) - cost
        gain[selected] = -np.inf
        best = int(np.argmax(gain))
        selected[best] = True
        np.add.at(counts, flat[best], 1.0)

    # local search: swap selected i for unselected o when it lowers the distance (+ penalties)
    cap = 600  # rows per side in one pass: bounds memory (cap^2 x variables)
    stale = 0
    for _ in range(max_swaps):
        ins = np.flatnonzero(selected)
        outs = np.flatnonzero(~selected)
        if len(outs) == 0:
            break
        if len(ins) > cap:
            ins = rng.choice(ins, cap, replace=False)
        if len(outs) > cap:
            outs = rng.choice(outs, cap, replace=False)
        rem_cell = np.abs(counts - 1 - target) - np.abs(counts - target)
        add_cell = np.abs(counts + 1 - target) - np.abs(counts - target)
        fi, fo = flat[ins], flat[outs]  # (a, v), (b, v)
        differ = fi[:, None, :] != fo[None, :, :]
        delta = (differ * (rem_cell[fi][:, None, :] + add_cell[fo][None, :, :])).sum(axis=2)
        delta += cost[outs][None, :] - cost[ins][:, None]
        k = int(np.argmin(delta))
        a, b = divmod(k, len(outs))
        if delta[a, b] >= -1e-9:
            full = len(ins) == int(selected.sum()) and len(outs) == int((~selected).sum())
            stale += 1
            if full or stale >= 3:
                break
            continue
        stale = 0
        i, o = int(ins[a]), int(outs[b])
        selected[i], selected[o] = False, True
        np.add.at(counts, flat[i], -1.0)
        np.add.at(counts, flat[o], 1.0)
    return [int(i) for i in np.flatnonzero(selected)]


# ----------------------------------------------------------------------------------------------
# helpers
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


# ----------------------------------------------------------------------------------------------
# one calibrated run
@dataclass
class CalibrationSetup:
    """Everything a calibrated run of one wave needs besides the plain pipeline.

    Build it with :func:`setup_calibration`.
    """

    real: pd.DataFrame
    specs: list[RowSpec]
    columns: list[str]
    cluster_column: str
    anchors: list[str]
    oversample: float
    n_rows: int
    pool_settings: GenerationSettings
    design: ProfileDesign
    seed: int
    profiles_in_schema: bool = False

    @property
    def pool_rows(self) -> int:
        """Valid rows the loop collects: ``ceil(oversample x n_rows)``, in whole calls."""
        return self.pool_settings.wanted

    def prompt_columns(self) -> list[str]:
        """Column order of the examples and the row schema: cluster and anchors first.

        The model writes the profile, then answers in its light (measured with SmolLM2-135M and
        the profile fixed in the schema, the plain order was no better: mixed over two seeds).
        """
        return profile_first(self.columns, self.cluster_column, self.anchors)

    def row_specs(self) -> list[RowSpec]:
        """The wave's specs in :meth:`prompt_columns` order (the LLM writes the profile first)."""
        by_name = {s.name: s for s in self.specs}
        return [by_name[c] for c in self.prompt_columns()]

    def wrap(
        self, prompt: GenerationPrompt, *, row_model: type[BaseModel] | None = None
    ) -> CalibratedPrompt:
        """The calibrated prompt over ``prompt``'s prefix, with the planned profiles.

        Args:
            prompt: The fitted step-3 prompt (its prefix is kept as it is).
            row_model: Given, the profiles are also fixed in each call's response schema.
        """
        return CalibratedPrompt.wrap(
            prompt,
            self.design,
            self.pool_rows,
            self.pool_settings.n_outputs,
            row_model=row_model if self.profiles_in_schema else None,
        )

    def profiles_fingerprint(self) -> str:
        """A hash of the planned profiles (part of the checkpoint's fingerprint)."""
        from panelsynth.cache import fingerprint

        return fingerprint([p.to_json() for p in self.design.draw(self.pool_rows)])

    def suffix_tokens(self, client: Any) -> int:
        """Tokens the profile lines add to a call (room kept when the prompt is fitted)."""
        lines = [
            f"Respondent {k + 1}: {p.text(self.cluster_column)}"
            for k, p in enumerate(self.design.draw(self.pool_settings.n_outputs))
        ]
        return int(client.count_tokens("\n".join(lines))) + 40

    def apply(
        self,
        gen: GenerationResult,
        prompt: GenerationPrompt,
        *,
        examples: pd.DataFrame,
    ) -> tuple[GenerationResult, dict[str, Any]]:
        """Select the rows of a finished pool; returns the result to write and the manifest entry.

        The manifest entry holds the settings, the pool and selected sizes, the marginal distance
        of the pool (``marginal_distance_before``) and of the selection (``..._after``), copy
        counts, and the profile books (off-profile rows, fulfilled profiles).
        """
        sel, report = self.select(gen.rows, examples=examples)
        books = prompt.summary() if isinstance(prompt, CalibratedPrompt) else {}
        before, after = sel.before["mean_tvd"], sel.after["mean_tvd"]
        log.info(
            "calibrated selection: %d of %d rows; mean TVD per variable and cluster %.4f -> %.4f",
            len(sel.rows),
            len(gen.rows),
            before,
            after,
        )
        return replace(gen, rows=sel.rows), {**self.settings(), **books, **report}

    def settings(self) -> dict[str, Any]:
        """The calibration settings (checkpoint header and manifest)."""
        return {
            "enabled": True,
            "oversample": self.oversample,
            "anchors": list(self.anchors),
            "rows": self.n_rows,
            "pool_rows": self.pool_rows,
            "pool_batches": self.pool_settings.n_batches,
            "profiles_in_schema": self.profiles_in_schema,
            "missingness_patterns": bool(self.design.pattern_columns),
            "temperature": self.pool_settings.temperature,
            "selection": "greedy + swap search on per-cluster marginals (L1), copies last",
            "real_cluster_shares": {str(k): round(v, 6) for k, v in self.design.shares.items()},
        }

    def select(
        self,
        pool: pd.DataFrame,
        *,
        examples: pd.DataFrame,
    ) -> tuple[Selection, dict[str, Any]]:
        """Select the run's rows from the pool; returns the selection and its manifest report.

        A copy is a row equal to a real row or a few-shot example on every survey variable
        (cluster labels aside, as the evaluation counts copies).

        Args:
            pool: The valid rows the loop collected.
            examples: The few-shot examples of the prompt.
        """
        keys_on = self.key_columns()
        real_keys = {row_key(r) for r in self.real[keys_on].itertuples(index=False)}
        example_keys = {row_key(r) for r in examples[keys_on].itertuples(index=False)}
        sel = select_rows(
            pool,
            self.real,
            self.specs,
            min(self.n_rows, len(pool)),
            cluster_column=self.cluster_column,
            seed=self.seed,
            avoid=real_keys | example_keys,
            key_columns=keys_on,
        )
        report = sel.report()
        report["copies"] = {
            "compared_on": keys_on,
            "of_examples": {
                "pool": _count_keys(pool, keys_on, example_keys),
                "selected": _count_keys(sel.rows, keys_on, example_keys),
            },
            "of_real_rows": {
                "pool": _count_keys(pool, keys_on, real_keys),
                "selected": _count_keys(sel.rows, keys_on, real_keys),
            },
        }
        return sel, report

    def key_columns(self) -> list[str]:
        """The survey variables (not the cluster labels): what a copy is compared on."""
        return [s.name for s in self.specs if s.vtype != "cluster"]


def setup_calibration(
    real: pd.DataFrame,
    specs: Sequence[RowSpec],
    settings: GenerationSettings,
    *,
    oversample: float,
    anchors: Sequence[str] | None,
    demographics: Sequence[str],
    cluster_column: str,
    profiles_in_schema: bool = False,
    temperature: float | None = None,
) -> CalibrationSetup:
    """Resolve the anchors, the profile design and the pool size of a calibrated run.

    Args:
        real: Every real respondent of the wave (cluster shares and anchors come from here).
        specs: Column specs of the wave (their order is the CSV's).
        settings: The run's settings (rows = ``n_outputs x n_batches``).
        oversample: Pool size as a multiple of the rows kept (>= 1).
        anchors: Anchor variables (``None``: the demographics present in the wave).
        demographics: Config ``prepare.demographics``.
        cluster_column: The cluster column.
        profiles_in_schema: Also fix each row's profile in the response schema of every call
            (for schema-guided decoders such as local models; hosted models keep one shared
            schema so that provider prompt caching applies).
        temperature: Sampling temperature of the pool (``None``: :data:`POOL_TEMPERATURE`).

    Raises:
        ConfigError: an anchor is unknown, ``oversample`` is below 1, or a cluster has no
            respondent with every anchor.
    """
    if not oversample >= 1.0:
        raise ConfigError(f"--oversample must be at least 1 (got {oversample}) — use e.g. 2.0")
    names = resolve_anchors(
        anchors, specs, demographics=demographics, cluster_column=cluster_column
    )
    n_rows = settings.wanted
    pool = math.ceil(round(oversample * n_rows, 9))
    pool_settings = replace(
        settings,
        n_batches=max(1, math.ceil(pool / settings.n_outputs)),
        temperature=POOL_TEMPERATURE if temperature is None else temperature,
    )
    pattern_columns = [
        s.name
        for s in specs
        if s.nullable and s.vtype != "cluster" and s.name != cluster_column and s.name not in names
    ]
    design = ProfileDesign.from_frame(
        real,
        specs,
        names,
        cluster_column=cluster_column,
        seed=settings.seed,
        pattern_columns=pattern_columns,
    )
    return CalibrationSetup(
        real=real,
        specs=list(specs),
        columns=[s.name for s in specs],
        cluster_column=cluster_column,
        anchors=names,
        oversample=float(oversample),
        n_rows=n_rows,
        pool_settings=pool_settings,
        design=design,
        seed=settings.seed,
        profiles_in_schema=profiles_in_schema,
    )


def _count_keys(frame: pd.DataFrame, columns: Sequence[str], keys: set[tuple[Any, ...]]) -> int:
    if not keys or frame.empty:
        return 0
    return int(sum(row_key(r) in keys for r in frame[list(columns)].itertuples(index=False)))
