"""Create workspaces and write dictionary files without overwriting a user's data."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from panelsynth.dictionaries import metadata_from_csv, metadata_from_labelled, metadata_to_json
from panelsynth.errors import WorkspaceError
from panelsynth.workspace import Workspace, check_wave_id


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Write via a temporary file in the same folder and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:  # a read-only folder: name the folder, not a random temporary
        raise OSError(err.errno, err.strerror, str(path.parent)) from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk, ...: the message names the file, not the temporary
        Path(tmp).unlink(missing_ok=True)
        if err.filename is None or err.filename == tmp:
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files of :func:`atomic_write_text` calls for ``path`` that a killed
    process left behind (the file itself is intact). Only call it when no other process can be
    writing ``path`` (e.g. with the run's lock held)."""
    if path.parent.is_dir():
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)


#: Age after which a temporary file in a folder that several runs share (the cache) is stale: an
#: atomic write lives for well under a second.
STALE_TEMPORARY_SECONDS = 15 * 60


def remove_old_temporaries(folder: Path, older_than: float = STALE_TEMPORARY_SECONDS) -> int:
    """Remove ``.*.tmp`` files older than ``older_than`` seconds in ``folder`` (one that other
    runs may be writing at the same time, so only files no live write can own); returns how many.
    """
    if not folder.is_dir() or folder.is_symlink():
        return 0
    removed = 0
    now = time.time()
    for stale in folder.glob(".*.tmp"):
        try:
            if stale.is_file() and now - stale.lstat().st_mtime > older_than:
                stale.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def remove_stale_temporaries_of(paths: Iterable[Path]) -> None:
    """:func:`remove_stale_temporaries` for each of ``paths`` (a command's outputs)."""
    for path in paths:
        remove_stale_temporaries(path)


def config_template() -> str:
    return resources.files("panelsynth").joinpath("templates/panelsynth.toml").read_text("utf-8")


def seed_script_text() -> str:
    return resources.files("panelsynth").joinpath("templates/run_data_gen_pipeline.py").read_text(
        "utf-8"
    )


def init_workspace(directory: str | Path) -> tuple[Workspace, list[Path]]:
    """Create the workspace folders (and ``Raw data/``), a commented ``panelsynth.toml`` and
    the seed script.

    Existing files are never overwritten.
    """
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"{root} exists and is not a folder — choose another path")
    ws = Workspace(root)
    created = ws.scaffold()
    raw = ws.root / "Raw data"  # where `panelsynth prepare` looks by default (prepare.raw_dir)
    if not raw.exists():
        raw.mkdir()
        created.append(raw)
    if not ws.config_path.exists():
        atomic_write_text(ws.config_path, config_template())
        created.append(ws.config_path)
    script = ws.root / "run_data_gen_pipeline.py"
    if not script.exists():
        try:
            atomic_write_text(script, seed_script_text())
            created.append(script)
        except FileNotFoundError:  # pragma: no cover - template ships with the package
            pass
    return ws, created


def write_metadata(
    workspace: str | Path,
    wave: str,
    source: str | Path,
    *,
    mode: str | None = None,
    force: bool = False,
    kind: str = "csv",
) -> Path:
    """Convert a CSV dictionary or a labelled data file to ``metadata_wave{W}.json``."""
    ws = Workspace(workspace)
    if not ws.root.is_dir():
        raise WorkspaceError(f"workspace not found: {ws.root} — create it with `panelsynth init`")
    wave = check_wave_id(wave)
    if mode not in (None, "dense", "full"):
        raise WorkspaceError(f"--mode must be dense or full, not {mode!r}")
    src = Path(source)
    if not src.exists():
        raise WorkspaceError(f"dictionary not found: {src} — check the path")
    meta = metadata_from_csv(src) if kind == "csv" else metadata_from_labelled(src)
    out = ws.metadata_json_for_write(wave, mode)  # type: ignore[arg-type]
    if out.exists() and not force:
        raise WorkspaceError(f"{ws.rel(out)} already exists — pass --force to replace it")
    atomic_write_text(out, metadata_to_json(meta) + "\n")
    return out
