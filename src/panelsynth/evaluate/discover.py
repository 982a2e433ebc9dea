"""Which (model dir, wave) pairs an evaluation scores, and the clean-up before it writes."""

from __future__ import annotations

from collections.abc import Sequence

from panelsynth.errors import WorkspaceError
from panelsynth.io import remove_old_temporaries, remove_stale_temporaries_of
from panelsynth.workspace import (
    EVAL_TABLES,
    EXTRA_EVAL_TABLES,
    Workspace,
    check_model_dir,
    check_wave_id,
    wave_sort_key,
)


def plan_evaluations(
    ws: Workspace, model_dirs: Sequence[str] | None, waves: Sequence[str] | None
) -> list[tuple[str, str]]:
    """The (model dir, wave) pairs to evaluate; raises one actionable line when there are none."""
    ws.must_exist()
    available = ws.model_dirs_with_output()
    if model_dirs:
        for md in model_dirs:
            check_model_dir(md)
            if md not in available:
                known = ", ".join(available) or "none"
                raise WorkspaceError(
                    f"model dir {md!r} has no synthetic data "
                    f"(Final_gen_data/{md}/gen_data_wave*.csv) — model dirs with output: {known}"
                )
        dirs = list(dict.fromkeys(model_dirs))
    else:
        dirs = available
    if not dirs:
        raise WorkspaceError(
            f"nothing to evaluate: no Final_gen_data/<model_dir>/gen_data_wave{{W}}.csv in "
            f"{ws.root} — run `panelsynth run` first"
        )
    wanted = [check_wave_id(w) for w in waves] if waves else None
    pairs = []
    for md in dirs:
        for w in ws.generated_waves(md):
            if wanted is None or w in wanted:
                pairs.append((md, w))
    if wanted:
        for w in wanted:
            if not any(p[1] == w for p in pairs):
                gen = sorted(
                    {w2 for md in dirs for w2 in ws.generated_waves(md)}, key=wave_sort_key
                )
                raise WorkspaceError(
                    f"unknown wave {w!r}: no synthetic data for it in "
                    f"{', '.join(dirs)} (generated waves: {', '.join(gen) or 'none'})"
                )
    for _, w in pairs:
        if not ws.original_data(w).exists():
            raise WorkspaceError(
                f"unknown wave {w!r}: {ws.rel(ws.original_data(w))} does not exist — the real "
                f"wave is needed to evaluate its synthetic data"
            )
    return sorted(pairs, key=lambda p: (p[0], wave_sort_key(p[1])))


def clean_outputs(ws: Workspace, pairs: list[tuple[str, str]]) -> None:
    """Before an evaluation writes: refuse symbolic links among its outputs and remove the
    temporary files a killed evaluation left next to them (the tables, the report, each pair's
    metrics JSON and plot, the evaluation metadata) and old ones in the cache."""
    outputs = [ws.report_html(), *(ws.eval_table(n) for n in EVAL_TABLES + EXTRA_EVAL_TABLES)]
    for md, wave in pairs:
        outputs += [ws.eval_metrics_json(md, wave), ws.eval_plot(md, wave), ws.eval_meta(wave)]
    ws.refuse_links(*outputs, ws.cache_dir())
    remove_stale_temporaries_of(outputs)
    remove_old_temporaries(ws.cache_dir())
