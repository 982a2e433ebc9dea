"""A panel run's files before its calls: refusing to overwrite, and the per-wave checkpoint
with a fault point after each call (kill-timing tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from panelsynth import faultpoint
from panelsynth.errors import PanelsynthError
from panelsynth.panel import _runpath as rp
from panelsynth.workspace import Workspace


def refuse_existing(ws: Workspace, model_dir: str, waves: Sequence[str]) -> None:
    for w in waves:
        out, ckpt = ws.output_csv(model_dir, w), rp.Checkpoint(ws.checkpoint(model_dir, w))
        if out.exists() or ckpt.exists():
            what = ws.rel(out) if out.exists() else ws.rel(ckpt.path)
            raise PanelsynthError(
                f"{what} already exists (wave {w} of {model_dir}) — pass --resume to continue the "
                f"panel, --restart to generate it again (old checkpoints kept aside), or use "
                f"another --model-dir"
            )


class PanelCheckpoint(rp.Checkpoint):
    """A wave's checkpoint with a fault point after each appended call (kill-timing tests)."""

    def __init__(self, path: Path, wave: str) -> None:
        super().__init__(path)
        self.wave = wave
        self.appended = 0

    def append(self, record: dict[str, Any]) -> None:
        super().append(record)
        self.appended += 1
        faultpoint.reach(f"panel-call:{self.wave}:{self.appended}")


def panel_header(
    client: Any,
    setup: Any,
    wd: Any,
    settings: Any,
    prompt: Any,
    row_model: type[BaseModel],
) -> dict[str, Any]:
    """A panel wave's checkpoint header: what a resumed run must share with the first one (the
    host's draw and requests, the prompt's prefix, the row schema)."""
    header: dict[str, Any] = {
        "wave": wd.wave,
        "mode": wd.mode,
        "model": client.label,
        "n_outputs": settings.n_outputs,
        "n_batches": settings.n_batches,
        "seed": settings.seed,
        "panel": {
            "waves": list(setup.structure.requested),
            "respondents": setup.respondents,
            "rows": settings.rows,
        },
    }
    if settings.temperature != rp.GenerationSettings.temperature:
        header["temperature"] = settings.temperature
    if getattr(client, "endpoint_host", None):
        header["endpoint"] = client.endpoint_host
    if getattr(setup, "holdout", None) is not None:  # --holdout: the split is the run's
        header["holdout"] = setup.holdout.to_json()
    header["fingerprint"] = rp.fingerprint(
        header,
        prompt.prefix,
        row_model.model_json_schema(),
        [r.key() for r in prompt.requests],
    )
    return header


def resumable(ws: Workspace, model_dir: str, wave: str, ckpt: rp.Checkpoint, opts: Any) -> bool:
    """Whether the wave's loop takes its checkpoint over (``--resume`` and a checkpoint).

    Raises:
        PanelsynthError: the wave's CSV exists without its checkpoint (the panel cannot be
            rebuilt from it).
    """
    resume = bool(opts.resume and ckpt.exists())
    if opts.resume and not resume and ws.output_csv(model_dir, wave).exists():
        raise PanelsynthError(
            f"{ws.rel(ws.output_csv(model_dir, wave))} exists but its checkpoint "
            f"{ws.rel(ckpt.path)} does not, so --resume cannot rebuild the panel from it — "
            f"pass --restart to generate the panel again, or use another --model-dir"
        )
    return resume  # a headerless checkpoint is refused where it is read (load_for_resume)
