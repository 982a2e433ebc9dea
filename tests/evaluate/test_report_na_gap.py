"""The report states the item non-response gap above its NA table."""

from __future__ import annotations

from panelsynth.evaluate.report import _na_gap_sentence


def test_na_gap_sentence_says_which_side_misses_more_answers() -> None:
    fewer = _na_gap_sentence(
        [
            {"variable": "a", "real_na_share": 0.10, "synthetic_na_share": 0.0},
            {"variable": "b", "real_na_share": 0.04, "synthetic_na_share": 0.01},
        ]
    )
    assert "7.0%" in fewer and "0.5%" in fewer and "fewer answers blank" in fewer
    assert "calibrated mode" in fewer
    same = _na_gap_sentence([{"variable": "a", "real_na_share": 0.05, "synthetic_na_share": 0.052}])
    assert "match" in same
    assert _na_gap_sentence([]) == ""
