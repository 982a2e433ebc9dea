"""The workspace contract (SPEC §2). Every path of a study folder is computed here and nowhere else.

Wave ids are strings (``"1"``, ``"8a"``). Model dirs are the folder names a user gives a model
(``smollm2``, ``claude-sonnet-4``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from panelsynth.errors import WorkspaceError, quote

Mode = Literal["dense", "full"]
MODES: tuple[Mode, ...] = ("dense", "full")

_WAVE_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]*$")
_MODEL_DIR_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]*$")
#: Longest wave id / model dir: they become parts of file names (a file name has at most 255
#: bytes, and a wave id appears inside longer names).
MAX_NAME_LENGTH = 100

CONFIG_FILE = "panelsynth.toml"
ORIGINAL_DATA = "Original data"
DICTIONARIES = "Dictionaries"
JSON_METADATA = f"{DICTIONARIES}/json_metadata"
WAVE_CONTEXTS = f"{DICTIONARIES}/wave_contexts"
VAR_TYPES = f"{DICTIONARIES}/var_types"
CLUSTER_DESCRIPTIONS = f"{DICTIONARIES}/cluster_descriptions"
EXAMPLES = "Examples"
GEN_METADATA = "Gen_metadata"
FINAL_GEN_DATA = "Final_gen_data"
EVALUATION = "Evaluation"
EVAL_METADATA = f"{EVALUATION}/Evaluation metadata"
EVAL_RESULTS = f"{EVALUATION}/Evaluation results"
PYDANTIC_MODELS = "pydantic_models"
RAW_DATA = "Raw data"
PREPARE_REPORTS = "Prepare"
STATE = ".panelsynth"

#: Folders ``panelsynth init`` creates (SPEC §2).
SCAFFOLD_DIRS: tuple[str, ...] = (
    ORIGINAL_DATA,
    JSON_METADATA,
    WAVE_CONTEXTS,
    VAR_TYPES,
    CLUSTER_DESCRIPTIONS,
    EXAMPLES,
    GEN_METADATA,
    FINAL_GEN_DATA,
    EVAL_METADATA,
    EVAL_RESULTS,
    PYDANTIC_MODELS,
)

EVAL_TABLES: tuple[str, ...] = ("c2st", "density_overall", "density_shape", "density_trend")
#: Tables beyond the original study's four: every pair scored, and the non-linear C2ST.
EXTRA_EVAL_TABLES: tuple[str, ...] = ("density_trend_unthresholded", "c2st_gb")


def check_wave_id(wave: str | int) -> str:
    """Return the wave id as a string, or raise if it cannot name a file."""
    w = str(wave).strip()
    if len(w) > MAX_NAME_LENGTH:
        raise WorkspaceError(
            f"wave id {quote(w)} has {len(w)} characters — use at most {MAX_NAME_LENGTH}"
        )
    if not _WAVE_RE.fullmatch(w):
        raise WorkspaceError(
            f"wave id {quote(wave)} is not valid — use letters, digits, '-' or '_' (e.g. 1, 8a)"
        )
    return w


def check_model_dir(model_dir: str) -> str:
    """Return the model dir name, or raise if it cannot be a folder name."""
    if len(model_dir or "") > MAX_NAME_LENGTH:
        raise WorkspaceError(
            f"model dir {quote(model_dir)} has {len(model_dir)} characters — use at most "
            f"{MAX_NAME_LENGTH}"
        )
    if not _MODEL_DIR_RE.fullmatch(model_dir or ""):
        raise WorkspaceError(
            f"model dir {quote(model_dir)} is not a valid folder name — use letters, digits, "
            f"'.', '-', '_'"
        )
    return model_dir


def wave_sort_key(wave: str) -> tuple[int, str]:
    """Sort ``1, 2, 8a, 8b, 14`` in study order rather than as text."""
    m = re.match(r"^(\d+)(.*)$", wave)
    return (int(m.group(1)), m.group(2)) if m else (10**9, wave)


@dataclass(frozen=True)
class Workspace:
    """A study folder (SPEC §2). Only computes paths; creating folders is explicit."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root).expanduser().resolve())

    def must_exist(self) -> Workspace:
        """This workspace, or a :class:`WorkspaceError` naming the folder when it does not exist."""
        if not self.root.is_dir():
            raise WorkspaceError(
                f"workspace not found: {self.root} — create it with `panelsynth init` "
                f"(or `panelsynth demo`) and pass it with --workspace"
            )
        return self

    # ----- inputs -------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    def original_data(self, wave: str) -> Path:
        return self.root / ORIGINAL_DATA / f"wave{check_wave_id(wave)}.csv"

    def raw_dir(self) -> Path:
        """Default folder of raw wave files read by ``panelsynth prepare``."""
        return self.root / RAW_DATA

    def _mode_file(self, base: str, name: str, mode: Mode | None) -> Path:
        """The full mode's own file (``<base>/full/<name>``) when it exists, else the shared one."""
        if mode == "full":
            specific = self.root / base / "full" / name
            if specific.exists():
                return specific
        return self.root / base / name

    def metadata_json(self, wave: str, mode: Mode | None = None) -> Path:
        return self._mode_file(JSON_METADATA, f"metadata_wave{check_wave_id(wave)}.json", mode)

    def metadata_json_for_write(self, wave: str, mode: Mode | None = None) -> Path:
        """Where a converter writes metadata: the shared file, or ``full/`` for the full mode."""
        name = f"metadata_wave{check_wave_id(wave)}.json"
        return self.root / JSON_METADATA / (mode if mode == "full" else "") / name

    def wave_context(self, wave: str) -> Path:
        return self.root / WAVE_CONTEXTS / f"wave{check_wave_id(wave)}_context.txt"

    def var_types(self, wave: str, mode: Mode | None = None) -> Path:
        return self._mode_file(VAR_TYPES, f"types_wave{check_wave_id(wave)}.json", mode)

    def var_types_for_write(self, wave: str, mode: Mode | None = None) -> Path:
        name = f"types_wave{check_wave_id(wave)}.json"
        return self.root / VAR_TYPES / (mode if mode == "full" else "") / name

    def study_dictionary(self) -> Path:
        """CSV dictionary of every raw variable (variable, question, responses), read by prepare."""
        return self.root / DICTIONARIES / "dictionary.csv"

    def ground_truth_dir(self) -> Path:
        """Simulator truth of the demo workspace (true classes, posteriors, parameters)."""
        return self.root / "Ground truth"

    def user_models_dir(self) -> Path:
        return self.root / PYDANTIC_MODELS

    # ----- step logs and outputs (per model dir) -------------------------------------------
    def cluster_descriptions_log(self, model_dir: str, wave: str) -> Path:
        d = check_model_dir(model_dir)
        return (
            self.root
            / CLUSTER_DESCRIPTIONS
            / d
            / f"Wave {check_wave_id(wave)} cluster descriptions.txt"
        )

    def examples_log(self, model_dir: str, wave: str) -> Path:
        d = check_model_dir(model_dir)
        return self.root / EXAMPLES / d / f"Wave {check_wave_id(wave)} examples.txt"

    def examples_csv(self, model_dir: str, wave: str) -> Path:
        """Machine-readable copy of the few-shot examples (used by the privacy metrics)."""
        d = check_model_dir(model_dir)
        return self.root / EXAMPLES / d / f"Wave {check_wave_id(wave)} examples.csv"

    def gen_metadata_log(self, model_dir: str, wave: str) -> Path:
        d = check_model_dir(model_dir)
        return self.root / GEN_METADATA / d / f"Wave {check_wave_id(wave)} generated metadata.txt"

    def output_dir(self, model_dir: str) -> Path:
        return self.root / FINAL_GEN_DATA / check_model_dir(model_dir)

    def output_csv(self, model_dir: str, wave: str) -> Path:
        return self.output_dir(model_dir) / f"gen_data_wave{check_wave_id(wave)}.csv"

    def imputed_dir(self, model_dir: str) -> Path:
        """``Imputed data/<model_dir>``: completed waves and imputed cells (issue 15)."""
        return self.root / "Imputed data" / check_model_dir(model_dir)

    def manifest(self, model_dir: str, wave: str) -> Path:
        return self.output_dir(model_dir) / f"wave{check_wave_id(wave)}_manifest.json"

    def checkpoint(self, model_dir: str, wave: str) -> Path:
        """Append-only JSONL of finished step-3 calls (one line per batch)."""
        return self.output_dir(model_dir) / ".checkpoints" / f"wave{check_wave_id(wave)}.jsonl"

    def lock(self, model_dir: str, wave: str) -> Path:
        return self.output_dir(model_dir) / ".checkpoints" / f"wave{check_wave_id(wave)}.lock"

    def cache_dir(self) -> Path:
        """Step 1/2 results keyed by a hash of their inputs."""
        return self.root / STATE / "cache"

    def prepare_dir(self) -> Path:
        """Reports of ``panelsynth prepare`` (fit, transitions, item ranking)."""
        return self.root / PREPARE_REPORTS

    # ----- evaluation ----------------------------------------------------------------------
    def eval_meta(self, wave: str) -> Path:
        return self.root / EVAL_METADATA / f"wave{check_wave_id(wave)}_eval_meta.json"

    def eval_table(self, name: str) -> Path:
        if name not in EVAL_TABLES + EXTRA_EVAL_TABLES:
            known = EVAL_TABLES + EXTRA_EVAL_TABLES
            raise ValueError(f"unknown evaluation table {name!r}; expected one of {known}")
        return self.root / EVAL_RESULTS / f"{name}.csv"

    def eval_dir(self, model_dir: str) -> Path:
        return self.root / EVALUATION / check_model_dir(model_dir)

    def eval_plot(self, model_dir: str, wave: str) -> Path:
        d = check_model_dir(model_dir)
        return self.eval_dir(d) / f"{d}_wave{check_wave_id(wave)}_results.png"

    def eval_metrics_json(self, model_dir: str, wave: str) -> Path:
        return self.eval_dir(model_dir) / f"wave{check_wave_id(wave)}_metrics.json"

    def holdout_ids(self) -> Path:
        """Respondents held out of steps 1-3 by ``panelsynth run --holdout`` (per wave and run)."""
        return self.root / EVALUATION / "holdout_ids.csv"

    def report_html(self) -> Path:
        return self.root / EVALUATION / "report.html"

    def eval_tables_lock(self) -> Path:
        """OS lock held while ``evaluate`` merges its figures into the results tables."""
        return self.root / EVAL_RESULTS / ".tables.lock"

    # ----- prepare's switch of its outputs -------------------------------------------------
    def prepare_lock(self) -> Path:
        """OS lock held by ``panelsynth prepare`` for its whole run."""
        return self.root / STATE / "prepare.lock"

    def prepare_staging(self) -> Path:
        """Where ``prepare`` builds its outputs before switching them in."""
        return self.root / STATE / "prepare-staging"

    def prepare_journal(self) -> Path:
        """The list of staged outputs to switch in; its presence means a switch is under way."""
        return self.root / STATE / "prepare-journal.json"

    # ----- discovery -----------------------------------------------------------------------
    def waves_with_data(self) -> list[str]:
        """Wave ids that have ``Original data/wave{W}.csv``, in study order."""
        folder = self.root / ORIGINAL_DATA
        waves = [p.stem[len("wave") :] for p in folder.glob("wave*.csv")] if folder.is_dir() else []
        return sorted((w for w in waves if _WAVE_RE.fullmatch(w)), key=wave_sort_key)

    def model_dirs_with_output(self) -> list[str]:
        folder = self.root / FINAL_GEN_DATA
        if not folder.is_dir():
            return []
        return sorted(
            p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("gen_data_wave*.csv"))
        )

    def generated_waves(self, model_dir: str) -> list[str]:
        folder = self.output_dir(model_dir)
        waves = [p.stem[len("gen_data_wave") :] for p in folder.glob("gen_data_wave*.csv")]
        return sorted(waves, key=wave_sort_key)

    def scaffold(self) -> list[Path]:
        """Create the SPEC §2 folders; return the ones that did not exist yet."""
        created = []
        for rel in SCAFFOLD_DIRS:
            p = self.root / rel
            if not p.exists():
                p.mkdir(parents=True)
                created.append(p)
        return created

    def require(self, path: Path, what: str, fix: str) -> Path:
        """Return ``path`` if it exists, else raise one actionable line."""
        if not path.exists():
            raise WorkspaceError(f"{what} not found: {self.rel(path)} — {fix}")
        return path

    def refuse_links(self, *paths: Path) -> None:
        """Refuse a symbolic link at ``paths`` or at any folder between the root and them.

        The folders panelsynth writes (``.checkpoints``, ``Final_gen_data``, the logs, the
        evaluation, ``.panelsynth``) may come with a workspace from someone else: a link there
        would make a run write (or resume into) a file outside the workspace.

        Raises:
            WorkspaceError: one line naming the link.
        """
        for path in paths:
            try:
                parts = path.relative_to(self.root).parts
            except ValueError:
                continue
            current = self.root
            for part in parts:
                current = current / part
                if current.is_symlink():
                    raise WorkspaceError(
                        f"{self.rel(current)} is a symbolic link — panelsynth does not follow "
                        f"links in the folders it writes; replace it with a real "
                        f"{'folder' if current.is_dir() else 'file'} (or remove it)"
                    )
                if not current.exists():
                    break

    def rel(self, path: Path) -> str:
        """Path relative to the workspace root, for messages."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)
