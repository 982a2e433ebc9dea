"""The host's side of a panel run before any model call: the request checks and the draw
(shared by ``panelsynth run --panel`` and its ``--dry-run``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from panelsynth.config import PanelsynthConfig
from panelsynth.errors import ConfigError, PanelsynthError
from panelsynth.panel import _runpath as rp
from panelsynth.panel.carry import PanelCarry
from panelsynth.panel.draw import PanelDraw, draw_panel
from panelsynth.panel.structure import PanelStructure, estimate_structure, ordered_request
from panelsynth.workspace import Workspace

#: Offset of the draw's random stream from the run seed.
_DRAW_STREAM = 19


@dataclass
class PanelSetup:
    """The host's side of a panel, before any model call (shared with ``--dry-run``)."""

    structure: PanelStructure
    draw: PanelDraw
    study_waves: list[str]
    respondents: int
    seed: int
    #: The real frames of every drawn study wave, as read (with the id column).
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: What the host carries per respondent (set by the run once its waves are loaded).
    carry: PanelCarry | None = None


def panel_draw(
    ws: Workspace,
    config: PanelsynthConfig,
    waves: Sequence[str],
    respondents: int | None,
    seed: int,
) -> PanelSetup:
    """Estimate the real panel's structure and draw the synthetic respondents (seeded).

    Raises:
        PanelRequestError / PanelDataError: one wave, a wave outside the study, no id column,
            ids that link nobody between two requested waves.
    """
    s = config.study
    study = [str(w) for w in (s.waves or ws.waves_with_data())]
    _, drawn = ordered_request(waves, study)
    frames = {}
    for w in drawn:
        path = ws.original_data(w)
        if path.exists():
            frames[w] = rp.read_csv_any(path)
    structure = estimate_structure(
        frames,
        list(waves),
        study,
        id_column=s.id_column,
        cluster_column=s.cluster_column,
        prev_cluster_column=s.prev_cluster_column,
        sources={w: ws.rel(ws.original_data(w)) for w in drawn},
    )
    n = respondents or len(frames[structure.requested[0]])
    draw = draw_panel(structure, n, np.random.default_rng([seed, _DRAW_STREAM]))
    return PanelSetup(structure, draw, study, n, seed, frames)


def check_panel_options(opts: rp.RunOptions, config: PanelsynthConfig) -> None:
    """Refuse what a panel run does not support (one line each)."""
    g = config.generation
    if opts.oversample is not None:  # the config's default is ignored: a panel has no pool
        raise ConfigError(
            "--oversample does not apply to --panel (one row per respondent and wave, no pool "
            "to select from) — drop --oversample"
        )
    if (g.holdout if opts.holdout is None else opts.holdout) or 0:
        raise ConfigError("--panel with --holdout is not supported yet — drop --holdout")
    if (opts.examples or g.examples) != "real":
        raise ConfigError(
            "--panel with --examples synthetic is not supported yet: later waves show real "
            "trajectories — use --examples real"
        )
    if opts.resume and opts.restart:
        raise PanelsynthError("--resume and --restart exclude each other — pick one")
