"""The metric protocol: :class:`Metric` (named, bounded in [0, 1], higher is better, with
``compute(real, synthetic) -> MetricResult``), :class:`MetricResult` and its JSON form,
:func:`safe_compute` (a metric that cannot be computed returns NaN with an ``error`` string, never
an exception that aborts an evaluation), and the thread and seed guards the models run under.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from panelsynth.evaluate.columns import EvalColumns

log = logging.getLogger("panelsynth")


@dataclass
class MetricResult:
    """Outcome of one metric: a score in [0, 1] (NaN with ``error`` when incomputable)."""

    name: str
    score: float
    details: pd.DataFrame | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_json(self, with_details: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.name, "score": _num(self.score)}
        if self.error:
            out["error"] = self.error
        out.update(self.extra)
        if with_details and self.details is not None and len(self.details):
            out["details"] = frame_records(self.details)
        return out


def _num(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, np.integer | int) and not isinstance(x, bool):
        return int(x)
    if isinstance(x, np.floating | float):
        return None if not math.isfinite(float(x)) else round(float(x), 6)
    return x


def frame_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame -> JSON-ready records (NaN -> None, numpy scalars -> Python)."""
    recs = []
    for row in df.to_dict(orient="records"):
        recs.append({str(k): _json_value(v) for k, v in row.items()})
    return recs


def _json_value(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, np.bool_ | bool):
        return bool(v)
    if isinstance(v, np.integer | np.floating | int | float):
        return _num(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    return v if isinstance(v, str | list | dict) else str(v)


class Metric:
    """Base of the metric objects: named, bounded, higher is better."""

    name: ClassVar[str] = "metric"
    description: ClassVar[str] = ""
    min_value: ClassVar[float] = 0.0
    max_value: ClassVar[float] = 1.0
    higher_is_better: ClassVar[bool] = True

    def __init__(self, columns: EvalColumns) -> None:
        self.columns = columns

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
        raise NotImplementedError

    def result(self, score: float, **kw: Any) -> MetricResult:
        if score is not None and math.isfinite(score):
            score = float(min(self.max_value, max(self.min_value, score)))
        return MetricResult(self.name, float(score) if score is not None else math.nan, **kw)

    def nan(self, error: str, **kw: Any) -> MetricResult:
        return MetricResult(self.name, math.nan, error=error, **kw)


def safe_compute(metric: Metric, real: pd.DataFrame, synthetic: pd.DataFrame) -> MetricResult:
    """Run a metric; any exception becomes NaN plus an ``error`` string."""
    try:
        return metric.compute(real, synthetic)
    except Exception as err:  # a metric failure must not abort the evaluation
        log.debug("metric %s failed", metric.name, exc_info=True)
        return MetricResult(metric.name, math.nan, error=f"{type(err).__name__}: {err}")


_SINGLE_THREAD_DEPTH = 0


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run scikit-learn/BLAS with one thread.

    The models here are small and many; on a busy 2-core machine OpenMP spin-waiting made
    gradient boosting 25x slower than single-threaded. scikit-learn's OpenMP runtime is loaded
    first so that the limit reaches it.
    """
    global _SINGLE_THREAD_DEPTH
    if _SINGLE_THREAD_DEPTH:  # already limited: inspecting the loaded libraries again costs ~50 ms
        yield
        return
    import sklearn.ensemble  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        _SINGLE_THREAD_DEPTH += 1
        try:
            yield
        finally:
            _SINGLE_THREAD_DEPTH -= 1


@contextlib.contextmanager
def numpy_global_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global generator (sklearn uses it without random_state), then restore it."""
    state = np.random.get_state()
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        np.random.set_state(state)
