"""Models of step 1 (qualitative cluster descriptions) and step 2 (formatted metadata)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class VariableDescription(BaseModel):
    """Qualitative description of one variable's distribution within one cluster (no numbers)."""

    model_config = ConfigDict(extra="ignore")

    variable: str = Field(..., description="Variable name, exactly as given.")
    skew: str = Field(..., description="Skewness in words, e.g. 'strongly left-skewed'.")
    spread: str = Field(..., description="Spread in words, e.g. 'narrow, concentrated'.")
    shape: str = Field(..., description="Shape in words, e.g. 'unimodal with a peak at the top'.")
    na_frequency: str | None = Field(
        None, description="How often the item is unanswered, in words (full mode only)."
    )


class ClusterDescription(BaseModel):
    """Step 1 output for one cluster: one description per variable."""

    model_config = ConfigDict(extra="ignore")

    cluster: int = Field(..., description="Cluster label.")
    variables: list[VariableDescription] = Field(..., description="One entry per variable.")


class ClusterDescriptions(BaseModel):
    """Step 1 output for every cluster of a wave (one LLM call may describe both)."""

    model_config = ConfigDict(extra="ignore")

    clusters: list[ClusterDescription]


class FeatureDescription(BaseModel):
    """One feature of the formatted metadata (UniPredict style)."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(..., description="Variable name, exactly as given.")
    meaning: str = Field(..., description="What the variable measures, one sentence.")
    values: str = Field(..., description="Its possible values and what they mean.")


class WaveDescription(BaseModel):
    """Step 2 output: the wave's formatted metadata."""

    model_config = ConfigDict(extra="ignore")

    description: str = Field(..., description="One-sentence description of the dataset.")
    target_variable: str = Field(
        ..., description="The wave's target variable (one of the features)."
    )
    features: list[FeatureDescription] = Field(
        ..., description="Every feature with meaning and values."
    )
