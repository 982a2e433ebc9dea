"""Synthetic panels (issue 19): the structure the host draws and the trajectory examples.

- :mod:`panelsynth.panel.structure` — transition, retention and re-entry estimated from the real
  panel (:func:`estimate_structure`), typed errors of a ``--panel`` request;
- :mod:`panelsynth.panel.draw` — N synthetic respondents' cluster paths and presence
  (:func:`draw_panel`);
- :mod:`panelsynth.panel.trajectories` — real trajectory few-shot examples and their prompt text.
"""

from __future__ import annotations

from panelsynth.panel.draw import PanelDraw, draw_panel, synthetic_ids
from panelsynth.panel.structure import (
    PanelDataError,
    PanelRequestError,
    PanelStructure,
    estimate_structure,
    ordered_request,
    real_states,
    state_matrix,
)
from panelsynth.panel.trajectories import (
    Trajectory,
    format_requested_row,
    format_trajectory,
    sample_trajectories,
    trajectory_log,
    transition_label,
)

__all__ = [
    "PanelDataError",
    "PanelDraw",
    "PanelRequestError",
    "PanelStructure",
    "Trajectory",
    "draw_panel",
    "estimate_structure",
    "format_requested_row",
    "format_trajectory",
    "ordered_request",
    "real_states",
    "sample_trajectories",
    "state_matrix",
    "synthetic_ids",
    "trajectory_log",
    "transition_label",
]
