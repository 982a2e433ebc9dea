"""``panelsynth run --panel --dry-run``: what the panel would cost, wave by wave, calling no model.

Each wave is projected from the prompt the run would send: steps 1-2 (cached or not, as a per-wave
dry run), the panel prefix (real rows per cluster in the first generated wave, real trajectories
in the later ones) fitted into the context, and one call per ``rows per call`` present
respondents, each request with the respondent's id, cluster path and previous answers. The
previous answers do not exist yet: each is counted at the widest real answers of its wave (an
upper estimate). ``--resume`` counts only the calls not yet in the checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from panelsynth.config import PanelsynthConfig
from panelsynth.panel import _runpath as rp
from panelsynth.panel.anchors import carry_for_run
from panelsynth.panel.board import AnswerBoard
from panelsynth.panel.run import _PanelRun
from panelsynth.panel.setup import PanelSetup, check_panel_options, panel_config, panel_draw
from panelsynth.workspace import Workspace


def plan_panel(
    ws: Workspace,
    config: PanelsynthConfig,
    waves: Sequence[str],
    model: str,
    model_dir: str,
    options: rp.RunOptions,
    *,
    respondents: int | None,
) -> tuple[PanelSetup, list[Any]]:
    """The host's draw and a :class:`panelsynth.run.dryrun.WavePlan` per requested wave.

    Raises:
        PanelsynthError: what the run would refuse first (the request, the data, the options).
    """
    check_panel_options(options, config)
    client = rp.planning_client(model)
    mode, n_examples, settings = rp.resolve_settings(config, options, client)
    config = panel_config(config, options, settings.seed)
    setup = panel_draw(ws, config, waves, respondents, settings.seed)
    proj = rp.Projector(client)
    run = _PanelRun(ws, config, proj, model_dir, options, mode, n_examples, settings, setup)
    run.cache = rp.ReadOnlyCache(ws.cache_dir(), enabled=options.use_cache)
    setup.carry = carry_for_run(
        setup, run.load, config, options, settings.seed, schema_fixed=client.is_local
    )
    requested = list(setup.structure.requested)
    plans = []
    for j, wave in enumerate(requested):
        wd = run.load(wave)
        prev = requested[j - 1] if j else None
        run.prev_wave[wave] = prev
        first = len(proj.requests)
        s1 = rp.describe_wave(
            proj, run.plain(wd), n_examples=n_examples, seed=settings.seed,
            cache=run.cache,
        )  # fmt: skip
        step1 = proj.requests[first:]
        s2 = rp.format_metadata(
            proj, run.plain(wd), cache=run.cache,
            preferred_target=config.study.outcome, seed=settings.seed,
        )  # fmt: skip
        step2 = proj.requests[first + len(step1) :]
        rows = run._requests(wd, wave)
        prompt, max_tokens, examples_note = run._prompt(wd, s1, s2, rows, prev)
        board = AnswerBoard()
        for r in rows:
            if r.previous_wave is not None:
                board.publish(r.previous_wave, r.respondent, run._widest(r.previous_wave))
        prompt.board = board
        n_out = prompt.n_outputs
        n_batches = max(1, math.ceil(len(rows) / n_out))
        done = 0
        if options.resume:
            done = rp.finished_batches(rp.Checkpoint(ws.checkpoint(model_dir, wave)), n_batches)
        per_call = [
            rp.count_messages(client, prompt.for_batch(b, n_out)) for b in range(done, n_batches)
        ]
        columns = [run.id_column, *wd.columns]
        sample = s1.examples.assign(**{run.id_column: rows[0].respondent if rows else "S00001"})
        out_per_call = rp.rows_output(client, sample, columns, n_out)
        st1, st2 = rp.stage_plan(client, "step1", step1), rp.stage_plan(client, "step2", step2)
        exact = st1.cached and st2.cached and not client.is_local and prev is None
        st3 = rp.StagePlan(
            "step3",
            len(per_call),
            False,
            sum(per_call),
            out_per_call * len(per_call),
            "exact" if exact else "estimate",
            peak_tokens=max(per_call, default=0) + max_tokens,
            context_window=getattr(client, "context_window", None),
        )
        notes = [f"{len(rows)} respondents, {n_out} per call; prefix: {examples_note}"]
        if prev is not None:
            notes.append(
                "each request's previous answers are counted at the widest real answers of "
                "their wave (an upper estimate)"
            )
        if done:
            notes.append(f"--resume: {done} of {n_batches} calls are already done")
        if not (st1.cached and st2.cached):
            notes.append(
                "steps 1-2 are not cached: the prefix uses placeholder descriptions and "
                "metadata of typical length"
            )
        stages = [st1, st2, st3]
        prefix_tokens = rp.count_messages(client, prompt.prefix)
        cost, basis, price, saving, cache_note = rp.project_cost(
            config, client, stages, prefix_tokens, settings.concurrency
        )
        plans.append(
            rp.WavePlan(
                wave=wave, model=client.label, model_dir=model_dir, mode=mode, stages=stages,
                max_calls=replace(settings, n_batches=n_batches).max_calls, cost_usd=cost,
                cost_basis=basis,
                notes=notes + wd.notes, price=price, cache_saving_usd=saving,
                cache_note=cache_note,
            )
        )  # fmt: skip
    return setup, plans
