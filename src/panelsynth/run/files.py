"""The files of one wave's run and the guard around them: lock, refusals, ``--restart``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from panelsynth.checkpoint import Checkpoint, RunLock, keep_aside
from panelsynth.errors import PanelsynthError
from panelsynth.export import EXPORT_FORMATS
from panelsynth.generate import headerless_error
from panelsynth.io import remove_stale_temporaries
from panelsynth.run.plan import RunPlan
from panelsynth.workspace import Workspace

log = logging.getLogger("panelsynth")


@dataclass(frozen=True)
class WaveFiles:
    """Where a run of ``wave`` for ``model_dir`` writes."""

    ws: Workspace
    model_dir: str
    wave: str

    @property
    def out_csv(self) -> Path:
        return self.ws.output_csv(self.model_dir, self.wave)

    @property
    def manifest(self) -> Path:
        return self.ws.manifest(self.model_dir, self.wave)

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.ws.checkpoint(self.model_dir, self.wave))

    def written(self) -> tuple[Path, ...]:
        """Every file a run writes: outputs (exports included), logs, checkpoint."""
        ws, md, w = self.ws, self.model_dir, self.wave
        return (
            self.out_csv,
            *(self.out_csv.with_suffix(f".{f}") for f in EXPORT_FORMATS),
            self.manifest,
            ws.cluster_descriptions_log(md, w),
            ws.examples_log(md, w),
            ws.examples_csv(md, w),
            ws.gen_metadata_log(md, w),
            ws.checkpoint(md, w),
        )


@contextmanager
def open_wave_run(files: WaveFiles, plan: RunPlan, ckpt: Checkpoint) -> Iterator[bool]:
    """Hold the wave's lock while the run writes; yields whether the run resumes.

    The lock comes first: a second concurrent run is told who holds it, not about its files.
    Existing outputs or an unfinished checkpoint are refused unless ``--resume``/``--restart``
    say what to do with them; a CSV without its manifest is rebuilt from its checkpoint.
    """
    ws, wave, md = files.ws, files.wave, files.model_dir
    out_csv = files.out_csv
    if plan.restart and plan.resume:
        raise PanelsynthError("--resume and --restart exclude each other — pick one")
    ws.refuse_links(*files.written(), ws.lock(md, wave), ws.cache_dir())
    with RunLock(ws.lock(md, wave), f"wave {wave} of {md}"):
        for path in files.written():  # half-written temporaries of a killed run (lock held)
            remove_stale_temporaries(path)
        resume = plan.resume or _rebuild_manifest(files, ckpt, plan)
        if out_csv.exists() and not (resume or plan.restart):
            raise PanelsynthError(
                f"{ws.rel(out_csv)} already exists — pass --restart to generate it again (the old "
                f"checkpoint is kept aside) or use another --model-dir"
            )
        if ckpt.exists() and not (resume or plan.restart):
            _, recs = ckpt.load()
            raise PanelsynthError(
                f"an unfinished run of wave {wave} for {md} has {len(recs)} finished "
                f"calls in {ws.rel(ckpt.path)} — pass --resume to continue it or --restart to "
                f"start over"
            )
        if resume and ckpt.exists() and not plan.accept_headerless_checkpoint:
            old_header, records = ckpt.load()  # refused before steps 1-2 cost anything
            if old_header is None:
                raise headerless_error(ckpt, records)
        if plan.restart:
            set_aside(ws, ckpt, files.manifest)
        yield resume


def _rebuild_manifest(files: WaveFiles, ckpt: Checkpoint, plan: RunPlan) -> bool:
    """Whether a plain run finds a CSV without its manifest (a run killed between the two) and a
    checkpoint to rebuild it from: then it resumes, which pays no call again."""
    out_csv = files.out_csv
    if plan.resume or plan.restart or not out_csv.exists() or files.manifest.exists():
        return False
    if not ckpt.exists():
        return False
    log.warning(
        "%s has no manifest (its run was stopped after writing it): rebuilding the manifest from "
        "the checkpoint %s, as --resume does — no call is paid again",
        files.ws.rel(out_csv),
        files.ws.rel(ckpt.path),
    )
    return True


def set_aside(ws: Workspace, ckpt: Checkpoint, manifest_path: Path) -> None:
    """``--restart``: move the checkpoint aside and keep a copy of the manifest next to it, so a
    restart that fails keeps the previous run's books (settings, tokens, cost)."""
    moved = ckpt.archive() if ckpt.exists() else None
    if moved is not None:
        log.info("previous checkpoint kept as %s", ws.rel(moved))
    kept = keep_aside(manifest_path, moved or ckpt.path)
    if kept is not None:
        log.info("previous manifest kept as %s", ws.rel(kept))
