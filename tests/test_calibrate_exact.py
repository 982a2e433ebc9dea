"""Schema-fixed calibrated profiles: exact anchor values drawn from the real values in the band.

A schema-guided decoder given a band as a numeric range writes its floor nearly every time, so
profiles for such clients fix an exact value (one real value of the cluster inside the band).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from test_calibrate import SPECS, _real

from panelsynth.calibrate import Band, ProfileDesign, setup_calibration
from panelsynth.calibrate.prompt import profiled_batch_model
from panelsynth.generate import GenerationSettings
from panelsynth.pydantic_models.rows import build_row_model


def _skewed(n: int = 600) -> pd.DataFrame:
    """Ages piled towards the top of their bands (35-44: mostly 42-44), never on a floor
    above 18 but for a few respondents."""
    real = _real(n)
    rng = np.random.default_rng(3)
    tops = np.array([24, 34, 44, 54, 64, 74, 90])
    lows = np.array([18, 25, 35, 45, 55, 65, 75])
    band = rng.integers(0, 7, n)
    top = tops[band]
    age = np.where(rng.random(n) < 0.8, top - rng.integers(0, 3, n), lows[band] + 1)
    age[:5] = lows[band[:5]]
    real["age"] = age
    return real


def _design(real: pd.DataFrame, exact: bool, seed: int = 5) -> ProfileDesign:
    return ProfileDesign.from_frame(
        real, SPECS, ["age", "sex"], cluster_column="cluster", seed=seed, exact_values=exact
    )


def test_schema_fixed_profiles_spread_within_bands_like_the_real_values() -> None:
    real = _skewed()
    banded, exact = _design(real, False).draw(2000), _design(real, True).draw(2000)
    floors = {b.low for b in (dict(p.anchors)["age"] for p in banded)}
    for b, e in zip(banded, exact, strict=True):
        # same cluster, same donor (sex, band); the band becomes one value inside it
        band, value = dict(b.anchors)["age"], dict(e.anchors)["age"]
        assert isinstance(band, Band) and isinstance(value, int)
        assert band.contains(value) and e.cluster == b.cluster
        assert dict(e.anchors)["sex"] == dict(b.anchors)["sex"]
        # a real value of that cluster
        assert value in set(real.loc[real["cluster"] == e.cluster, "age"])
    ages = pd.Series([dict(p.anchors)["age"] for p in exact])
    real_floor = real["age"].isin(floors).mean()
    assert (ages.isin(floors)).mean() < real_floor + 0.03  # not the floor comb (1.0)
    # within a band, the drawn values follow the cluster's real values there
    c1 = [dict(p.anchors)["age"] for p in exact if p.cluster == 1]
    got = pd.Series([a for a in c1 if 35 <= a <= 44]).value_counts(normalize=True)
    want = real.loc[(real["cluster"] == 1) & real["age"].between(35, 44), "age"]
    want = want.value_counts(normalize=True)
    assert set(got.index) <= set(want.index)
    assert float((got.reindex(want.index, fill_value=0) - want).abs().sum()) < 0.25


def test_exact_values_are_seeded_and_their_own_stream() -> None:
    real = _skewed()
    a, b, c = _design(real, True), _design(real, True), _design(real, True, seed=6)
    assert a.draw(50) == b.draw(50) and a.extra(70) == b.extra(70)
    assert a.draw(50) != c.draw(50)
    assert isinstance(dict(a.extra(70).anchors)["age"], int)
    # the banded design (hosted models) draws the very same clusters and donors as before
    plain = _design(real, False).draw(50)
    assert [p.cluster for p in plain] == [p.cluster for p in a.draw(50)]
    assert all(isinstance(dict(p.anchors)["age"], Band) for p in plain)


def test_a_non_integer_anchor_gets_a_real_value_inside_its_quantile_band() -> None:
    from panelsynth.pydantic_models.rows import RowSpec

    real = _real(300)
    real["income"] = np.round(np.random.default_rng(1).gamma(2.0, 1000.0, len(real)), 2)
    specs = [*SPECS, RowSpec("income", "a continuous", low=0, high=None, integer=False)]
    d = ProfileDesign.from_frame(
        real, specs, ["income"], cluster_column="cluster", seed=2, exact_values=True
    )
    for p in d.draw(100):
        v = dict(p.anchors)["income"]
        assert not isinstance(v, Band)
        assert v in set(real.loc[real["cluster"] == p.cluster, "income"])


def test_the_schema_fixes_the_exact_value() -> None:
    real = _skewed()
    profiles = _design(real, True).draw(3)
    model = profiled_batch_model(build_row_model(SPECS), profiles)
    schema = model.model_json_schema()
    for k, p in enumerate(profiles):
        props = schema["properties"][f"respondent_{k + 1}"]["properties"]
        assert props["age"] == {"const": dict(p.anchors)["age"]}
        assert p.keeps({"cluster": p.cluster, **dict(p.anchors)})
        assert not p.keeps({"cluster": p.cluster, **{**dict(p.anchors), "age": 200}})


def _setup(real: pd.DataFrame, in_schema: bool):
    settings = GenerationSettings(n_outputs=10, n_batches=4, seed=42)
    return setup_calibration(
        real,
        SPECS,
        settings,
        oversample=2.0,
        anchors=["age", "sex"],
        demographics=["age", "sex"],
        cluster_column="cluster",
        profiles_in_schema=in_schema,
    )


def test_checkpoint_fingerprint_changes_with_the_exact_values() -> None:
    real = _skewed()
    moved = real.copy()
    # every age moved inside its band: the bands (and so the hosted profiles) stay the same
    ages = moved["age"].to_numpy()
    moved["age"] = np.where(np.isin(ages, [24, 34, 44, 54, 64, 74]), ages - 1, ages)
    assert _setup(real, False).profiles_fingerprint() == _setup(moved, False).profiles_fingerprint()
    exact, exact_moved = _setup(real, True), _setup(moved, True)
    assert exact.profiles_fingerprint() != exact_moved.profiles_fingerprint()
    assert exact.profiles_fingerprint() != _setup(real, False).profiles_fingerprint()
    assert exact.profiles_fingerprint() == _setup(real, True).profiles_fingerprint()
    assert exact.design.values is not None and _setup(real, False).design.values is None
