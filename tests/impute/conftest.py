"""Fixtures of the imputation tests: a small demo workspace and a hand-made panel."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from imputehelpers import N_SMALL

from panelsynth.demo import build_demo
from panelsynth.workspace import Workspace


@pytest.fixture(scope="session")
def small_demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo workspace of 150 respondents (treat as read-only; copy it to change it)."""
    return build_demo(
        tmp_path_factory.mktemp("impdemo") / "ws", n_respondents=N_SMALL
    ).workspace.root


@pytest.fixture
def demo_copy(small_demo_root: Path, tmp_path: Path) -> Workspace:
    """A private copy of the small demo workspace."""
    dst = tmp_path / "ws"
    shutil.copytree(small_demo_root, dst)
    return Workspace(dst)
