"""``docs/quickstart.ipynb`` executes from top to bottom without error (library API, demo panel,
a tiny wave with the embedded local model, evaluation, inline plots, metrics in pandas)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "quickstart.ipynb"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def test_quickstart_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANELSYNTH_QUICKSTART_DIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "the evaluation plots are shown inline"
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert tables, "the metrics table is shown"
    assert (tmp_path / "demo" / "Final_gen_data" / "smollm2" / "gen_data_wave1.sav").exists()
    assert (tmp_path / "demo" / "Evaluation" / "smollm2" / "wave1_metrics.json").exists()
