"""Create workspaces and write dictionary files without overwriting a user's data."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from panelsynth.dictionaries import metadata_from_csv, metadata_from_labelled, metadata_to_json
from panelsynth.errors import WorkspaceError
from panelsynth.io import atomic_write_text
from panelsynth.workspace import Workspace, check_wave_id


def config_template() -> str:
    return resources.files("panelsynth").joinpath("templates/panelsynth.toml").read_text("utf-8")


def seed_script_text() -> str:
    return (
        resources.files("panelsynth")
        .joinpath("templates/run_data_gen_pipeline.py")
        .read_text("utf-8")
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
    ws.must_exist()
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
