"""Types from the dictionary's and the data's codes together, with the reason."""

from __future__ import annotations

import pandas as pd
import pytest

from panelsynth.dictionaries import VariableMeta, parse_responses
from panelsynth.prepare.vartypes import explain_var_type, order_assumed


def _meta(cell: str) -> VariableMeta:
    return VariableMeta(question="q", **parse_responses(cell, variable="v", source="d"))


@pytest.mark.parametrize(
    ("cell", "values", "vtype", "why"),
    [
        ("1 = low ... 5 = high", [1, 2], "an ordinal", "5 ordered numeric codes (5 in the"),
        ("-1=Disagree; 0=Neither; 1=Agree", [-1, 0, 1], "an ordinal", "3 ordered numeric"),
        ("1=Yes; 2=No", [1, 2], "a binary", "2 codes"),
        (
            "1=Yes; 2=No",
            [1, 2, 3],
            "an ordinal",
            "3 ordered numeric codes (2 in the dictionary, 1 more observed)",
        ),
        (
            "Labour; Conservative; Green/Left Alliance",
            ["Labour"],
            "a categorical",
            "3 text categories",
        ),
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


# ----- the measurement level of an SPSS file ------------------------------------------------------
PARTY = "1=Conservative; 2=Labour; 3=Liberal Democrat; 4=Green"
LEVEL = "measurement level {} in the SPSS file"


@pytest.mark.parametrize(
    ("measure", "cell", "values", "vtype", "why"),
    [
        ("nominal", PARTY, [1, 2, 3, 4], "a categorical", LEVEL.format("nominal")),
        ("ordinal", "1 = low ... 5 = high", [1, 3, 5], "an ordinal", LEVEL.format("ordinal")),
        ("scale", "", [18.0, 40.5, 77.0], "a continuous", LEVEL.format("scale")),
        ("nominal", "1=Yes; 2=No", [1, 2], "a binary", LEVEL.format("nominal") + "; 2 codes"),
        ("scale", "", [0, 1, 1], "a binary", LEVEL.format("scale") + "; 2 codes"),
        (
            "ordinal",
            "",
            ["low", "mid", "high"],
            "a categorical",
            "measurement level ordinal in the SPSS file, but the answers are text",
        ),
        (
            "scale",
            "1 = low ... 5 = high",
            [1, 2, 5],
            "a continuous",
            LEVEL.format("scale") + ", though every answer has a value label — declare its type",
        ),
    ],
)
def test_the_files_measurement_level_types_the_variable(
    measure: str, cell: str, values: list, vtype: str, why: str
) -> None:
    got = explain_var_type(pd.Series(values), _meta(cell), measure=measure)
    assert got == (vtype, why)
    assert not order_assumed(*got)


def test_the_level_beats_the_codes_and_the_demographic_rule_but_not_the_type_column() -> None:
    party = _meta(PARTY)
    assert explain_var_type(pd.Series([1, 2, 3]), party)[0] == "an ordinal"  # codes alone
    assert explain_var_type(pd.Series([1, 2, 3]), party, measure="nominal")[0] == "a categorical"
    education = _meta("1=Primary; 2=Secondary; 3=Degree")
    got = explain_var_type(pd.Series([1, 2, 3]), education, measure="ordinal", demographic=True)
    assert got[0] == "an ordinal"
    got = explain_var_type(pd.Series([1, 2, 3]), party, declared="an ordinal", measure="nominal")
    assert got == ("an ordinal", "declared in the dictionary's type column")
    # a level the file does not know (Stata, or SPSS saved without one): the codes decide
    assert explain_var_type(pd.Series([1, 2, 3]), party, measure="unknown")[0] == "an ordinal"


def test_order_assumed_only_for_numeric_codes_without_type_or_level() -> None:
    assert order_assumed(*explain_var_type(pd.Series([1, 2, 3]), _meta(PARTY)))
    assert not order_assumed(*explain_var_type(pd.Series([1, 2]), _meta("0-10")))
    assert not order_assumed(*explain_var_type(pd.Series([1, 2, 3]), None))  # no labels
    assert not order_assumed(
        *explain_var_type(pd.Series([1, 2, 3]), _meta(PARTY), declared="an ordinal")
    )
