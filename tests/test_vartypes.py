"""Types from the dictionary's and the data's codes together, with the reason."""

from __future__ import annotations

import pandas as pd
import pytest

from panelsynth.dictionaries import VariableMeta, parse_responses
from panelsynth.prepare.vartypes import explain_var_type


def _meta(cell: str) -> VariableMeta:
    return VariableMeta(question="q", **parse_responses(cell, variable="v", source="d"))


@pytest.mark.parametrize(
    ("cell", "values", "vtype", "why"),
    [
        ("1 = low ... 5 = high", [1, 2], "an ordinal", "5 ordered numeric codes (5 in the"),
        ("-1=Disagree; 0=Neither; 1=Agree", [-1, 0, 1], "an ordinal", "3 ordered numeric"),
        ("1=Yes; 2=No", [1, 2], "a binary", "2 codes"),
        ("1=Yes; 2=No", [1, 2, 3], "an ordinal", "3 ordered numeric codes (2 in the dictionary, "
         "1 more observed)"),
        ("Labour; Conservative; Green/Left Alliance", ["Labour"], "a categorical",
         "3 text categories"),
        ("0-7", [0, 3, 7], "an ordinal", "dictionary range 0-7: 8 whole-number points"),
        ("0-10", [0, 10], "an ordinal", "dictionary range 0-10: 11 whole-number points"),
        ("0-1", [0, 1], "a binary", "dictionary range 0-1: two whole-number points"),
        ("18-90", [18, 40], "a continuous", "dictionary range 18-90"),
        ("0-7", [0.5, 3.25], "a continuous", "dictionary range 0-7"),
        ("1=Low; 2=Mid; 3=High; -9=Don't know", [1, 2], "an ordinal", "3 ordered numeric"),
    ],
)
def test_declared_and_observed_codes(cell: str, values: list, vtype: str, why: str) -> None:
    got = explain_var_type(pd.Series(values), _meta(cell), missing_codes=[-9])
    assert got[0] == vtype
    assert got[1].startswith(why)


def test_declared_type_wins_and_demographic_codes_are_categories() -> None:
    meta = _meta("1=North; 2=South; 3=East")
    assert explain_var_type(pd.Series([1, 2, 3]), meta, demographic=True)[0] == "a categorical"
    got = explain_var_type(pd.Series([1, 2]), meta, declared="a continuous")
    assert got == ("a continuous", "declared in the dictionary's type column")
