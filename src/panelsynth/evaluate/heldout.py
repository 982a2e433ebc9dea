"""A ``--holdout`` run's real respondents: the training ones (seen by steps 1-3) and the held-out
ones its output is scored against, recomputed from the run's manifest."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.errors import WorkspaceError
from panelsynth.holdout import HoldoutSpec, apply_split, spec_from_manifest, wave_split
from panelsynth.workspace import Workspace

log = logging.getLogger("panelsynth")


@dataclass
class HeldOut:
    """A ``--holdout`` run's real respondents: training (seen by steps 1-3) and held out."""

    spec: HoldoutSpec
    training: pd.DataFrame
    held_out: pd.DataFrame
    note: str | None = None

    def key(self) -> dict[str, Any]:
        rows = hashlib.sha256(np.asarray(self.held_out.index, dtype="int64").tobytes()).hexdigest()
        return {**self.spec.to_json(), "held_out_rows": rows}


def held_out_frames(ws: Workspace, wave: str, real: pd.DataFrame, manifest: dict) -> HeldOut | None:
    """The training and held-out respondents of a ``--holdout`` run (``None`` for other runs).

    The split is recomputed from the manifest (share, seed, id column) exactly as the run made
    it; ``real`` keeps the wave file's row index.

    Raises:
        DataError: the wave file lost its id column since the run.
    """
    spec = spec_from_manifest(manifest)
    if spec is None:
        return None
    path = ws.original_data(wave)
    split = wave_split(path, wave, spec, ws.rel(path))
    training = apply_split(real, split, keep_held_out=False)
    held = apply_split(real, split, keep_held_out=True)
    if len(held) == 0 or len(training) == 0:
        raise WorkspaceError(
            f"wave {wave}: the run's holdout split leaves no "
            f"{'held-out' if len(held) == 0 else 'training'} respondent in {ws.rel(path)} — "
            f"re-run generation with another --holdout"
        )
    note = None
    recorded = manifest.get("holdout", {}).get("held_out_respondents")
    if isinstance(recorded, int) and recorded != int(split.held_out.sum()):
        note = (
            f"the run held out {recorded} respondents but the real wave now gives "
            f"{int(split.held_out.sum())}: {ws.rel(path)} changed since the run"
        )
        log.warning("wave %s: %s", wave, note)
    return HeldOut(spec, training, held, note)
