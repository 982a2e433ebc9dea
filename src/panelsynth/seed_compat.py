"""Kept for workspaces whose ``run_data_gen_pipeline.py`` was written before the seed script's
module moved to :mod:`panelsynth.cli.seed` (the script imports ``main`` from here)."""

from __future__ import annotations

from panelsynth.cli.seed import main

__all__ = ["main"]
