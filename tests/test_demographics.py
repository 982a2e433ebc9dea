"""Demographics under the names real surveys use."""

from __future__ import annotations

import pytest

from panelsynth.demographics import kind_of, resolve_demographics


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("sex", "sex"), ("Gender", "sex"), ("gender_identity", "sex"), ("resp_sex", "sex"),
        ("age", "age"), ("age_group", "age"), ("Age band", "age"), ("agecat", "age"),
        ("age10", "age"), ("educ", "education"), ("education_level", "education"),
        ("highest_qualification", "education"),
        ("agree", None), ("page", None), ("engagement", None), ("party", None),
    ],
)
def test_kind_of(name: str, kind: str | None) -> None:
    assert kind_of(name) == kind


def test_configured_names_are_matched_by_kind() -> None:
    d = resolve_demographics(["age", "sex"], ["id", "gender", "age_group", "att01", "educ"])
    assert d.used == ["age_group", "gender"]
    assert d.matched == {"age": "age_group", "sex": "gender"}
    assert d.unconfigured == ["educ"]
    notes = d.notes("the raw waves")
    assert len(notes) == 3
    assert "'sex'" in notes[1] and "'gender' is used" in notes[1]
    assert "add it to prepare.demographics" in notes[2]


def test_present_names_win_and_absent_ones_are_reported() -> None:
    d = resolve_demographics(["age", "sex"], ["age", "sex", "gender"])
    assert d.used == ["age", "sex"] and not d.matched and not d.unconfigured
    d = resolve_demographics(["age", "sex", "income"], ["age", "att01"])
    assert d.used == ["age"] and d.missing == ["sex", "income"]
    assert any("'income'" in n and "not used" in n for n in d.notes("x"))
