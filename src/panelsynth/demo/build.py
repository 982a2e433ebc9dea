"""Write the demo workspace (SPEC §2, §7) from a simulated panel.

Everything written is a deterministic function of ``(seed, n_respondents)``: fixed column order,
fixed float formatting, sorted JSON keys where order carries no meaning, ``\\n`` line endings and no
timestamps or absolute paths, so two builds with the same seed are byte-identical.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from panelsynth.config import parse_config
from panelsynth.demo.persistence import wave_pair_stability
from panelsynth.demo.simulator import (
    AGE_MAX,
    AGE_MIN,
    ID_COLUMN,
    MISSING_CODES,
    OUTCOME,
    SimulatedPanel,
    simulate_panel,
)
from panelsynth.dictionaries import metadata_from_csv, metadata_to_json
from panelsynth.errors import ConfigError, WorkspaceError
from panelsynth.io import atomic_write_csv, atomic_write_text
from panelsynth.scaffold import init_workspace
from panelsynth.workspace import STATE, Workspace

log = logging.getLogger("panelsynth")

MARKER_NAME = "demo.json"
MIN_RESPONDENTS = 50
N_DENSE_ITEMS = 3
ORIENTATION_ITEM = "vaccimportant"
DEMO_MODEL_LABEL = "local/smollm2"
DEMO_MODEL_DIR = "smollm2"

ITEM_TYPE = "an ordinal"
DEMOGRAPHIC_TYPES: dict[str, str] = {"age": "a continuous", "sex": "a binary"}
OUTCOME_TYPE = "a binary"


@dataclass
class DemoResult:
    """What :func:`build_demo` produced.

    Attributes:
        workspace: The demo workspace.
        bayes_accuracy: Per wave, accuracy of the Bayes-optimal class assignment.
        bayes_ari: Per wave, adjusted Rand index of that assignment with the true classes.
        waves: Wave ids in study order.
        dense_items: Per wave, the items of the dense mode (strongest separation first).
        panel: The simulated panel (raw answers and truth in memory).
    """

    workspace: Workspace
    bayes_accuracy: dict[str, float]
    bayes_ari: dict[str, float]
    waves: list[str]
    dense_items: dict[str, list[str]]
    panel: SimulatedPanel


def demo_marker(ws: Workspace) -> Path:
    """The file that marks a folder as a demo workspace (safe to rebuild)."""
    return ws.root / STATE / MARKER_NAME


def build_demo(directory: str | Path, *, seed: int = 2024, n_respondents: int = 2000) -> DemoResult:
    """Simulate a FluPaths-like panel and write it as a complete workspace.

    Writes ``Raw data/``, ``Original data/`` (with the true classes as ``cluster`` and
    ``prev_cluster``), the CSV dictionary and per-wave metadata (made through the converter),
    var types for the dense and the full mode, wave contexts, ``Ground truth/`` and a demo
    ``panelsynth.toml``. A folder built by an earlier ``build_demo`` is rebuilt in place; any
    other non-empty folder is refused.

    Args:
        directory: Folder of the demo workspace (created if needed).
        seed: Seed of the simulation; the same seed gives byte-identical files.
        n_respondents: Respondents recruited in wave 1.

    Returns:
        The workspace and the Bayes-optimal accuracy and ARI per wave.

    Raises:
        WorkspaceError: ``directory`` is a file, or a non-empty folder that is not a demo workspace.
        ConfigError: ``n_respondents`` is too small.
    """
    if n_respondents < MIN_RESPONDENTS:
        raise ConfigError(
            f"the demo needs at least {MIN_RESPONDENTS} respondents, not {n_respondents} — "
            f"raise --respondents"
        )
    root = Path(directory).expanduser()
    _refuse_foreign_folder(root)

    panel = simulate_panel(n_respondents, seed=seed)
    ws, _ = init_workspace(root)
    marker = demo_marker(ws)
    previous = _read_marker(marker)
    settings = {
        "generator": "panelsynth demo",
        "n_respondents": int(n_respondents),
        "seed": int(seed),
    }
    if previous and previous != settings:
        log.warning(
            "rebuilding the demo in %s with %s (was %s); generated outputs and evaluations of the "
            "old demo are left as they are",
            ws.root,
            settings,
            previous,
        )
    atomic_write_text(marker, _dumps(settings))  # first, so an interrupted build can be redone

    waves = panel.waves
    dense = {w: panel.top_items(w, N_DENSE_ITEMS) for w in waves}
    atomic_write_text(ws.config_path, demo_config_text(waves))
    _write_raw(ws, panel)
    _write_original(ws, panel)
    _write_dictionaries(ws, panel, dense)
    _write_contexts(ws, panel)
    _write_ground_truth(ws, panel, dense)

    log.debug(
        "demo workspace written to %s (%d respondents, %d waves)",
        ws.root,
        n_respondents,
        len(waves),
    )
    for w in waves:
        log.debug(
            "demo wave %s: %d respondents, Bayes-optimal accuracy %.3f, ARI %.3f",
            w,
            len(panel.truth[w]),
            panel.bayes_accuracy[w],
            panel.bayes_ari[w],
        )
    return DemoResult(
        workspace=ws,
        bayes_accuracy=dict(panel.bayes_accuracy),
        bayes_ari=dict(panel.bayes_ari),
        waves=list(waves),
        dense_items=dense,
        panel=panel,
    )


def _refuse_foreign_folder(root: Path) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise WorkspaceError(
            f"{root} exists and is not a folder — choose another path for the demo"
        )
    if any(root.iterdir()) and not (root / STATE / MARKER_NAME).is_file():
        raise WorkspaceError(
            f"{root} is not empty and is not a panelsynth demo workspace — choose a new or empty "
            f"folder for the demo (nothing was changed)"
        )


def _read_marker(marker: Path) -> dict | None:
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _dumps(obj: object) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# ----- config ------------------------------------------------------------------------------------
def demo_config_text(waves: list[str]) -> str:
    """The demo's ``panelsynth.toml`` (validated against the config schema before it is written)."""
    wave_list = ", ".join(f'"{w}"' for w in waves)
    codes = ", ".join(str(c) for c in MISSING_CODES)
    text = f"""\
# panelsynth demo workspace: a simulated FluPaths-like panel, written by `panelsynth demo`.
# Rebuilding the demo rewrites this file. The simulator's truth is in "Ground truth/".
# Every key is optional; see README "Configuration" for all of them.

[study]
name = "panelsynth demo: simulated FluPaths-like panel"
waves = [{wave_list}]
id_column = "{ID_COLUMN}"
cluster_column = "cluster"
prev_cluster_column = "prev_cluster"
outcome = "{OUTCOME}"
missing_codes = [{codes}]            # -99 refused, -98 don't know

[prepare]
raw_dir = "Raw data"
raw_pattern = "wave{{W}}.csv"
demographics = ["age", "sex"]
n_dense_items = {N_DENSE_ITEMS}

[clustering]
k = 2
method = "lca"
orientation_item = "{ORIENTATION_ITEM}"   # cluster 1 = more positive answers on it
orientation_higher_is_positive = true

[generation]
mode = "dense"

[[models]]
label = "{DEMO_MODEL_LABEL}"
dir = "{DEMO_MODEL_DIR}"
"""
    parse_config(tomllib.loads(text), "demo panelsynth.toml")  # a broken template fails loudly
    return text


# ----- data --------------------------------------------------------------------------------------
def _write_raw(ws: Workspace, panel: SimulatedPanel) -> None:
    for w in panel.waves:
        atomic_write_csv(ws.raw_dir() / f"wave{w}.csv", panel.raw[w])


def original_frame(panel: SimulatedPanel, wave: str) -> pd.DataFrame:
    """``Original data/wave{W}.csv``: raw answers with missing codes as NA, true class as labels."""
    raw = panel.raw[wave]
    truth = panel.truth[wave]
    out = {ID_COLUMN: raw[ID_COLUMN].to_numpy()}
    for col in raw.columns[1:]:
        values = raw[col].to_numpy()
        arr = pd.array(values, dtype="Int64")
        arr[values < 0] = pd.NA
        out[col] = arr
    out["cluster"] = truth["true_class"].to_numpy()
    if wave != panel.waves[0]:
        out["prev_cluster"] = truth["prev_class"].array
    return pd.DataFrame(out)


def _write_original(ws: Workspace, panel: SimulatedPanel) -> None:
    for w in panel.waves:
        atomic_write_csv(ws.original_data(w), original_frame(panel, w))


# ----- dictionaries ------------------------------------------------------------------------------
def dictionary_rows(panel: SimulatedPanel) -> list[tuple[str, str, str]]:
    """Rows (variable, question, responses) of the study's CSV dictionary."""
    rows = [(ID_COLUMN, "Respondent identifier, the same in every wave", "")]
    rows += [(it.name, it.question, it.responses_text()) for it in panel.params.items]
    rows += [
        ("age", "Age of the respondent in years (top-coded at 90)", f"{AGE_MIN}-{AGE_MAX}"),
        ("sex", "Sex of the respondent", "1=Male; 2=Female"),
        (OUTCOME, "Have you already received a flu vaccine this flu season?", "0=No; 1=Yes"),
    ]
    return rows


def var_types_for(panel: SimulatedPanel, wave: str, items: list[str]) -> dict[str, str]:
    """Var types of a wave for the given items, plus demographics and (if asked) the outcome."""
    types = {name: ITEM_TYPE for name in items}
    types.update(DEMOGRAPHIC_TYPES)
    if panel.has_outcome(wave):
        types[OUTCOME] = OUTCOME_TYPE
    return types


def _write_dictionaries(ws: Workspace, panel: SimulatedPanel, dense: dict[str, list[str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["variable", "question", "responses"])
    writer.writerows(dictionary_rows(panel))
    atomic_write_text(ws.study_dictionary(), buf.getvalue())

    meta_all = metadata_from_csv(ws.study_dictionary())  # the converter users run, not a shortcut
    for w in panel.waves:
        modes = {None: dense[w], "full": panel.items_in_wave(w)}
        for mode, items in modes.items():
            types = var_types_for(panel, w, items)
            meta = {name: meta_all[name] for name in types}
            atomic_write_text(ws.metadata_json_for_write(w, mode), metadata_to_json(meta) + "\n")
            atomic_write_text(ws.var_types_for_write(w, mode), json.dumps(types, indent=2) + "\n")


def wave_time(wave: int) -> str:
    """Time of collection of a demo wave: autumn 2016, spring 2017, autumn 2017, ..."""
    autumn = wave % 2 == 1
    year = 2016 + wave // 2
    season = f"{2016 + (wave - 1) // 2}-{str(2017 + (wave - 1) // 2)[-2:]} flu season"
    if autumn:
        return f"autumn {year} (start of the {season})"
    return f"spring {year} (end of the {season})"


def context_text(panel: SimulatedPanel, wave: str) -> str:
    """The wave context: purpose, time of collection, target variable, previous wave."""
    w = int(wave)
    purpose = (
        f"Purpose: wave {wave} of a longitudinal panel survey of adults about influenza, flu "
        f"vaccination and attitudes towards vaccines, modelled on the FluPaths study. The "
        f"respondents are simulated by panelsynth's demo (they are not real people)."
    )
    when = f"Time of collection: {wave_time(w)}."
    if panel.has_outcome(wave):
        target = (
            f"Target variable: {OUTCOME} — whether the respondent has already received a flu "
            f"vaccine this season (0 = No, 1 = Yes)."
        )
    else:
        target = (
            f"Target variable: {ORIENTATION_ITEM} — how important it is to the respondent to get "
            f"a flu vaccine this season (1 = Not at all important ... 5 = Extremely important); "
            f"vaccination itself is asked from wave {panel.params.outcome_from_wave} on."
        )
    if w == 1:
        previous = "Previous wave: none — this is the first wave of the panel."
    else:
        previous = f"Previous wave: wave {w - 1}, collected in {wave_time(w - 1)}."
    return "\n".join([purpose, when, target, previous]) + "\n"


def _write_contexts(ws: Workspace, panel: SimulatedPanel) -> None:
    for w in panel.waves:
        atomic_write_text(ws.wave_context(w), context_text(panel, w))


# ----- ground truth ------------------------------------------------------------------------------
TRUTH_COLUMNS: dict[str, str] = {
    ID_COLUMN: "respondent identifier",
    "true_class": "true latent class in this wave (1 = positive, 2 = negative)",
    "posterior_class1": "P(class 1 | this wave's answers, missingness, age, outcome) under the "
    "true parameters and the wave's class prior",
    "bayes_class": "Bayes-optimal class (1 if posterior_class1 >= 0.5, else 2)",
    "posterior_class1_items": "the same posterior from the attitude items (incl. missingness) only",
}


def _write_ground_truth(ws: Workspace, panel: SimulatedPanel, dense: dict[str, list[str]]) -> None:
    gt = ws.ground_truth_dir()
    per_wave: dict[str, dict] = {}
    for w in panel.waves:
        truth = panel.truth[w]
        atomic_write_csv(gt / f"truth_wave{w}.csv", truth[list(TRUTH_COLUMNS)], float_format="%.6f")
        shares = panel.class_shares(w)
        wave_info = {
            "n_respondents": int(len(truth)),
            "class_shares": {k: round(v, 6) for k, v in shares.items()},
            "class1_prior_model": round(panel.class_prior[w], 6),
            "bayes_accuracy": round(panel.bayes_accuracy[w], 6),
            "bayes_ari": round(panel.bayes_ari[w], 6),
            "bayes_expected_accuracy": round(panel.bayes_expected_accuracy[w], 6),
            "bayes_accuracy_items_only": round(panel.bayes_accuracy_items_only[w], 6),
            "items": panel.items_in_wave(w),
            "dense_items": dense[w],
            "item_separation_mi": {k: round(v, 6) for k, v in panel.separation[w].items()},
            "has_outcome": panel.has_outcome(w),
        }
        if w != panel.waves[0]:
            prev = truth["prev_class"]
            seen = prev.notna().to_numpy()
            pairs = prev[seen].astype(int).to_numpy() * 10 + truth["true_class"].to_numpy()[seen]
            counts = {f"{a}->{b}": int(np.sum(pairs == a * 10 + b)) for a in (1, 2) for b in (1, 2)}
            wave_info["transition_counts"] = counts
            before = panel.waves[panel.waves.index(w) - 1]
            wave_info["stability_vs_previous_wave"] = wave_pair_stability(
                panel.raw[before], panel.raw[w], panel.items_in_wave(w), ID_COLUMN
            )
        per_wave[w] = wave_info
    doc = {
        "generator": "panelsynth demo",
        "seed": int(panel.seed),
        "n_respondents": int(panel.n_respondents),
        "parameters": panel.params.to_dict(),
        "truth_columns": TRUTH_COLUMNS,
        "waves": per_wave,
    }
    atomic_write_text(gt / "ground_truth.json", _dumps(doc))
