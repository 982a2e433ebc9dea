"""The vectorised QualityReport and LogisticDetection equal sdmetrics' own (the reference)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from evalhelpers import eval_columns, harmonised_wave

from panelsynth.evaluate.columns import EvalColumn, EvalColumns
from panelsynth.evaluate.metrics import numpy_global_seed
from panelsynth.evaluate.parity import logistic_detection, quality_report
from panelsynth.evaluate.sdm import _text

TOL = 1e-12  # floating-point summation order only (sdmetrics' own 1e-6 terms are visible)
COLS = eval_columns()


def _wave(n: int, seed: int, na_rate: float = 0.1) -> pd.DataFrame:
    return harmonised_wave(n, seed, na_rate)


def _mixed(n: int, seed: int) -> tuple[pd.DataFrame, EvalColumns]:
    """Text codes, a second numerical column, a constant column, NaN everywhere."""
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, 2, n)
    df = pd.DataFrame(
        {
            "colour": np.where(cls == 1, "red", rng.choice(["blue", "green", "red"], n)),
            "likert": np.clip(cls * 2 + rng.integers(1, 4, n), 1, 5).astype(float),
            "income": rng.lognormal(10 + cls, 0.5, n),
            "score": rng.normal(cls * 3, 1, n),
            "const": np.ones(n),
            "flag": rng.integers(0, 2, n).astype(float),
        }
    )
    for c in ("colour", "likert", "income", "flag"):
        df.loc[rng.random(n) < 0.08, c] = np.nan
    cols = EvalColumns(
        (
            EvalColumn("colour", "categorical", "a nominal", "variable"),
            EvalColumn("likert", "categorical", "an ordinal", "variable"),
            EvalColumn("income", "numerical", "a continuous", "variable"),
            EvalColumn("score", "numerical", "a continuous", "variable"),
            EvalColumn("const", "categorical", "a binary", "variable"),
            EvalColumn("flag", "categorical", "a binary", "variable"),
        )
    )
    return df, cols


def _sdmetrics_report(real: pd.DataFrame, synth: pd.DataFrame, cols: EvalColumns):
    from sdmetrics.reports.single_table import QualityReport

    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(
            real[cols.names].copy(),
            synth[cols.names].copy(),
            cols.sdmetrics_metadata(),
            verbose=False,
        )
    return report


def _cases() -> dict[str, tuple[pd.DataFrame, pd.DataFrame, EvalColumns]]:
    real, other = _wave(900, 0), _wave(300, 1, na_rate=0.3)
    rng = np.random.default_rng(3)
    shuffled = other.apply(lambda s: rng.permutation(s.to_numpy()))
    synth_nan = other.copy()
    synth_nan["vacc_safe"] = np.nan  # a column all-NaN in the synthetic data
    synth_nan["age"] = np.nan
    new_value = other.copy()
    new_value.loc[:5, "vacc_imp"] = 9.0  # a code only the synthetic data has
    mreal, mcols = _mixed(1200, 4)
    msynth, _ = _mixed(400, 5)
    msynth.loc[:3, "colour"] = "purple"
    msynth["const"] = 2.0
    return {
        "demo-like": (real, other, COLS),
        "shuffled (NaN pairs below threshold)": (real, shuffled, COLS),
        "synthetic column all NaN": (real, synth_nan, COLS),
        "synthetic-only code": (real, new_value, COLS),
        "mixed text/numerical/constant": (mreal, msynth, mcols),
        "tiny": (real.head(7), other.head(4), COLS),
    }


CASES = _cases()


@pytest.mark.parametrize("case", list(CASES))
def test_quality_report_equals_sdmetrics(case: str) -> None:
    real, synth, cols = CASES[case]
    ours = quality_report(real[cols.names], synth[cols.names], cols)
    ref = _sdmetrics_report(real, synth, cols)
    props = ref.get_properties().set_index("Property")["Score"]
    np.testing.assert_allclose(ours.column_shapes, props["Column Shapes"], atol=TOL, rtol=0)
    np.testing.assert_allclose(
        ours.column_pair_trends, props["Column Pair Trends"], atol=TOL, rtol=0
    )
    np.testing.assert_allclose(ours.overall, ref.get_score(), atol=TOL, rtol=0)
    _same_frame(ours.shape_details, ref.get_details(property_name="Column Shapes"))
    _same_frame(ours.pair_details, ref.get_details(property_name="Column Pair Trends"))


def test_cases_cover_thresholded_nan_pairs_and_errors() -> None:
    """The datasets above do exercise the edge cases the parity test is about."""
    real, synth, cols = CASES["shuffled (NaN pairs below threshold)"]
    pairs = quality_report(real, synth, cols).pair_details
    assert (~pairs["Meets Threshold?"].astype(bool)).sum() >= 3
    real, synth, cols = CASES["synthetic column all NaN"]
    assert "Error" in quality_report(real, synth, cols).shape_details.columns
    real, synth, cols = CASES["mixed text/numerical/constant"]
    pairs = quality_report(real, synth, cols).pair_details
    assert pairs["Metric"].eq("CorrelationSimilarity").any()


def _same_frame(ours: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(ours.columns) == list(ref.columns)
    assert len(ours) == len(ref)
    for col in ours.columns:
        a, b = ours[col], ref[col]
        if pd.api.types.is_float_dtype(b):
            np.testing.assert_allclose(
                a.to_numpy(float), b.to_numpy(float), atol=TOL, rtol=0, err_msg=col
            )
        else:
            assert (
                a.astype(object).where(a.notna(), None).tolist()
                == b.astype(object).where(b.notna(), None).tolist()
            ), col


@pytest.mark.parametrize("case", ["demo-like", "shuffled (NaN pairs below threshold)", "tiny"])
def test_logistic_detection_equals_sdmetrics(case: str) -> None:
    from sdmetrics.single_table import LogisticDetection

    real, synth, cols = CASES[case]
    if case == "tiny":
        real, synth = CASES["demo-like"][0], CASES["demo-like"][1].head(60)
    meta = {
        "columns": {c.name: {"sdtype": "categorical" if c.discrete else "numerical"} for c in cols}
    }
    r, s = real[cols.names].copy(), synth[cols.names].copy()
    for c in cols:
        if c.discrete:
            r[c.name], s[c.name] = _text(r[c.name]), _text(s[c.name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with numpy_global_seed(7):
            ref = LogisticDetection.compute(r, s, meta)
        with numpy_global_seed(7):
            ours = logistic_detection(r, s)
    np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)


def test_logistic_detection_rejects_a_category_the_real_data_lacks() -> None:
    real, synth, cols = CASES["synthetic-only code"]
    r, s = real[cols.names].copy(), synth[cols.names].copy()
    r["vacc_imp"], s["vacc_imp"] = _text(r["vacc_imp"]), _text(s["vacc_imp"])
    with pytest.raises(ValueError):
        logistic_detection(r, s)
