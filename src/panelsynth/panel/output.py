"""What a panel run writes besides the per-wave outputs: the long panel, the panel manifest, the
host's draw and the trajectory examples used."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from panelsynth import faultpoint
from panelsynth.export import export_table, wave_labels
from panelsynth.io import atomic_write_text
from panelsynth.llm.base import LLMClient
from panelsynth.llm.keys import scrub_data
from panelsynth.panel._runpath import item_nonresponse, reproducibility, write_csv_atomic
from panelsynth.panel.setup import wave_holdout
from panelsynth.panel.trajectories import Trajectory, format_trajectory, trajectory_log
from panelsynth.workspace import Workspace

if TYPE_CHECKING:
    from panelsynth.panel.setup import PanelSetup

LONG_NAME = "gen_panel.csv"
MANIFEST_NAME = "panel_manifest.json"
DRAW_NAME = "panel_draw.csv"


def panel_files(ws: Workspace, model_dir: str) -> dict[str, Path]:
    """The panel-level files of ``Final_gen_data/<model_dir>/``."""
    out = ws.output_dir(model_dir)
    return {
        "long": out / LONG_NAME,
        "manifest": out / MANIFEST_NAME,
        "draw": out / DRAW_NAME,
    }


def long_panel(
    generated: Mapping[str, pd.DataFrame], waves: Sequence[str], id_column: str
) -> pd.DataFrame:
    """One row per respondent and generated wave: id, wave, then the variables (the union over
    waves, empty where a wave does not ask them); sorted by id, then wave in study order."""
    parts = []
    for w in waves:
        if w not in generated:
            continue
        f = generated[w].copy()
        f.insert(1, "wave", w)
        parts.append(f)
    frame = pd.concat(parts, ignore_index=True, sort=False)
    order = {w: i for i, w in enumerate(waves)}
    frame["_w"] = frame["wave"].map(order)
    frame = frame.sort_values([id_column, "_w"], kind="stable").drop(columns="_w")
    return frame.reset_index(drop=True)


def write_long_panel(
    ws: Workspace, model_dir: str, generated: Mapping[str, pd.DataFrame], waves: Sequence[str]
) -> Path:
    first = next(iter(generated.values()))
    id_column = str(first.columns[0])
    path = panel_files(ws, model_dir)["long"]
    write_csv_atomic(long_panel(generated, waves, id_column), path)
    return path


def write_trajectory_logs(
    ws: Workspace,
    model_dir: str,
    wave: str,
    trajectories: Sequence[Trajectory] | None,
    id_column: str,
    previous_wave: str | None,
) -> None:
    """``Examples/<model_dir>/``: the real trajectories a later wave's prompt showed (replacing
    the per-cluster examples of step 1, which that prompt does not use)."""
    if trajectories is None or previous_wave is None:
        return
    atomic_write_text(
        ws.examples_csv(model_dir, wave),
        trajectory_log(trajectories, id_column).to_csv(index=False),
    )
    lines = [f"Wave {wave} trajectory examples ({len(trajectories)} real respondents)", ""]
    for t in trajectories:
        lines += [
            f"{id_column} {t.respondent}:",
            format_trajectory(t, previous_wave=previous_wave, wave=wave),
            "",
        ]
    atomic_write_text(ws.examples_log(model_dir, wave), "\n".join(lines))


def write_panel_manifest(
    ws: Workspace,
    model_dir: str,
    setup: PanelSetup,
    waves: Mapping[str, dict[str, Any]],
    trajectories: Mapping[str, Sequence[Trajectory]],
    client: LLMClient,
    started: float,
    mode: str,
) -> dict[str, Any]:
    """``panel_manifest.json`` (structure, draw summary, the ``--holdout`` split, seeds,
    trajectories used, per-wave books) and ``panel_draw.csv`` (every drawn respondent's path
    through every study wave)."""
    files = panel_files(ws, model_dir)
    st, draw = setup.structure, setup.draw
    path = draw.path()
    write_csv_atomic(path, files["draw"])
    usd = [w.get("cost_usd") for w in waves.values()]
    data = {
        "status": "complete",
        "model": client.label,
        "model_dir": model_dir,
        "mode": mode,
        "waves": list(st.requested),
        "drawn_waves": list(st.waves),
        "respondents": setup.respondents,
        "seed": setup.seed,
        "seeds": {"draw": [setup.seed, 19], "trajectories": [setup.seed, 23, "wave index"]},
        "outputs": {
            "long": ws.rel(files["long"]),
            "draw": ws.rel(files["draw"]),
            "waves": {w: ws.rel(ws.output_csv(model_dir, w)) for w in waves},
        },
        "draw": draw.summary(),
        "holdout": setup.holdout_json(ws.rel(ws.holdout_ids())),
        "structure": st.to_json(),
        "carry": setup.carry.to_json() if setup.carry else None,
        "trajectories": {
            w: [
                {"respondent": t.respondent, "prev_cluster": t.prev_cluster, "cluster": t.cluster}
                for t in ts
            ]
            for w, ts in trajectories.items()
        },
        "per_wave": dict(waves),
        "tokens": {
            "input": sum(int(w["input_tokens"]) for w in waves.values()),
            "output": sum(int(w["output_tokens"]) for w in waves.values()),
        },
        "cost_usd": None if any(u is None for u in usd) else float(sum(usd)),
        "wall_seconds": round(time.time() - started, 3),
    }
    atomic_write_text(files["manifest"], json.dumps(scrub_data(data), indent=2, default=str) + "\n")
    return data


def write_wave_output(
    ws: Workspace,
    model_dir: str,
    wd: Any,
    rows: pd.DataFrame,
    formats: Sequence[str],
    *,
    calibrated: bool,
) -> dict[str, Any]:
    """A panel wave's CSV (id first) and its ``--format`` exports with the wave's labels; the
    manifest entries they make (in the full mode also the item non-response, real vs synthetic)."""
    out = ws.output_csv(model_dir, wd.wave)
    write_csv_atomic(rows, out)
    faultpoint.reach("panel-after-csv")
    done: dict[str, Any] = {"status": "complete", "output": ws.rel(out)}
    if wd.mode == "full":
        done["item_nonresponse"] = item_nonresponse(wd, rows, calibrated=calibrated)
    if formats:
        labels = wave_labels(
            wd.metadata, rows.columns, wd.cluster_column, wd.prev_cluster_column, wd.clusters
        )
        done["exports"] = [ws.rel(p) for p in export_table(rows, labels, out, formats)]
    return done


def wave_manifest_base(
    run: Any,
    wd: Any,
    s1: Any,
    s2: Any,
    settings: Any,
    prompt: Any,
    max_tokens: int,
    examples_note: str,
) -> dict[str, Any]:
    """The per-wave manifest of a panel wave before its calls (``run``: the panel run)."""
    st = run.setup.structure
    return {
        "wave": wd.wave,
        "model": run.client.label,
        "model_dir": run.model_dir,
        "mode": wd.mode,
        "row_model": "factory",
        "target_variable": s2.description.target_variable,
        "settings": {
            "n_examples": run.n_examples,
            "n_examples_used": prompt.n_examples_used,
            "n_outputs": settings.n_outputs,
            "n_batches": settings.n_batches,
            "seed": settings.seed,
            "temperature": settings.temperature,
            "max_tokens": max_tokens,
            "concurrency": settings.concurrency,
            "max_calls": settings.max_calls,
            "examples": "real",
            "drop_copies": run.drop_copies,
        },
        "warnings": wd.notes + s1.warnings + s2.notes + prompt.notes,
        "reproducibility": reproducibility(run.client, settings.concurrency),
        "real_rows_used": int(len(wd.frame)),
        "holdout": wave_holdout(run.ws, run.setup, wd.wave, run.model_dir),
        "panel": {
            "waves": list(st.requested),
            "respondents": run.setup.respondents,
            "present": settings.rows,
            "examples": examples_note,
            "carry": run.setup.carry.settings if run.setup.carry else {},
            "manifest": run.ws.rel(panel_files(run.ws, run.model_dir)["manifest"]),
        },
    }
