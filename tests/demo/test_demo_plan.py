"""What ``panelsynth demo`` generates (issue 19, item 6): its per-wave runs and its panel."""

from __future__ import annotations

from panelsynth.demo.pipeline import DEMO_PANEL, DEMO_PLAN


def test_the_demo_generates_a_small_dense_panel_in_its_own_model_dir() -> None:
    assert DEMO_PANEL.waves == ("1", "3", "5")
    assert 50 <= DEMO_PANEL.respondents <= 80 and DEMO_PANEL.mode == "dense"
    assert DEMO_PANEL.model_dir not in {p.model_dir for p in DEMO_PLAN}


def test_the_panels_first_waves_reuse_the_per_wave_runs_steps_1_2() -> None:
    """Steps 1-2 depend on the wave and the mode only: the per-wave dense runs of waves 1 and 3
    fill the step cache the panel's waves 1 and 3 read (wave 5's are the panel's own calls)."""
    dense = {p.wave for p in DEMO_PLAN if p.mode == "dense" and p.n_examples is None}
    assert set(DEMO_PANEL.waves[:2]) <= dense
