"""A prepared workspace holding a seeded panel (``panelgen.make_panel``), for the run tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from panelgen import ITEMS, make_panel

from panelsynth.scaffold import init_workspace


def write_panel_workspace(root: Path, *, n: int = 40, waves: int = 3, **panel: Any) -> Path:
    """Waves "1".."waves" of a panel of ``n`` people: four ordinal items (1-5), cluster,
    prev_cluster (empty when absent from the previous wave), ``respondent_id``."""
    ws, _ = init_workspace(root)
    frames = make_panel(n, waves, **panel)
    meta = {
        q: {"question": f"Question {q}?", "responses": {str(i): f"level {i}" for i in range(1, 6)}}
        for q in ITEMS
    }
    types = {q: "an ordinal" for q in ITEMS}
    for w, frame in frames.items():
        frame.to_csv(ws.original_data(w), index=False)
        ws.metadata_json_for_write(w).write_text(json.dumps(meta, indent=1))
        ws.var_types_for_write(w).write_text(json.dumps(types, indent=1))
        ws.wave_context(w).write_text(f"Wave {w} of an attitude panel. Target variable: q1.")
    return root
