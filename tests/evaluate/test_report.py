"""The HTML report renders in headless Chromium with its tables and plots (skipped without it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from evalhelpers import synthetic_like, write_synthetic, write_workspace

from panelsynth.evaluate import evaluate_workspace
from panelsynth.evaluate.plots import REAL_COLOUR, SYNTH_COLOUR

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])


def _share_near(img: np.ndarray, colour: str, tol: int = 12) -> float:
    return float((np.abs(img[..., :3].astype(int) - _rgb(colour)).max(axis=-1) <= tol).mean())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_screenshot_shows_tables_and_plots(tmp_path: Path) -> None:
    from PIL import Image

    root = write_workspace(tmp_path / "ws", n=300)
    write_synthetic(root, "m1", 1, synthetic_like(root, 1, 120, seed=5))
    summary = evaluate_workspace(root)
    shot = tmp_path / "report.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--screenshot={shot}",
        "--window-size=1280,4000",
        summary.report.as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape == (4000, 1280, 3)
    non_white = (img.min(axis=-1) < 235).mean()
    assert non_white > 0.03  # not a blank page
    top = img[:2000]
    assert _share_near(top, "#eef1f6", 2) > 0.001  # table header cells of the model x wave tables
    assert (
        _share_near(top, "#dff3e3", 2)
        + _share_near(top, "#fff4d6", 2)
        + _share_near(top, "#fbe0df", 2)
        > 0.0005
    )  # LLM cells coloured against the real-half floor
    # the embedded per-variable plot: real and synthetic bars
    assert _share_near(img, REAL_COLOUR) > 0.006  # headings use it too: ~0.002 without plots
    assert _share_near(img, SYNTH_COLOUR) > 0.006


def test_plain_language_reading_puts_scores_next_to_the_floor() -> None:
    from panelsynth.evaluate.reading import headline, read_summary, verdict

    summary = {
        "density_shape": {"synthetic": 0.71, "_real_holdout": 0.97, "_baseline_marginal": 0.93},
        "c2st_gb": {"synthetic": 0.40, "_real_holdout": 0.95, "_baseline_marginal": 0.80},
        "exact_copy_share": {"synthetic": 0.30},
        "exact_copy_share_half": {"synthetic": 0.25, "_real_holdout": 0.02},
        "example_copy_share": {"synthetic": 0.2},
    }
    lines = read_summary(summary)
    assert lines[0] == (
        "Column Shapes 0.71 vs 0.97 for a real half: far from the sampling floor; worse than "
        "independent per-cluster marginals (0.93)."
    )
    assert any("more copies than chance alone explains" in s for s in lines)
    assert any("copying its prompt" in s for s in lines)
    assert "Weakest: Gradient-boosting C2ST 0.40 vs 0.95" in headline(summary)
    assert verdict(0.96, 0.97) == "at the sampling floor"
    assert verdict(0.93, 0.97) == "close to the sampling floor"
    assert verdict(0.85, 0.97) == "noticeably below the sampling floor"
