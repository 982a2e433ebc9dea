from __future__ import annotations

import pandas as pd
import pytest

from panelsynth.impute.gaps import load_panel
from panelsynth.impute.mask import mask_panel
from panelsynth.workspace import Workspace


def _observed(panel) -> int:
    return sum(int(pw.frame[pw.variables].notna().sum().sum()) for pw in panel.waves.values())


def test_masking_is_seeded_and_hides_exactly_the_requested_share(small_demo_root) -> None:
    panel = load_panel(Workspace(small_demo_root))
    before = {w: pw.frame.copy() for w, pw in panel.waves.items()}
    a = mask_panel(panel, cell_share=0.1, wave_share=0.1, seed=5)
    b = mask_panel(panel, cell_share=0.1, wave_share=0.1, seed=5)
    c = mask_panel(panel, cell_share=0.1, wave_share=0.1, seed=6)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert not a.truth.equals(c.truth)
    for w, pw in panel.waves.items():  # the caller's panel is untouched
        pd.testing.assert_frame_equal(pw.frame, before[w])

    seen: dict[str, list[str]] = {}
    for w, pw in panel.waves.items():
        for rid in pw.ids:
            seen.setdefault(rid, []).append(w)
    eligible = [r for r, ws in seen.items() if len(ws) > 1]
    assert len(a.hidden_rows) == round(0.1 * len(eligible))
    for w, rid in a.hidden_rows[["wave", "respondent_id"]].itertuples(index=False):
        assert seen[rid][-1] == w and rid not in a.panel.waves[w].frame.index
    wave_cells = (a.truth["kind"] == "wave").sum()
    observed_after_rows = _observed(panel) - wave_cells
    assert (a.truth["kind"] == "item").sum() == round(0.1 * observed_after_rows)
    assert _observed(a.panel) == _observed(panel) - len(a.truth)
    for w, rid, v, val, kind in a.truth.itertuples(index=False):
        assert panel.waves[w].frame.at[rid, v] == val
        if kind == "item":
            assert pd.isna(a.panel.waves[w].frame.at[rid, v])


def test_mask_shares_are_checked(small_demo_root) -> None:
    panel = load_panel(Workspace(small_demo_root), waves=["1", "2"])
    with pytest.raises(ValueError, match="cell_share"):
        mask_panel(panel, cell_share=1.5)
    none = mask_panel(panel, cell_share=0.0, wave_share=0.0)
    assert none.truth.empty and none.hidden_rows.empty
