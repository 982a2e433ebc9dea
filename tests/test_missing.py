"""Which missing codes apply to which variable: labelled answers are never missing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from panelsynth.config import DEFAULT_MISSING_CODES
from panelsynth.data import clean_missing_by_variable
from panelsynth.dictionaries import VariableMeta
from panelsynth.missing import codes_for_variable, looks_missing

TRINARY = VariableMeta(question="q", responses={"-1": "Disagree", "0": "Neither", "1": "Agree"})
LIKERT_DK = VariableMeta(question="q", responses={"1": "Low", "2": "High", "-9": "Don't know"})


def test_a_labelled_code_is_an_answer_unless_its_label_says_missing() -> None:
    plan = codes_for_variable(TRINARY, DEFAULT_MISSING_CODES)
    assert -1 not in plan.applied and plan.kept == {"-1": "labelled 'Disagree'"}
    assert -99 in plan.applied and -9 in plan.applied
    plan = codes_for_variable(LIKERT_DK, DEFAULT_MISSING_CODES)
    assert -9 in plan.applied and plan.kept == {}
    ranged = VariableMeta(question="q", range=(-5, 5))
    plan = codes_for_variable(ranged, DEFAULT_MISSING_CODES)
    assert set(plan.kept) == {"-1"} and -99 in plan.applied
    assert codes_for_variable(None, [-1, -99]).applied == [-1, -99]
    text = VariableMeta(question="q", responses={"NA": "North America", "EU": "Europe"})
    assert "na" in codes_for_variable(text, DEFAULT_MISSING_CODES).kept


def test_missing_labels() -> None:
    for label in ("Refused", "Don't know", "DK", "Not applicable", "No answer", "N/A",
                  "Prefer not to say", "Missing"):
        assert looks_missing(label), label
    for label in ("Disagree", "Neither", "Not at all important", "North America", "None"):
        assert not looks_missing(label), label


def test_clean_by_variable_keeps_answers_and_counts_what_became_na() -> None:
    df = pd.DataFrame(
        {
            "att": [-1, 0, 1, -1, -99, np.nan, -9],
            "lik": [1, 2, -9, -9, -99, 1, 2],
            "party": ["Labour", "-99", "NA", "Refused", "Green/Left Alliance", "NA", None],
        }
    )
    party = VariableMeta(
        question="q", responses={"Labour": "Labour", "Green/Left Alliance": "Green/Left Alliance"}
    )
    meta = {"att": TRINARY, "lik": LIKERT_DK, "party": party}
    out, tally = clean_missing_by_variable(df, DEFAULT_MISSING_CODES, meta)
    assert out["att"].tolist()[:4] == [-1, 0, 1, -1]
    assert out["att"].isna().sum() == 3
    assert tally.to_na["att"] == {"-99": 1, "-9": 1}
    assert tally.kept["att"] == {"-1": "labelled 'Disagree'"} and tally.kept_n["att"] == {"-1": 2}
    assert tally.to_na["lik"] == {"-9": 2, "-99": 1}
    assert tally.to_na["party"] == {"-99": 1, "NA": 2, "Refused": 1}
    assert out["party"].dropna().tolist() == ["Labour", "Green/Left Alliance"]
    rows = tally.rows("1", len(df))
    assert {"wave": "1", "variable": "att", "code": "-1", "action": "kept as answer", "n": 2,
            "share": round(2 / 7, 4), "why": "labelled 'Disagree'"} in rows
