"""What the host carries for a synthetic panel respondent from one wave to the next (issue 19).

A real panel keeps some answers per person: sex and birth year never change, education and region
rarely, age grows by a year between yearly waves. A language model writing each wave's answers
does not know that (SmolLM2 changes a respondent's sex between waves in about 40% of rows), so
the host guarantees it, with rules estimated from the real panel, not from a list of names:

- :func:`estimate_carry` — per consecutive pair of study waves, over the real respondents linked
  by id with an answer in both waves (at least :data:`MIN_LINKED` of them), an item is *fixed*
  when its value is unchanged for at least :data:`FIXED_SHARE` of them, and a numeric item is a
  *shift* ``[low, high]`` when its change (current - previous) lies in that band for at least
  :data:`FIXED_SHARE` of them (the shortest such band) and the band is narrow (at most
  :data:`MAX_SHIFT_WIDTH` of the item's range). A synthetic respondent's previous answers come
  from the last generated wave they answered, possibly several study waves back: the rules of the
  steps in between compose (fixed only if fixed in every step; bands add; an item carried in no
  step, or not carried in one of them, is not carried). An item not asked in a wave in between is
  estimated directly on the two waves' linked respondents. Values a column's spec does not allow
  (a survey's missing codes) count as no answer. Identity and cluster columns are never carried.
- :mod:`panelsynth.panel.anchors` — in a calibrated panel, the first wave's anchors and every
  wave's missingness patterns, drawn from the real respondents of the same cluster.
- :class:`PanelCarry` — per requested row, :meth:`PanelCarry.row_profile` combines the carried
  values of the previous answers, the first wave's anchors and the pattern into a
  :class:`~panelsynth.calibrate.Profile` the prompt shows and checks; :func:`apply` makes a
  returned row keep it (fixed values set, shift items clipped into their band, pattern gaps
  blanked), counting the changed cells — the host's guarantee for hosted models.
- :meth:`PanelCarry.schema_fixed` — for a client whose response schema fixes each row's profile
  (local, schema-guided decoders), which given a numeric range writes its lowest value nearly
  every time: every band becomes one exact value, a shift item's drawn from the real distribution
  of changes (:attr:`Carried.changes`), a first-wave banded anchor's from the real values of the
  respondent's cluster inside the band (seeded per respondent, wave and item).

Everything is seeded; nothing here calls a model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from panelsynth.calibrate.profiles import Band, Profile
from panelsynth.data import id_text
from panelsynth.generate import row_key
from panelsynth.panel.exact import (
    convolve,
    distribution,
    in_band,
    real_values,
    shifted,
    uniform,
)
from panelsynth.pydantic_models.rows import RowSpec
from panelsynth.values import is_missing, plain

#: Share of linked respondents whose answer must be unchanged (fixed) or inside the band (shift).
FIXED_SHARE = 0.98
#: Linked respondents with an answer in both waves needed before an item can be carried.
MIN_LINKED = 20
#: Widest shift band, as a share of the item's range (age +0..+1 on 18-90 is 0.014).
MAX_SHIFT_WIDTH = 0.05


# ----------------------------------------------------------------------------------------------
# one item's rule
@dataclass(frozen=True)
class Carried:
    """How one item carries over: ``fixed`` (the previous value) or ``shift`` (previous value
    plus ``low..high``), within the item's bounds ``minimum..maximum`` where known."""

    kind: Literal["fixed", "shift"]
    low: float = 0.0
    high: float = 0.0
    integer: bool = False
    minimum: float | None = None
    maximum: float | None = None
    #: The current wave's codes of a coded item (a previous value outside them is not carried).
    codes: tuple[Any, ...] = ()
    #: A shift item's real distribution of changes inside its band: ``(change, share)`` pairs
    #: (composed steps: the sum of independent steps' changes); empty: not known.
    changes: tuple[tuple[float, float], ...] = ()

    def then(self, later: Carried) -> Carried:
        """This step followed by ``later``: fixed twice is fixed, bands add (and the changes'
        distributions convolve; a fixed step is a change of 0)."""
        if self.kind == "fixed" and later.kind == "fixed":
            return later
        return Carried(
            "shift",
            self.low + later.low,
            self.high + later.high,
            integer=later.integer,
            minimum=later.minimum,
            maximum=later.maximum,
            codes=later.codes,
            changes=convolve(self._changes(), later._changes()),
        )

    def bounded(self, spec: RowSpec) -> Carried:
        """The rule with the bounds and integer flag of the current wave's ``spec``."""
        return Carried(
            self.kind,
            self.low,
            self.high,
            spec.integer,
            spec.low,
            spec.high,
            tuple(spec.codes),
            self.changes,
        )

    def exact(self, prev_value: Any, u: float) -> Any:
        """What :meth:`allowed` gives, a shift band made one value: the previous value plus a
        change drawn at quantile ``u`` from :attr:`changes` (see :func:`.exact.shifted`)."""
        want = self.allowed(prev_value)
        if not isinstance(want, Band) or want.low == want.high:
            return plain(want.low) if isinstance(want, Band) else want
        return shifted(float(prev_value), want, self._changes(), self.integer, u)

    def _changes(self) -> tuple[tuple[float, float], ...]:
        if self.kind == "fixed":
            return ((0.0, 1.0),)
        return self.changes

    def allowed(self, prev_value: Any) -> Any:
        """What the current answer must be: the value (fixed), a :class:`Band` (shift, clipped
        to the bounds, whole numbers for an integer item) or ``None`` (nothing carried: the
        previous answer is NA, not a number for a shift, or a value the current wave does not
        allow for a fixed item)."""
        if is_missing(prev_value):
            return None
        if self.kind == "fixed":
            return plain(prev_value) if self._allows(prev_value) else None
        try:
            prev = float(prev_value)
        except (TypeError, ValueError):
            return None
        if math.isnan(prev):
            return None
        lo, hi = prev + self.low, prev + self.high
        if self.integer:
            lo, hi = float(math.ceil(lo - 1e-9)), float(math.floor(hi + 1e-9))
        lo, hi = self._clip(lo), self._clip(hi)
        return Band(lo, max(lo, hi), integer=self.integer)

    def keeps(self, prev_value: Any, value: Any) -> bool:
        """Whether ``value`` keeps the rule given ``prev_value`` (always, when nothing is
        carried)."""
        want = self.allowed(prev_value)
        if want is None:
            return True
        if isinstance(want, Band):
            return want.contains(value)
        return row_key([value]) == row_key([want])

    def text(self) -> str:
        """``"fixed"`` / ``"+0..+1"``."""
        if self.kind == "fixed":
            return "fixed"
        return f"{_signed(self.low)}..{_signed(self.high)}"

    def _allows(self, value: Any) -> bool:
        if self.codes:
            return row_key([value])[0] in {row_key([c])[0] for c in self.codes}
        try:
            v = float(value)
        except (TypeError, ValueError):
            return True  # a text answer of an item without codes: kept as it is
        return self._clip(v) == v

    def _clip(self, v: float) -> float:
        if self.minimum is not None:
            v = max(v, float(self.minimum))
        if self.maximum is not None:
            v = min(v, float(self.maximum))
        return v


# ----------------------------------------------------------------------------------------------
# the rules of a panel
@dataclass(frozen=True)
class CarryRules:
    """The carried items of every consecutive study-wave step and of every pair of requested
    waves (``pairs[(a, b)]``: previous answers from ``a``, current wave ``b``; composed over the
    steps in between and bounded to ``b``'s specs)."""

    waves: tuple[str, ...]
    steps: tuple[dict[str, Carried], ...]
    pairs: dict[tuple[str, str], dict[str, Carried]]

    def between(self, previous_wave: str, wave: str) -> dict[str, Carried]:
        """Items carried from ``previous_wave`` to ``wave`` (empty for an unknown pair)."""
        return dict(self.pairs.get((str(previous_wave), str(wave)), {}))

    def to_json(self) -> dict[str, Any]:
        """Per step and per requested pair: item -> ``"fixed"`` / ``"+0..+1"``."""
        return {
            "fixed_share": FIXED_SHARE,
            "min_linked": MIN_LINKED,
            "max_shift_width": MAX_SHIFT_WIDTH,
            "steps": [
                {"from": a, "to": b, "items": {k: r.text() for k, r in s.items()}}
                for a, b, s in zip(self.waves, self.waves[1:], self.steps, strict=False)
            ],
            "pairs": {
                f"{a}-{b}": {k: r.text() for k, r in items.items()}
                for (a, b), items in self.pairs.items()
            },
        }


def estimate_carry(
    frames: Mapping[str, pd.DataFrame],
    specs: Mapping[str, Sequence[RowSpec]],
    study_waves: Sequence[str],
    requested: Sequence[str],
    *,
    id_column: str,
    cluster_column: str = "cluster",
    prev_cluster_column: str | None = "prev_cluster",
) -> CarryRules:
    """Estimate which items the real panel keeps per person (see the module docstring).

    Args:
        frames: Real frames by wave, each with ``id_column``; every study wave from the first to
            the last requested one (a missing one leaves its steps without rules).
        specs: Column specs by requested wave (``wave_row_specs``): which items each generated
            wave has, coded or numeric, their bounds.
        study_waves: Every wave of the study, in order.
        requested: The generated waves.
        id_column, cluster_column, prev_cluster_column: Columns never carried.
    """
    study = [str(w) for w in study_waves]
    req = sorted(dict.fromkeys(str(w) for w in requested), key=study.index)
    waves = tuple(study[study.index(req[0]) : study.index(req[-1]) + 1]) if req else ()
    skip = {id_column, cluster_column, prev_cluster_column}
    per_wave = {
        str(w): {s.name: s for s in ss if s.vtype != "cluster" and s.name not in skip}
        for w, ss in specs.items()
    }
    items: dict[str, RowSpec] = {}
    for w in reversed(req):  # the latest generated wave's spec of an item
        for name, spec in per_wave.get(w, {}).items():
            items.setdefault(name, spec)
    linked = {w: _by_id(frames[w], id_column) for w in waves if w in frames}
    steps = tuple(
        _estimate_pair(linked.get(a), linked.get(b), items)
        for a, b in zip(waves, waves[1:], strict=False)
    )
    pairs: dict[tuple[str, str], dict[str, Carried]] = {}
    for i, a in enumerate(req):
        for b in req[i + 1 :]:
            pairs[(a, b)] = _compose(a, b, waves, steps, linked, per_wave)
    return CarryRules(waves, steps, pairs)


def _compose(
    a: str,
    b: str,
    waves: Sequence[str],
    steps: Sequence[dict[str, Carried]],
    linked: Mapping[str, pd.DataFrame],
    per_wave: Mapping[str, Mapping[str, RowSpec]],
) -> dict[str, Carried]:
    ia, ib = waves.index(a), waves.index(b)
    out: dict[str, Carried] = {}
    unasked: dict[str, RowSpec] = {}
    for name, spec in per_wave.get(b, {}).items():
        if name not in per_wave.get(a, {}):
            continue
        between = [w for w in waves[ia + 1 : ib] if w in linked]
        if any(name not in linked[w].columns for w in between):
            unasked[name] = spec  # not asked in a wave in between: estimate a -> b directly
            continue
        rule: Carried | None = None
        for s in range(ia, ib):
            step = steps[s].get(name)
            if step is None:
                rule = None
                break
            rule = step if rule is None else rule.then(step)
        if rule is not None:
            out[name] = rule.bounded(spec)
    if unasked:
        direct = _estimate_pair(linked.get(a), linked.get(b), unasked)
        out.update({k: r.bounded(unasked[k]) for k, r in direct.items()})
    order = list(per_wave.get(b, {}))
    return {k: out[k] for k in order if k in out}


def _by_id(frame: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """The frame indexed by id text, without rows lacking an id or repeating one."""
    ids = frame[id_column]
    keep = ~ids.map(is_missing).to_numpy(dtype=bool)
    out = frame.loc[keep]
    out = out.set_index(out[id_column].map(id_text))
    return out[~out.index.duplicated()]


def _estimate_pair(
    prev: pd.DataFrame | None, cur: pd.DataFrame | None, items: Mapping[str, RowSpec]
) -> dict[str, Carried]:
    """Carried items from ``prev`` to ``cur`` (frames indexed by id) over their linked ids."""
    if prev is None or cur is None:
        return {}
    keys = prev.index.intersection(cur.index, sort=False)
    out: dict[str, Carried] = {}
    if len(keys) < MIN_LINKED:
        return out
    names = [n for n in items if n in prev.columns and n in cur.columns]
    prev, cur = prev.loc[keys, names], cur.loc[keys, names]
    for name in names:
        spec = items[name]
        a, b = _clean(prev[name], spec), _clean(cur[name], spec)
        both = a.notna().to_numpy() & b.notna().to_numpy()
        n = int(both.sum())
        if n < MIN_LINKED:
            continue
        av, bv = a.to_numpy()[both], b.to_numpy()[both]
        if float(np.mean(av == bv)) >= FIXED_SHARE:
            out[name] = Carried("fixed", integer=spec.integer)
            continue
        if spec.codes:
            continue
        diff = bv.astype(float) - av.astype(float)
        band = _shift_band(diff, spec.integer)
        span = _span(spec, av.astype(float), bv.astype(float))
        if band is not None and span > 0 and band[1] - band[0] <= MAX_SHIFT_WIDTH * span:
            inside = diff[(diff >= band[0] - 1e-9) & (diff <= band[1] + 1e-9)]
            out[name] = Carried(
                "shift", band[0], band[1], integer=spec.integer, changes=distribution(inside)
            )
    return out


def _clean(values: pd.Series, spec: RowSpec) -> pd.Series:
    """Answers comparable across waves: numbers as floats, codes as their keys, anything the
    spec does not allow (missing codes, NA strings) as NA."""
    if not spec.codes:
        x = pd.to_numeric(values, errors="coerce").astype(float)
        if spec.low is not None:
            x = x.where(x >= spec.low)
        if spec.high is not None:
            x = x.where(x <= spec.high)
        return x
    allowed = {row_key([c])[0] for c in spec.codes}
    if all(isinstance(c, float) for c in allowed):  # numeric codes: one vectorised pass
        x = pd.to_numeric(values, errors="coerce").astype(float)
        return x.where(x.isin(list(allowed)))
    keys = values.map(lambda v: row_key([v])[0]).astype(object)
    return keys.where(keys.isin(allowed), None)


def _shift_band(diff: np.ndarray, integer: bool) -> tuple[float, float] | None:
    """The shortest ``[low, high]`` holding at least :data:`FIXED_SHARE` of ``diff`` (of those,
    the one nearest 0)."""
    d = np.sort(diff)
    n = len(d)
    need = math.ceil(FIXED_SHARE * n - 1e-9)
    if n == 0 or need < 1:
        return None
    widths = d[need - 1 :] - d[: n - need + 1]
    best = np.flatnonzero(widths <= widths.min() + 1e-12)
    centre = np.abs(d[best] + d[best + need - 1])
    i = int(best[int(np.argmin(centre))])
    lo, hi = float(d[i]), float(d[i + need - 1])
    if integer:
        lo, hi = float(math.floor(lo + 1e-9)), float(math.ceil(hi - 1e-9))
    return lo, hi


def _span(spec: RowSpec, a: np.ndarray, b: np.ndarray) -> float:
    lo = spec.low if spec.low is not None else float(min(a.min(), b.min()))
    hi = spec.high if spec.high is not None else float(max(a.max(), b.max()))
    return float(hi - lo)


# ----------------------------------------------------------------------------------------------
# per requested row
@dataclass
class PanelCarry:
    """Everything the host carries in a panel run: the rules, and in a calibrated panel the
    first wave's anchors and every wave's missingness patterns (by respondent id)."""

    rules: CarryRules
    first_wave: str
    anchors: dict[str, Profile] = field(default_factory=dict)
    patterns: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    #: Per wave with patterns, the items a pattern covers (the others of them are answered).
    pattern_columns: dict[str, list[str]] = field(default_factory=dict)
    #: How the carry was set up (calibrated or not, anchors; for the manifest).
    settings: dict[str, Any] = field(default_factory=dict)
    #: Set (:meth:`schema_fixed`): every carried band becomes one exact value, seeded by this.
    exact_seed: int | None = None
    #: Per cluster and banded first-wave anchor, the first wave's real values (sorted).
    anchor_values: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)

    def schema_fixed(
        self, first_wave_real: pd.DataFrame | None, cluster_column: str, seed: int
    ) -> PanelCarry:
        """This carry for a client whose response schema fixes each row's profile (a local,
        schema-guided decoder, which given a range writes its floor): every band it carries
        becomes one exact value (:meth:`exact_values`).

        Args:
            first_wave_real: The first requested wave's real respondents (the frame the
                first-wave anchors are drawn from), or ``None`` (first-wave bands stay bands).
            cluster_column: Its cluster column.
            seed: The run seed.
        """
        banded = sorted(
            {n for p in self.anchors.values() for n, v in p.anchors if isinstance(v, Band)}
        )
        clusters = sorted({p.cluster for p in self.anchors.values()})
        values: dict[int, dict[str, np.ndarray]] = {}
        if first_wave_real is not None and banded:
            values = real_values(first_wave_real, cluster_column, banded, clusters)
        settings = {
            **self.settings,
            "exact_values": "the response schema fixes each row, so every carried band is one "
            "value: a shift item's previous value plus a change drawn from the real panel's "
            "changes, a first-wave anchor a real value of the respondent's cluster in its band",
        }
        return replace(self, settings=settings, exact_seed=int(seed), anchor_values=values)

    def exact_values(self, rid: str, wave: str, profile: Profile, previous: Any) -> Profile:
        """``profile`` with its bands made exact values (see :meth:`schema_fixed`); as it is
        when this carry is not schema-fixed.

        Args:
            rid, wave: The respondent and wave (with the item, they seed the draw).
            profile: What :meth:`row_profile` built.
            previous: ``(rules, previous answers)`` of a later wave, or ``None`` (first wave).
        """
        if self.exact_seed is None:
            return profile
        anchors: list[tuple[str, Any]] = []
        for name, value in profile.anchors:
            if isinstance(value, Band):
                u = uniform(self.exact_seed, rid, wave, name)
                if previous is not None and name in previous[0]:
                    value = previous[0][name].exact(previous[1].get(name), u)
                else:
                    pool = self.anchor_values.get(profile.cluster, {}).get(name)
                    value = in_band(pool, value, u)
            anchors.append((name, value))
        return Profile(profile.cluster, tuple(anchors), profile.missing)

    def row_profile(
        self,
        rid: str,
        wave: str,
        cluster: int,
        previous_answers: Mapping[str, Any] | None,
        previous_wave: str | None,
    ) -> Profile | None:
        """What respondent ``rid``'s row of ``wave`` must keep (``None``: nothing but the
        cluster).

        Carried items of the previous answers (from ``previous_wave``, their last generated
        wave), the first wave's anchors (first generated wave only; later an anchor is carried
        only when the data say so), and the wave's missingness pattern (calibrated full mode),
        less the carried items (a respondent keeps answering what they keep).
        """
        wave = str(wave)
        values: list[tuple[str, Any]] = []
        missing: tuple[str, ...] = ()
        previous: tuple[dict[str, Carried], Mapping[str, Any]] | None = None
        if previous_answers is not None and previous_wave is not None:
            previous = (self.rules.between(str(previous_wave), wave), previous_answers)
            for name, rule in previous[0].items():
                want = rule.allowed(previous_answers.get(name))
                if want is not None:
                    values.append((name, want))
        elif wave == self.first_wave and rid in self.anchors:
            first = self.anchors[rid]
            values.extend(first.anchors)
            missing = first.missing
        if wave in self.patterns:
            missing = self.patterns[wave].get(rid, ())
        kept = {name for name, _ in values}
        missing = tuple(m for m in missing if m not in kept)
        if not values and not missing:
            return None
        return self.exact_values(rid, wave, Profile(int(cluster), tuple(values), missing), previous)

    def request_key(self, rid: str, wave: str, previous_wave: str | None) -> str:
        """What the host fixes for this row before the previous answers exist: the rules of its
        wave pair, or its first-wave anchors, and its pattern (for the checkpoint's fingerprint)."""
        if previous_wave is not None:
            rules = self.rules.between(str(previous_wave), str(wave))
            fixed: Any = {k: r.text() for k, r in rules.items()}
            if self.exact_seed is not None:  # the draws: changes and each item's quantile
                fixed = {
                    k: [
                        r.text(),
                        [list(c) for c in r.changes],
                        uniform(self.exact_seed, rid, str(wave), k),
                    ]
                    for k, r in rules.items()
                }
        else:
            first = self.anchors.get(rid) if str(wave) == self.first_wave else None
            if first is not None:
                first = self.exact_values(rid, str(wave), first, None)
            fixed = first.to_json() if first else {}
        gaps = self.patterns.get(str(wave), {}).get(rid, ())
        return json.dumps([fixed, list(gaps)], sort_keys=True, default=str)

    def to_json(self) -> dict[str, Any]:
        """The rules and what the calibrated panel draws (for the manifest)."""
        out = {**self.settings, **self.rules.to_json()}
        anchors = next(iter(self.anchors.values())).anchors if self.anchors else ()
        out["first_wave_anchors"] = [name for name, _ in anchors]
        out["missingness_patterns"] = {w: list(c) for w, c in self.pattern_columns.items()}
        return out


def keeps_text(profile: Profile | None) -> str:
    """The profile as a requested row shows it: ``"keeps: sex 2, age 36-37"`` (gaps of the
    pattern as ``"q1 null (no answer)"``); empty without a profile."""
    if profile is None or not (profile.anchors or profile.missing):
        return ""
    return "keeps: " + profile.text().split(", ", 1)[1]


def apply(profile: Profile | None, row: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """``row`` made to keep ``profile``: fixed values set, numbers clipped into their band (an
    unanswered banded item gets the band's middle), the pattern's gaps blanked.

    Returns:
        The row (a new dict) and the number of cells changed.
    """
    out = dict(row)
    if profile is None:
        return out, 0
    changed = 0
    for name, want in profile.anchors:
        got = out.get(name)
        if want is None:
            new = None if not is_missing(got) else got
        elif isinstance(want, Band):
            new = got if want.contains(got) else _into_band(want, got)
        else:
            new = got if row_key([got]) == row_key([want]) else plain(want)
        if new is not got:
            out[name] = new
            changed += 1
    for name in profile.missing:
        if not is_missing(out.get(name)):
            out[name] = None
            changed += 1
    return out, changed


def _into_band(band: Band, value: Any) -> int | float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if math.isnan(v):
        v = (band.low + band.high) / 2
    v = min(max(v, band.low), band.high)
    if band.open_high and v >= band.high:
        v = float(np.nextafter(band.high, band.low))
    if band.integer:
        v = float(min(max(math.floor(v + 0.5), band.low), band.high))
    return plain(v)


def _signed(x: float) -> str:
    v = plain(float(x))
    return f"+{v:g}" if v >= 0 else f"{v:g}"
