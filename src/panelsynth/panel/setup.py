"""The host's side of a panel run before any model call: the request checks and the draw
(shared by ``panelsynth run --panel`` and its ``--dry-run``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.config import PanelsynthConfig
from panelsynth.errors import ConfigError, PanelsynthError
from panelsynth.holdout import (
    HoldoutSpec,
    apply_split,
    spec_from_config,
    wave_split,
    write_ids_file,
)
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
    #: The run's ``--holdout`` split (``None``: every real respondent is used).
    holdout: HoldoutSpec | None = None
    #: Per drawn wave with data: (training, held-out) respondents of the real wave file.
    held_out: dict[str, tuple[int, int]] = field(default_factory=dict)

    def holdout_json(self, ids_file: str) -> dict[str, Any]:
        """The panel manifest's ``holdout`` section."""
        if self.holdout is None:
            return {"enabled": False}
        return {
            "enabled": True,
            **self.holdout.to_json(),
            "ids_file": ids_file,
            "per_wave": {
                w: {"training_respondents": t, "held_out_respondents": h}
                for w, (t, h) in self.held_out.items()
            },
        }

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
    spec = spec_from_config(config)
    held_out: dict[str, tuple[int, int]] = {}
    for w in drawn:
        path = ws.original_data(w)
        if path.exists():
            frames[w] = rp.read_csv_any(path)
            if spec is not None:  # held-out respondents never shape the structure
                split = wave_split(path, w, spec, ws.rel(path))
                frames[w] = apply_split(frames[w], split, keep_held_out=False)
                held_out[w] = (int((~split.held_out).sum()), int(split.held_out.sum()))
    structure = estimate_structure(
        frames,
        list(waves),
        study,
        id_column=s.id_column,
        cluster_column=s.cluster_column,
        prev_cluster_column=s.prev_cluster_column,
        sources={w: ws.rel(ws.original_data(w)) for w in drawn},
    )
    n = respondents or len(frames[structure.requested[0]])  # the training rows with --holdout
    draw = draw_panel(structure, n, np.random.default_rng([seed, _DRAW_STREAM]))
    return PanelSetup(
        structure, draw, study, n, seed, holdout=spec, held_out=held_out, frames=frames
    )


def panel_config(config: PanelsynthConfig, opts: rp.RunOptions, seed: int) -> PanelsynthConfig:
    """The run's config with ``--holdout`` applied (the split seeded by the run's seed), so
    every wave loaded for steps 1-3 and the draw see only the training respondents."""
    return rp.with_run_holdout(config, opts, seed)


def wave_holdout(ws: Workspace, setup: PanelSetup, wave: str, model_dir: str) -> dict[str, Any]:
    """A panel wave's manifest ``holdout`` section, as a per-wave run writes it; with
    ``--holdout`` the wave's held-out ids go to ``Evaluation/holdout_ids.csv`` (before any
    step-3 call, so an unfinished run has them too)."""
    if setup.holdout is None:
        return {"enabled": False}
    path = ws.original_data(wave)
    split = wave_split(path, wave, setup.holdout, ws.rel(path))
    write_ids_file(ws.holdout_ids(), split, model_dir)
    return {**split.summary(), "ids_file": ws.rel(ws.holdout_ids())}


def refuse_other_holdout(
    ws: Workspace, setup: PanelSetup, model_dir: str, waves: Sequence[str]
) -> None:
    """Refuse ``--resume`` of a panel whose checkpoints were made with another split (before
    any call: a resumed panel must hold out the same respondents).

    Raises:
        PanelsynthError: a wave's checkpoint records another share, seed or id column.
    """
    now = setup.holdout.to_json() if setup.holdout else None
    for w in waves:
        ckpt = rp.Checkpoint(ws.checkpoint(model_dir, w))
        if not ckpt.exists():
            continue
        header, _ = ckpt.load()
        if header is None or header.get("holdout") == now:
            continue
        was = header.get("holdout")
        raise PanelsynthError(
            f"{ws.rel(ckpt.path)} was made with {_holdout_text(was)}, this run asks for "
            f"{_holdout_text(now)} — resume with the same --holdout and --seed, or pass "
            f"--restart (old checkpoints kept aside)"
        )


def _holdout_text(h: dict[str, Any] | None) -> str:
    if not h:
        return "no --holdout"
    return f"--holdout {h.get('share')} (seed {h.get('seed')}, ids {h.get('id_column')!r})"


def check_panel_options(opts: rp.RunOptions, config: PanelsynthConfig) -> None:
    """Refuse what a panel run does not support (one line each)."""
    g = config.generation
    if opts.oversample is not None:  # the config's default is ignored: a panel has no pool
        raise ConfigError(
            "--oversample does not apply to --panel (one row per respondent and wave, no pool "
            "to select from) — drop --oversample"
        )
    if (opts.examples or g.examples) != "real":
        raise ConfigError(
            "--panel with --examples synthetic is not supported yet: later waves show real "
            "trajectories — use --examples real"
        )
    if opts.resume and opts.restart:
        raise PanelsynthError("--resume and --restart exclude each other — pick one")
    if opts.batch or opts.top_up is not None:
        raise ConfigError(
            "--panel with --batch is not supported yet: a later wave's calls need the previous "
            "wave's rows, so the waves would wait for one provider batch after another — drop "
            "--batch/--top-up (the panel runs online, with --concurrency)"
        )
    if opts.n_batches is not None:
        raise ConfigError(
            "--n-batches does not apply to --panel: each wave writes one row per present "
            "respondent — set the panel's size with --respondents (rows per call: --n-outputs)"
        )
    if opts.trust_workspace_models:
        raise ConfigError(
            "--panel builds its own row model (the id first, the host's clusters fixed) and "
            "does not use the workspace's pydantic_models/ — drop --trust-workspace-models"
        )
