"""Hand-made panels for the imputation tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from panelsynth.dictionaries import VariableMeta
from panelsynth.impute.gaps import Panel, PanelWave

N_SMALL = 150  # respondents of the small demo workspace


def ordinal(codes: int = 4) -> VariableMeta:
    return VariableMeta(question="q", responses={str(c): f"L{c}" for c in range(1, codes + 1)})


def hand_panel(n: int = 40, seed: int = 0) -> Panel:
    """Two waves, variables a/b (ordinal 1-4) and c (never missing); cluster 1 answers low."""
    rng = np.random.default_rng(seed)
    waves = {}
    ids = [str(i) for i in range(1, n + 1)]
    for w, present in (("1", ids), ("2", ids[: n - 5])):
        cl = np.array([1 if int(i) % 2 else 2 for i in present])
        a = np.where(cl == 1, rng.integers(1, 3, len(cl)), rng.integers(3, 5, len(cl))).astype(
            float
        )
        b = a.copy()
        c = np.where(cl == 1, 1.0, 4.0)
        a[::7] = np.nan
        b[3::9] = np.nan
        frame = pd.DataFrame(
            {"a": a, "b": b, "c": c, "cluster": cl}, index=pd.Index(present, name="respondent_id")
        )
        if w == "2":
            frame["prev_cluster"] = pd.array(cl, dtype="Int64")
        types = {"a": "an ordinal", "b": "an ordinal", "c": "an ordinal"}
        waves[w] = PanelWave(w, frame, types, {v: ordinal() for v in types})
    return Panel(waves)
