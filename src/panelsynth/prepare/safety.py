"""Never replace what ``prepare`` did not write: the manifest, the check and the back-ups; and
the workspace's leftovers and gaps (fit reports of waves no longer prepared, missing contexts).

``Prepare/manifest.json`` records a SHA-256 of every file ``prepare`` wrote. A target that exists
and is not in it (or was edited since) is refused unless ``force``; with ``force`` it is first
copied to ``Prepare/replaced/``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from panelsynth.errors import WorkspaceError
from panelsynth.io import atomic_write_text
from panelsynth.prepare_switch import StagedOutputs
from panelsynth.workspace import Workspace

MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path(ws: Workspace) -> Path:
    return ws.prepare_dir() / MANIFEST


def _read_manifest(ws: Workspace) -> dict[str, str]:
    try:
        data = json.loads(manifest_path(ws).read_text(encoding="utf-8"))
        return dict(data.get("files", {}))
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return {}


def check_targets(ws: Workspace, targets: Sequence[Path], *, force: bool) -> list[Path]:
    """Files among ``targets`` that exist and were not written by ``prepare`` (or were edited).

    Raises:
        WorkspaceError: there are such files and ``force`` is false.
    """
    manifest = _read_manifest(ws)
    foreign = [p for p in targets if p.exists() and manifest.get(relposix(ws, p)) != _sha256(p)]
    if foreign and not force:
        names = ", ".join(relposix(ws, p) for p in foreign[:3])
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        one = len(foreign) == 1
        raise WorkspaceError(
            f"{names}{more} {'exists' if one else 'exist'} and {'was' if one else 'were'} not "
            f"written by `panelsynth prepare` — move {'it' if one else 'them'} away or pass "
            f"--force (old files are then copied to Prepare/replaced/)"
        )
    return foreign


def relposix(ws: Workspace, p: Path) -> str:
    return Path(ws.rel(p)).as_posix()


def backup(ws: Workspace, path: Path) -> Path:
    rel = Path(relposix(ws, path))
    dest = ws.prepare_dir() / "replaced" / rel
    i = 1
    while dest.exists():
        dest = ws.prepare_dir() / "replaced" / rel.with_name(f"{rel.stem}.{i}{rel.suffix}")
        i += 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, dest)
    return dest


def output_targets(ws: Workspace, waves: Sequence[str]) -> list[Path]:
    """The files ``prepare`` writes per wave: the data, var types and metadata of both modes."""
    return [
        p
        for w in waves
        for p in (
            ws.original_data(w),
            ws.var_types_for_write(w, None),
            ws.var_types_for_write(w, "full"),
            ws.metadata_json_for_write(w, None),
            ws.metadata_json_for_write(w, "full"),
        )
    ]


def stale_outputs(ws: Workspace, waves: list[str], warn: Callable[[str], None]) -> None:
    """Remove fit reports of waves no longer prepared; warn about their Original data files."""
    current = set(waves)
    for p in sorted(ws.prepare_dir().glob("fit_wave*.json")):
        if p.stem[len("fit_wave") :] not in current:
            p.unlink()
    manifest = _read_manifest(ws)
    stale = [
        w
        for w in ws.waves_with_data()
        if w not in current and relposix(ws, ws.original_data(w)) in manifest
    ]
    if stale:
        warn(
            f"Original data/ still holds wave{'s' if len(stale) > 1 else ''} "
            f"{', '.join(stale)} from an earlier prepare run (not in this run) — delete "
            f"{'them' if len(stale) > 1 else 'it'} if the study no longer has "
            f"{'these waves' if len(stale) > 1 else 'this wave'}"
        )


def write_manifest(
    ws: Workspace, written: list[Path], staging: StagedOutputs | None = None
) -> None:
    files = _read_manifest(ws)
    for p in written:
        files[relposix(ws, p)] = (staging.digest(p) if staging else None) or _sha256(p)
    doc = {"written_by": "panelsynth prepare", "files": dict(sorted(files.items()))}
    text = json.dumps(doc, indent=2) + "\n"
    if staging is not None:
        staging.write(manifest_path(ws), text)  # staged last: switched in last
    else:
        atomic_write_text(manifest_path(ws), text)


def warn_missing_contexts(ws: Workspace, waves: list[str], warn: Callable[[str], None]) -> None:
    """Warn about waves without a context file, which ``run`` needs."""
    no_context = [w for w in waves if not ws.wave_context(w).exists()]
    if no_context:
        warn(
            f"no wave context for wave{'s' if len(no_context) > 1 else ''} "
            f"{', '.join(no_context)} — write Dictionaries/wave_contexts/wave{{W}}_context.txt "
            f"(purpose, time, target variable, previous wave) before `panelsynth run`"
        )
