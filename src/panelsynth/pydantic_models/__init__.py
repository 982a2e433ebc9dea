"""Structured-output models (SPEC §4.4).

Built-in models live here: :class:`ClusterDescription` (step 1), :class:`WaveDescription` (step 2)
and the row-model factory (step 3). A workspace may add its own ``pydantic_models/`` package with
per-wave row models (e.g. ``Wave1Data``) that override the factory for that wave.
"""

from panelsynth.pydantic_models.descriptions import (
    ClusterDescription,
    ClusterDescriptions,
    FeatureDescription,
    VariableDescription,
    WaveDescription,
)
from panelsynth.pydantic_models.rows import (
    RowSpec,
    batch_model,
    build_row_model,
    load_user_row_model,
    row_model_for_wave,
)

__all__ = [
    "ClusterDescription",
    "ClusterDescriptions",
    "FeatureDescription",
    "RowSpec",
    "VariableDescription",
    "WaveDescription",
    "batch_model",
    "build_row_model",
    "load_user_row_model",
    "row_model_for_wave",
]
