"""A one-wave survey saved as SPSS (``.sav``) or Stata (``.dta``), with the labels such files carry.

- ``party``: 1=Conservative, 2=Labour, 3=Liberal Democrat, 4=Green — unordered (SPSS level
  ``nominal``);
- ``agree``: a 1..5 agreement item (``ordinal``); ``trust``: a 1..5 trust item (``ordinal``);
- ``age``: years (``scale``), no value labels.

Two latent classes answer ``agree`` and ``trust`` differently and favour different parties.
Stata has no measurement levels: the ``.dta`` file carries the same labels without them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat

from panelsynth.scaffold import init_workspace

PARTY = {1: "Conservative", 2: "Labour", 3: "Liberal Democrat", 4: "Green"}
AGREE = {1: "Strongly disagree", 2: "Disagree", 3: "Neither", 4: "Agree", 5: "Strongly agree"}
QUESTIONS = {
    "respondent_id": "Respondent id",
    "party": "Which party do you feel closest to?",
    "agree": "Vaccines are safe.",
    "trust": "How much do you trust your doctor?",
    "age": "Age in years",
}
MEASURES = {
    "respondent_id": "scale",
    "party": "nominal",
    "agree": "ordinal",
    "trust": "ordinal",
    "age": "scale",
}


def labelled_survey(root: Path, suffix: str = ".sav", *, n: int = 200, seed: int = 3) -> Path:
    """A workspace whose ``Raw data/wave1{suffix}`` is the survey above; no dictionary.csv."""
    init_workspace(root)
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.5
    df = pd.DataFrame(
        {
            "respondent_id": np.arange(1, n + 1, dtype=float),
            "party": np.where(positive, rng.choice([1, 2], n), rng.choice([3, 4], n)),
            "agree": np.where(positive, rng.integers(3, 6, n), rng.integers(1, 4, n)),
            "trust": np.where(positive, rng.integers(3, 6, n), rng.integers(1, 4, n)),
            "age": rng.integers(18, 90, n),
        }
    ).astype(float)
    labels = {"party": PARTY, "agree": AGREE, "trust": AGREE}
    path = root / "Raw data" / f"wave1{suffix}"
    path.parent.mkdir(exist_ok=True)
    if suffix == ".dta":
        pyreadstat.write_dta(df, str(path), column_labels=QUESTIONS, variable_value_labels=labels)
    else:
        pyreadstat.write_sav(
            df,
            str(path),
            column_labels=QUESTIONS,
            variable_value_labels=labels,
            variable_measure=MEASURES,
        )
    (root / "panelsynth.toml").write_text(
        '[study]\nwaves = ["1"]\n[prepare]\ndemographics = ["age"]\n', encoding="utf-8"
    )
    return root
