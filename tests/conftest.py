"""Shared fixtures: small workspaces built in tmp_path, and a fake LLM client."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import fake_answer, write_tiny_workspace

from panelsynth.llm.base import FakeClient


@pytest.fixture
def tiny_workspace(tmp_path: Path) -> Path:
    """A small valid workspace with waves 1 and 2."""
    return write_tiny_workspace(tmp_path / "ws")


@pytest.fixture
def fake_llm() -> FakeClient:
    """A fake client that answers every step with valid, schema-built responses."""
    return FakeClient(default=fake_answer, label="fake/fake")
