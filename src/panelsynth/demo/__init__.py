"""Demo workspace: a deterministic simulator of a FluPaths-like panel (SPEC §7).

* :func:`simulate_panel` — pure, vectorised simulation (numpy/pandas) with the exact
  Bayes-optimal class assignment; scales to 100,000 respondents x 30 items x 14 waves. Answers
  persist within a person (:class:`Persistence`: person effect + AR(1) per item).
* :func:`build_demo` — writes the simulated panel as a complete workspace (SPEC §2).
"""

from __future__ import annotations

from panelsynth.demo.build import DemoResult, build_demo
from panelsynth.demo.persistence import Persistence
from panelsynth.demo.simulator import (
    ItemSpec,
    SimulatedPanel,
    SimulationParams,
    adjusted_rand_index,
    simulate_panel,
)

__all__ = [
    "DemoResult",
    "ItemSpec",
    "Persistence",
    "SimulatedPanel",
    "SimulationParams",
    "adjusted_rand_index",
    "build_demo",
    "simulate_panel",
]
