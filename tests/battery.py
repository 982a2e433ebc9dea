"""A many-item workspace for the full mode: a 28-item battery with item non-response.

Not the demo simulator: Likert items with distinct question texts, a few categorical items with
text labels, age and sex; two clusters that answer the battery differently; every item has some
missing answers (more in cluster 2), as real batteries do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.scaffold import init_workspace

TOPICS = [
    "public transport", "the health service", "schools", "the police", "pensions", "roads",
    "housing", "the environment", "defence", "science", "culture", "sport", "unemployment",
    "childcare", "the courts", "local councils", "broadband", "water supply", "farming",
    "tourism", "energy prices", "immigration services", "libraries", "parks",
]
LIKERT = {"1": "Much too little", "2": "Too little", "3": "About right", "4": "Too much",
          "5": "Much too much"}
CATEGORICAL = {
    "party": ("Which party would you vote for tomorrow?",
              {"1": "Conservative", "2": "Labour", "3": "Social Democrat", "4": "Green"}),
    "religion": ("Which religion, if any, do you belong to?",
                 {"1": "None", "2": "Church of England", "3": "Catholic", "4": "Other"}),
    "tenure": ("Do you own or rent your home?", {"1": "Own outright", "2": "Mortgage",
                                                  "3": "Rent"}),
    "social_class": ("Which social class would you say you belong to?",
              {"1": "Working class", "2": "Lower middle", "3": "Upper middle"}),
}


def battery_items(n_items: int = 28) -> dict[str, tuple[str, dict[str, str]]]:
    """``{name: (question, responses)}``: Likert spending items, then the categorical ones."""
    n_likert = n_items - len(CATEGORICAL)
    items = {
        f"spend{i + 1:02d}": (f"Does the government spend too much or too little on {t}?", LIKERT)
        for i, t in enumerate(TOPICS[:n_likert])
    }
    items.update(CATEGORICAL)
    return items


def write_battery_workspace(root: Path, *, n: int = 80, n_items: int = 28, seed: int = 0) -> Path:
    """One wave (``1``) of ``n`` respondents: ``n_items`` items + age + sex + cluster."""
    ws, _ = init_workspace(root)
    rng = np.random.default_rng(seed)
    items = battery_items(n_items)
    meta: dict[str, Any] = {v: {"question": q, "responses": r} for v, (q, r) in items.items()}
    meta["age"] = {"question": "Age in years", "range": [18, 90]}
    meta["sex"] = {"question": "Sex of the respondent", "responses": {"1": "Male", "2": "Female"}}
    types = {v: ("a categorical" if v in CATEGORICAL else "an ordinal") for v in items}
    types |= {"age": "a continuous", "sex": "a binary"}
    cluster = np.where(rng.random(n) < 0.5, 1, 2)
    df = pd.DataFrame({"respondent_id": np.arange(n)})
    for v, (_, responses) in items.items():
        k = len(responses)
        hi = rng.integers(max(1, k - 1), k + 1, n)
        lo = rng.integers(1, min(2, k) + 1, n)
        col = np.where(cluster == 1, hi, lo).astype(float)
        na = rng.random(n) < np.where(cluster == 1, 0.04, 0.12)
        col[na] = -99
        df[v] = col
    df["age"] = rng.integers(18, 90, n)
    df["sex"] = rng.integers(1, 3, n)
    df["cluster"] = cluster
    df.to_csv(ws.original_data("1"), index=False)
    ws.metadata_json_for_write("1").write_text(json.dumps(meta, indent=1))
    ws.var_types_for_write("1").write_text(json.dumps(types, indent=1))
    ws.wave_context("1").write_text(
        "Wave 1 of an attitudes panel on public spending, 2019. Target variable: party."
    )
    return root
