"""A calibrated panel's profiles, and the run's :class:`~panelsynth.panel.carry.PanelCarry`.

``--panel --calibrate`` keeps the calibrated per-wave run's idea — the host draws what it knows
from the real data, the model writes coherent respondents around it — for respondents who
persist:

- :func:`draw_first_wave_anchors` — each synthetic respondent's anchors (by default the
  demographics present in the wave, ``--anchors`` respected) drawn jointly from a random real
  respondent of the same cluster in the first generated wave (continuous anchors as bands, as
  :class:`~panelsynth.calibrate.ProfileDesign` draws them), with that respondent's missingness
  pattern in the full mode. Later waves keep an anchor only where the real panel keeps it per
  person (:mod:`panelsynth.panel.carry`): sex stays, an age band becomes last wave's age plus its
  real drift.
- :func:`draw_patterns` — in the full mode, a later wave's missingness pattern per respondent:
  the items a random real respondent of the same cluster in that wave left unanswered.

There is no oversampled pool and no selection in a panel (one row per respondent and wave: a row
cannot be swapped for another respondent's without breaking the person), so ``--oversample``
does not apply. Seeded: one stream for the anchors, one per wave for the patterns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.calibrate.profiles import Profile, ProfileDesign, resolve_anchors
from panelsynth.panel.carry import PanelCarry, estimate_carry
from panelsynth.panel.draw import PanelDraw
from panelsynth.pydantic_models.rows import RowSpec, wave_row_specs

log = logging.getLogger("panelsynth")

#: Offsets of the calibrated panel's random streams from the run seed (the draw is 19,
#: trajectories 23).
ANCHOR_STREAM = 29
PATTERN_STREAM = 31


def carry_for_run(
    setup: Any,
    load: Callable[[str], Any],
    config: Any,
    opts: Any,
    seed: int,
    *,
    schema_fixed: bool = False,
) -> PanelCarry:
    """:func:`build_carry` for a panel run: its requested waves loaded with ``load`` (the run's
    loader, which keeps them), ``--calibrate`` and ``--anchors`` resolved against the config.

    ``schema_fixed``: the client's response schema fixes each row's profile (a local,
    schema-guided decoder, which given a range writes its floor): every carried band becomes one
    exact value drawn from the real ones (:meth:`PanelCarry.schema_fixed`).
    """
    g = config.generation
    waves = {str(w): load(str(w)) for w in setup.structure.requested}
    carry = build_carry(
        setup,
        waves,
        config,
        calibrate=bool(g.calibrate if opts.calibrate is None else opts.calibrate),
        anchors=opts.anchors if opts.anchors is not None else g.anchors,
        seed=seed,
    )
    if schema_fixed:
        first = waves[str(setup.structure.requested[0])]
        carry = carry.schema_fixed(first.frame, first.cluster_column, seed)
    return carry


def build_carry(
    setup: Any,
    waves: Mapping[str, Any],
    config: Any,
    *,
    calibrate: bool,
    anchors: Sequence[str] | None,
    seed: int,
) -> PanelCarry:
    """What the host carries in a panel run: the rules estimated from the real panel and, when
    calibrated, the first wave's anchors and (full mode) every wave's patterns.

    Args:
        setup: The run's :class:`~panelsynth.panel.setup.PanelSetup` (draw, real frames).
        waves: The requested waves as loaded for the run (``WaveData``, mode applied).
        config: The workspace config.
        calibrate: ``--calibrate`` resolved.
        anchors: ``--anchors`` resolved (``None``: the demographics present in the first wave).
        seed: The run seed.

    Raises:
        ConfigError: an unknown anchor, or a cluster without a respondent with every anchor.
    """
    s = config.study
    requested = [str(w) for w in setup.structure.requested]
    specs = {w: wave_row_specs(waves[w]) for w in requested}
    rules = estimate_carry(
        setup.frames,
        specs,
        setup.structure.waves,
        requested,
        id_column=s.id_column,
        cluster_column=s.cluster_column,
        prev_cluster_column=s.prev_cluster_column,
    )
    carry = PanelCarry(rules, requested[0], settings={"calibrated": bool(calibrate)})
    if not calibrate:
        return carry
    first = waves[requested[0]]
    cl = first.cluster_column
    names = resolve_anchors(
        anchors, specs[requested[0]], demographics=config.prepare.demographics, cluster_column=cl
    )
    full = first.mode == "full"
    carry.anchors = draw_first_wave_anchors(
        setup.draw,
        first.frame,
        specs[requested[0]],
        anchors=names,
        demographics=config.prepare.demographics,
        cluster_column=cl,
        seed=seed,
        patterns=full,
    )
    if full:
        carry.pattern_columns[requested[0]] = pattern_columns(specs[requested[0]], cl, names)
        for w in requested[1:]:
            carry.patterns[w] = draw_patterns(
                setup.draw, w, waves[w].frame, specs[w], cluster_column=cl, seed=seed
            )
            carry.pattern_columns[w] = pattern_columns(specs[w], cl)
    carry.settings.update(
        anchors=names,
        seeds={"anchors": [seed, ANCHOR_STREAM], "patterns": [seed, PATTERN_STREAM, "wave index"]},
        oversample="not used: a panel writes one row per respondent and wave (no pool to select "
        "from)",
    )
    return carry


# ----------------------------------------------------------------------------------------------
# calibrated: first-wave anchors and missingness patterns
def pattern_columns(
    specs: Sequence[RowSpec], cluster_column: str, anchors: Sequence[str] = ()
) -> list[str]:
    """Items whose missingness pattern a profile carries: the nullable ones (full mode) that are
    neither a cluster column nor an anchor (as a calibrated per-wave run)."""
    return [
        s.name
        for s in specs
        if s.nullable
        and s.vtype != "cluster"
        and s.name != cluster_column
        and s.name not in anchors
    ]


def draw_first_wave_anchors(
    draw: PanelDraw,
    real: pd.DataFrame,
    specs: Sequence[RowSpec],
    *,
    anchors: Sequence[str] | None,
    demographics: Sequence[str],
    cluster_column: str,
    seed: int,
    patterns: bool = True,
) -> dict[str, Profile]:
    """Each synthetic respondent's first-wave profile: anchors and (full mode) missingness
    pattern of a random real respondent of their cluster in the first requested wave.

    Args:
        draw: The drawn panel (ids, first-wave clusters).
        real: The first requested wave's real respondents (with the cluster column).
        specs: Its column specs (NA allowed = full mode: patterns are drawn).
        anchors: ``--anchors`` (``None``: the demographics present in the wave).
        demographics: Config ``prepare.demographics``.
        seed: The run seed.
        patterns: Also draw the missingness patterns (full mode).

    Raises:
        ConfigError: an unknown anchor, or a cluster without a respondent with every anchor.
    """
    names = resolve_anchors(
        anchors, specs, demographics=demographics, cluster_column=cluster_column
    )
    pcols = pattern_columns(specs, cluster_column, names) if patterns else []
    design = _design(real, specs, names, cluster_column, seed, pcols)
    t = draw.waves.index(draw.requested[0])
    rng = np.random.default_rng([seed, ANCHOR_STREAM])
    return _donor_profiles(draw, t, design, rng)


def draw_patterns(
    draw: PanelDraw,
    wave: str,
    real: pd.DataFrame,
    specs: Sequence[RowSpec],
    *,
    cluster_column: str,
    seed: int,
) -> dict[str, tuple[str, ...]]:
    """The missingness pattern of every respondent present in ``wave``: the items a random real
    respondent of their cluster in that wave left unanswered (empty without nullable items)."""
    pcols = pattern_columns(specs, cluster_column)
    if not pcols:
        return {}
    design = _design(real, specs, [], cluster_column, seed, pcols)
    t = draw.waves.index(str(wave))
    rng = np.random.default_rng([seed, PATTERN_STREAM, t])
    return {rid: p.missing for rid, p in _donor_profiles(draw, t, design, rng).items()}


def _design(
    real: pd.DataFrame,
    specs: Sequence[RowSpec],
    anchors: Sequence[str],
    cluster_column: str,
    seed: int,
    pcols: Sequence[str],
) -> ProfileDesign:
    """The calibrated run's profile design; without anchors, every respondent of a cluster is
    a donor of its pattern (the cluster column stands in as the anchor and is dropped again)."""
    design = ProfileDesign.from_frame(
        real,
        specs,
        list(anchors) or [cluster_column],
        cluster_column=cluster_column,
        seed=seed,
        pattern_columns=pcols,
    )
    if not anchors:
        design.anchors = []
        design.donors = {c: [()] * len(pool) for c, pool in design.donors.items()}
    return design


def _donor_profiles(
    draw: PanelDraw, t: int, design: ProfileDesign, rng: np.random.Generator
) -> dict[str, Profile]:
    """Per respondent present in wave ``t``: the profile of a random donor of their cluster
    (respondents in a cluster without real donors get none, with a warning)."""
    clusters = draw.clusters[:, t]
    out: dict[str, Profile] = {}
    for c in sorted({int(c) for c in clusters if c > 0}):
        who = np.flatnonzero(clusters == c)
        pool = design.donors.get(c)
        if not pool:
            log.warning(
                "panel: no real respondent of cluster %d in wave %s to draw profiles from; "
                "%d synthetic respondents get none",
                c,
                draw.waves[t],
                len(who),
            )
            continue
        gaps = design.patterns.get(c)
        picks = rng.integers(len(pool), size=len(who))
        for i, k in zip(who, picks, strict=True):
            anchors = tuple(zip(design.anchors, pool[k], strict=True))
            out[str(draw.ids[i])] = Profile(c, anchors, gaps[k] if gaps else ())
    return out
