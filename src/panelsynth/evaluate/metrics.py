"""The metric catalogue: every metric object, importable from one place.

Each metric is small, named, bounded in [0, 1], oriented so that higher is better, and has
``compute(real, synthetic) -> MetricResult`` (the protocol: :mod:`.base`). The families live in
their own modules: fidelity (:mod:`.fidelity`), missing answers and variance collapse
(:mod:`.collapse`), detection and utility (:mod:`.utility`), diversity and privacy
(:mod:`.privacy`, membership inference in :mod:`.membership`) and sdmetrics' own figures
(:mod:`.sdm`).
"""

from __future__ import annotations

from panelsynth.evaluate.base import (
    Metric,
    MetricResult,
    frame_records,
    numpy_global_seed,
    safe_compute,
    single_thread,
)
from panelsynth.evaluate.collapse import NAShareSimilarity, VarianceCollapse
from panelsynth.evaluate.encoding import labels
from panelsynth.evaluate.fidelity import (
    SDMETRICS_ASSOCIATION_THRESHOLD,
    SDMETRICS_CORRELATION_THRESHOLD,
    AssociationSimilarity,
    ClusterShares,
    ColumnShapes,
    PairTrends,
    TransitionSimilarity,
    column_shape,
    pair_statistics,
)
from panelsynth.evaluate.privacy import DCR_MAX_ROWS, DCRRatio, NewRowShare, UniqueRowShare
from panelsynth.evaluate.utility import (
    C2ST_MAX_ROWS,
    TSTR_MAX_ROWS,
    GradientBoostingC2ST,
    TrainSyntheticTestReal,
)

__all__ = [
    "C2ST_MAX_ROWS",
    "DCR_MAX_ROWS",
    "SDMETRICS_ASSOCIATION_THRESHOLD",
    "SDMETRICS_CORRELATION_THRESHOLD",
    "TSTR_MAX_ROWS",
    "AssociationSimilarity",
    "ClusterShares",
    "ColumnShapes",
    "DCRRatio",
    "GradientBoostingC2ST",
    "Metric",
    "MetricResult",
    "NAShareSimilarity",
    "NewRowShare",
    "PairTrends",
    "TrainSyntheticTestReal",
    "TransitionSimilarity",
    "UniqueRowShare",
    "VarianceCollapse",
    "column_shape",
    "frame_records",
    "labels",
    "numpy_global_seed",
    "pair_statistics",
    "safe_compute",
    "single_thread",
]
