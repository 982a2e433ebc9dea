"""Fixtures of the demo tests: one demo workspace built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from panelsynth.demo import DemoResult, SimulatedPanel, build_demo, simulate_panel


@pytest.fixture(scope="session")
def demo_result(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """The demo workspace built with the default seed (2024) and 2,000 respondents."""
    return build_demo(tmp_path_factory.mktemp("demo") / "ws", seed=2024)


@pytest.fixture(scope="session")
def demo_workspace(demo_result: DemoResult) -> Path:
    """Root folder of the session's demo workspace (treat as read-only)."""
    return demo_result.workspace.root


@pytest.fixture(scope="session")
def demo_panel() -> SimulatedPanel:
    """The default simulated panel in memory (seed 2024, 2,000 respondents, 7 waves)."""
    return simulate_panel(2000, seed=2024)
