"""The LLM imputation with the real embedded model (SmolLM2-135M): slow, one tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fakes import write_tiny_workspace

from panelsynth.impute._runpath import open_client
from panelsynth.impute.output import imputed_cells_csv, imputed_csv
from panelsynth.impute.run import ImputeOptions, impute_workspace
from panelsynth.workspace import Workspace

pytestmark = pytest.mark.slow


def test_smollm2_fills_only_the_gaps_with_allowed_codes(tmp_path: Path) -> None:
    root = write_tiny_workspace(tmp_path / "ws", n=30, waves=("1",))
    ws = Workspace(root)
    client = open_client("local/smollm2")
    opts = ImputeOptions(waves=["1"], items=["worryflu"], m=2, seed=3, dropouts=False)
    res = impute_workspace(root, client, "smol", opts)
    orig = pd.read_csv(ws.original_data("1"))
    gaps = set(orig.loc[orig["worryflu"] == -99, "respondent_id"].astype(str))
    assert gaps, "the tiny workspace has item non-response in worryflu"
    cells = pd.read_csv(imputed_cells_csv(ws, "smol", "1"), dtype=str)
    assert set(cells["variable"]) == {"worryflu"}
    for k in (1, 2):
        mine = cells[cells["imputation"] == str(k)]
        assert set(mine["respondent_id"]) == gaps
        assert set(mine["value"].astype(int)) <= {1, 2, 3, 4}
        out = pd.read_csv(imputed_csv(ws, "smol", "1", k))
        keep = orig["worryflu"] != -99
        pd.testing.assert_frame_equal(out[keep], orig[keep])
    data = json.loads(res.manifest.read_text())
    assert data["status"] == "complete" and data["reproducibility"]["reproducible"]
