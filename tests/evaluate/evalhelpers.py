"""Helpers that build small evaluation workspaces (ordinal items, age, sex, clusters)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

VAR_TYPES_W1 = {
    "vacc_imp": "an ordinal",
    "vacc_safe": "an ordinal",
    "age": "a continuous",
    "sex": "a binary",
}
VAR_TYPES_W2 = {**VAR_TYPES_W1, "vaccinated": "a binary"}
LIKERT = {str(i): f"level {i}" for i in range(1, 6)}
METADATA = {
    "vacc_imp": {"question": "How important is vaccination?", "responses": LIKERT},
    "vacc_safe": {"question": "How safe are vaccines?", "responses": LIKERT},
    "age": {"question": "Age in years", "range": [18, 90]},
    "sex": {"question": "Sex", "responses": {"1": "male", "2": "female"}},
    "vaccinated": {"question": "Vaccinated this season?", "responses": {"0": "no", "1": "yes"}},
}


def simulate_wave(
    n: int, rng: np.random.Generator, *, wave: int, na_rate: float = 0.0
) -> pd.DataFrame:
    """Two attitude classes; items depend on the class and on each other; NA depends on class."""
    cluster = np.where(rng.random(n) < 0.55, 1, 2)
    base = np.where(cluster == 1, 4.0, 2.0)
    imp = np.clip(np.round(base + rng.normal(0, 0.8, n)), 1, 5)
    safe = np.clip(np.round(0.6 * imp + 0.4 * base + rng.normal(0, 0.7, n)), 1, 5)
    age = np.round(rng.normal(np.where(cluster == 1, 55, 40), 12, n)).clip(18, 90)
    sex = rng.integers(1, 3, n)
    df = pd.DataFrame(
        {
            "respondent_id": np.arange(n),
            "vacc_imp": imp,
            "vacc_safe": safe,
            "age": age,
            "sex": sex,
            "cluster": cluster,
        }
    )
    if na_rate:
        miss = rng.random(n) < np.where(cluster == 2, na_rate * 2, na_rate / 2)
        df.loc[miss, "vacc_safe"] = -99  # raw survey missing code
    if wave > 1:
        stay = rng.random(n) < 0.85
        df["prev_cluster"] = np.where(stay, cluster, 3 - cluster)
        df.loc[rng.random(n) < 0.05, "prev_cluster"] = np.nan  # entered this wave
        p = 1 / (1 + np.exp(-(imp - 3) * 1.5))
        df["vaccinated"] = (rng.random(n) < p).astype(int)
    return df


def workspace_folders(root: Path, toml: str) -> None:
    """The folders of a workspace the tests fill by hand, and its ``panelsynth.toml``."""
    for sub in (
        "Original data",
        "Dictionaries/json_metadata",
        "Dictionaries/var_types",
        "Dictionaries/wave_contexts",
        "Final_gen_data",
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "panelsynth.toml").write_text(toml)


def write_workspace(root: Path, n: int = 600, seed: int = 1, na_rate: float = 0.1) -> Path:
    """Write a two-wave workspace with dictionaries (formats of panelsynth.dictionaries)."""
    rng = np.random.default_rng(seed)
    workspace_folders(root, '[study]\nname = "test"\noutcome = "vaccinated"\n')
    for w, types in ((1, VAR_TYPES_W1), (2, VAR_TYPES_W2)):
        simulate_wave(n, rng, wave=w, na_rate=na_rate).to_csv(
            root / "Original data" / f"wave{w}.csv", index=False
        )
        (root / "Dictionaries/var_types" / f"types_wave{w}.json").write_text(json.dumps(types))
        meta = {k: METADATA[k] for k in types}
        (root / "Dictionaries/json_metadata" / f"metadata_wave{w}.json").write_text(
            json.dumps(meta)
        )
        (root / "Dictionaries/wave_contexts" / f"wave{w}_context.txt").write_text(
            f"Wave {w} of a test panel. Target variable: vaccinated."
        )
    return root


def real_clean(root: Path, wave: int) -> pd.DataFrame:
    df = pd.read_csv(root / "Original data" / f"wave{wave}.csv")
    return df.replace(-99, np.nan)


def write_synthetic(root: Path, model_dir: str, wave: int, df: pd.DataFrame) -> Path:
    path = root / "Final_gen_data" / model_dir / f"gen_data_wave{wave}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def synthetic_like(root: Path, wave: int, n: int, seed: int) -> pd.DataFrame:
    """A plausible synthetic set: fresh draws from the same simulator (no respondent_id)."""
    df = simulate_wave(n, np.random.default_rng(seed), wave=wave, na_rate=0.1)
    df = df.replace(-99, np.nan)
    return df.drop(columns=["respondent_id"])


def harmonised_wave(n: int = 800, seed: int = 0, na_rate: float = 0.1) -> pd.DataFrame:
    """A simulated wave-2 frame with missing codes cleaned and the evaluation dtypes."""
    from panelsynth.evaluate.columns import harmonise

    df = simulate_wave(n, np.random.default_rng(seed), wave=2, na_rate=na_rate)
    df = df.replace(-99, np.nan).drop(columns="respondent_id")
    return harmonise({"x": df}, eval_columns())["x"]


def eval_columns():
    """Evaluation columns of :func:`harmonised_wave` (wave 2: with the previous cluster)."""
    from panelsynth.evaluate.columns import columns_from_var_types

    return columns_from_var_types(VAR_TYPES_W2, prev_cluster_column="prev_cluster")
