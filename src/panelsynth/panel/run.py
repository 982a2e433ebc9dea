"""``panelsynth run --panel``: a synthetic panel through the requested waves (issue 19).

The host draws every synthetic respondent's cluster path and presence from the real panel
(:func:`panel_draw`). Each requested wave, in study order, goes through steps 1-2 (cached) and
gets its prompt; then every wave's step-3 calls run together in one event loop: a call writes a
slice of a wave's present respondents (:class:`~panelsynth.panel.strategy.PanelPrompt`), after
the first generated wave conditioned on their answers in the last generated wave they answered,
and starts as soon as those rows are saved (:class:`~panelsynth.panel.board.AnswerBoard`). Every
call is checkpointed per wave; ``--resume`` takes over every finished call of every wave.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.config import PanelsynthConfig, load_config
from panelsynth.data import WaveData, id_text
from panelsynth.errors import GenerationExhaustedError, PanelsynthError
from panelsynth.io import atomic_write_text
from panelsynth.llm.base import LLMCallError, LLMClient
from panelsynth.llm.keys import scrub, scrub_data
from panelsynth.panel import _runpath as rp
from panelsynth.panel import setup as holdout_setup
from panelsynth.panel.anchors import carry_for_run
from panelsynth.panel.board import AnswerBoard
from panelsynth.panel.checkpoints import (
    PanelCheckpoint,
    panel_header,
    refuse_existing,
    resumable,
)
from panelsynth.panel.output import (
    panel_files,
    wave_manifest_base,
    write_long_panel,
    write_panel_manifest,
    write_trajectory_logs,
    write_wave_output,
)
from panelsynth.panel.setup import PanelSetup, check_panel_options, panel_draw
from panelsynth.panel.strategy import (
    PanelPrompt,
    PanelSettings,
    Requested,
    cluster_examples,
    panel_prefix,
    panel_row_model,
)
from panelsynth.panel.trajectories import (
    Trajectory,
    cell_text,
    format_trajectory,
    sample_trajectories,
)
from panelsynth.prepare_switch import finish_interrupted_prepare
from panelsynth.workspace import Workspace

log = logging.getLogger("panelsynth")

#: Real trajectories per transition type in a later wave's prompt (fewer when it must fit).
TRAJECTORIES_PER_TYPE = 2
#: Offsets of the panel's random streams from the run seed (draw, trajectory examples).
_TRAJECTORY_STREAM = 23


@dataclass
class PanelRunResult:
    """What ``run_panel`` wrote: per-wave CSVs, the long panel and the panel manifest."""

    model_dir: str
    waves: list[str]
    outputs: dict[str, Path]
    long_output: Path
    manifest: Path
    rows: dict[str, int]
    manifest_data: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Wave:
    """One wave of a panel run, set up: its real data, steps 1-2, prompt and loop of calls."""

    wd: WaveData
    s1: rp.Step1Result
    s2: rp.Step2Result
    prompt: PanelPrompt
    base: dict[str, Any]
    gen: rp.Generation
    started: float
    examples_note: str


def run_panel(
    workspace: str | Path,
    waves: Sequence[str],
    client: LLMClient,
    model_dir: str,
    options: rp.RunOptions | None = None,
    *,
    respondents: int | None = None,
    config: PanelsynthConfig | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> PanelRunResult:
    """Generate a synthetic panel: the drawn respondents through every requested wave.

    Raises:
        PanelsynthError: any user-fixable problem (request, data, lock, exhausted budget).
    """
    opts = options or rp.RunOptions()
    ws = Workspace(workspace)
    ws.must_exist()
    finish_interrupted_prepare(ws)
    config = config or load_config(ws.config_path)
    check_panel_options(opts, config)
    mode, n_examples, settings = rp.resolve_settings(config, opts, client)
    client = rp.with_budget(
        client,
        config,
        config.generation.max_cost_usd if opts.max_cost_usd is None else opts.max_cost_usd,
    )
    started = time.time()
    config = holdout_setup.panel_config(config, opts, settings.seed)  # --holdout
    setup = panel_draw(ws, config, waves, respondents, settings.seed)
    requested = list(setup.structure.requested)
    files = panel_files(ws, model_dir)
    ws.refuse_links(*files.values(), *(ws.checkpoint(model_dir, w) for w in requested))
    if opts.restart:
        for w in requested:
            rp.set_aside(ws, rp.Checkpoint(ws.checkpoint(model_dir, w)), ws.manifest(model_dir, w))
    elif not opts.resume:
        refuse_existing(ws, model_dir, requested)
    else:
        holdout_setup.refuse_other_holdout(ws, setup, model_dir, requested)
    run = _PanelRun(ws, config, client, model_dir, opts, mode, n_examples, settings, setup)
    run.progress = progress
    summaries: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as locks:
        for w in requested:  # every wave's lock for the whole run (the waves run together)
            locks.enter_context(rp.RunLock(ws.lock(model_dir, w), f"wave {w} of {model_dir}"))
        setup.carry = carry_for_run(
            setup, run.load, config, opts, settings.seed, schema_fixed=client.is_local
        )
        waves_ = [run.prepare(j, w) for j, w in enumerate(requested)]
        run.generate(waves_)
        for pw in waves_:  # in study order: the first wave that stopped early raises
            summaries[pw.wd.wave] = run.finish(pw)
    long_path = write_long_panel(ws, model_dir, run.generated, setup.structure.requested)
    manifest = write_panel_manifest(
        ws, model_dir, setup, summaries, run.trajectories, client, started, mode
    )
    return PanelRunResult(
        model_dir=model_dir,
        waves=requested,
        outputs={w: ws.output_csv(model_dir, w) for w in requested},
        long_output=long_path,
        manifest=files["manifest"],
        rows={w: int(len(run.generated[w])) for w in requested},
        manifest_data=manifest,
    )


class _PanelRun:
    """The books of one panel run across its waves."""

    def __init__(
        self,
        ws: Workspace,
        config: PanelsynthConfig,
        client: LLMClient,
        model_dir: str,
        opts: rp.RunOptions,
        mode: str,
        n_examples: int,
        settings: rp.GenerationSettings,
        setup: PanelSetup,
    ) -> None:
        self.ws, self.config, self.client, self.model_dir = ws, config, client, model_dir
        self.opts, self.mode, self.n_examples, self.settings = opts, mode, n_examples, settings
        self.setup = setup
        self.id_column = config.study.id_column
        self.generated: dict[str, pd.DataFrame] = {}
        #: Each respondent's kept rows per wave, published as their calls are saved.
        self.board = AnswerBoard()
        self._widest_cache: dict[str, dict[str, Any]] = {}
        self.real: dict[str, WaveData] = {}
        self.trajectories: dict[str, list[Trajectory]] = {}
        self.prev_wave: dict[str, str | None] = {}
        self.progress: Callable[[dict[str, Any]], None] | None = None
        self.cache = rp.StepCache(ws.cache_dir(), enabled=opts.use_cache)
        g = config.generation
        self.drop_copies = g.drop_copies if opts.drop_copies is None else opts.drop_copies
        self.formats = rp.parse_formats(opts.formats)
        #: The waves' calls run together (see :meth:`generate`), under one limit on calls in
        #: flight and one rate pacer.
        self.together = settings.concurrency > 1 and not client.is_local
        self.throttle = rp.shared_throttle(settings) if self.together else None

    # -- real data ---------------------------------------------------------------------------
    def load(self, wave: str) -> WaveData:
        """The wave as a per-wave run loads it, with the real ids in the id column (loaded once;
        the ids come from the real frame the host's draw read)."""
        if wave in self.real:
            return self.real[wave]
        wd = rp.load_wave_for_run(self.ws, wave, self.config, self.mode)  # type: ignore[arg-type]
        raw = self.setup.frames.get(wave)
        if raw is None:
            raw = rp.read_csv_any(self.ws.original_data(wave))
        if self.id_column not in raw.columns:
            from panelsynth.panel.structure import PanelDataError

            raise PanelDataError(
                f"{self.ws.rel(self.ws.original_data(wave))} has no id column "
                f"{self.id_column!r}, which --panel needs — add it or set study.id_column"
            )
        wd.frame = wd.frame.assign(
            **{self.id_column: raw.loc[wd.frame.index, self.id_column].map(id_text).to_numpy()}
        )
        self.real[wave] = wd
        return wd

    # -- one wave ----------------------------------------------------------------------------
    def prepare(self, j: int, wave: str) -> _Wave:
        """Steps 1-2, the requests, the fitted prompt and the wave's loop of calls, set up (its
        checkpoint started or taken over; ``--resume`` restores the earlier waves first)."""
        wd = self.load(wave)
        self.prev_wave[wave] = self.setup.structure.requested[j - 1] if j else None
        s1, s2 = self._steps_1_2(wd)
        rows = self._requests(wd, wave)
        prompt, max_tokens, examples_note = self._prompt(wd, s1, s2, rows, self.prev_wave[wave])
        return self._loop(wd, s1, s2, prompt, max_tokens, examples_note)

    def generate(self, waves: list[_Wave]) -> None:
        """Every wave's calls in one event loop, sharing the concurrency: a call of a later
        wave starts once its respondents' previous rows are saved.

        With one call at a time (an in-process model) nothing is gained by mixing the waves, and
        each switch between two waves' prefixes would make llama.cpp evaluate the prefix again:
        the waves then run one after another, each from a fresh context.
        """
        why = "that wave stopped before every respondent had a row"
        for group in [waves] if self.together else [[pw] for pw in waves]:
            rp.fresh_context(self.client)
            rp.run_together(
                [pw.gen for pw in group],
                finished=lambda i, g=group: self.board.close(g[i].wd.wave, why),
                client=self.client,
            )

    def plain(self, wd: WaveData) -> WaveData:
        """The wave as steps 1-2 see it: without the id column."""
        return WaveData(**{**wd.__dict__, "frame": wd.frame.drop(columns=[self.id_column])})

    def _steps_1_2(self, wd: WaveData) -> tuple[rp.Step1Result, rp.Step2Result]:
        plain = self.plain(wd)
        client = self.client
        rp.fresh_context(client)
        try:
            s1 = rp.describe_wave(
                client, plain, n_examples=self.n_examples, seed=self.settings.seed, cache=self.cache
            )
            rp.write_step1_logs(self.ws, self.model_dir, plain, s1)
            rp.fresh_context(client)
            s2 = rp.format_metadata(
                client,
                plain,
                cache=self.cache,
                preferred_target=self.config.study.outcome,
                seed=self.settings.seed,
            )
        except LLMCallError as err:
            raise PanelsynthError(
                f"wave {wd.wave}: steps 1-2 failed: {scrub(str(err))} — fix the cause (key, "
                f"model, server) and rerun with --resume"
            ) from None
        rp.write_step2_log(self.ws, self.model_dir, plain, s2)
        rp.fresh_context(client)
        return s1, s2

    def _requests(self, wd: WaveData, wave: str) -> list[Requested]:
        """The wave's present respondents, each with their path and last generated wave."""
        d = self.setup.draw
        t = d.waves.index(wave)
        earlier = [d.waves.index(w) for w in self.setup.structure.requested if d.waves.index(w) < t]
        present, clusters, prevs = d.present, d.clusters, d.prev_clusters  # computed once
        # per respondent, the last earlier requested wave they answered (-1: none)
        last = np.full(len(d.ids), -1)
        for s in earlier:
            last[present[:, s]] = s
        out, carry = [], self.setup.carry
        for i in np.flatnonzero(present[:, t]):
            prev_wave = d.waves[last[i]] if last[i] >= 0 else None
            out.append(
                Requested(
                    str(d.ids[i]),
                    int(clusters[i, t]),
                    int(prevs[i, t]) or None if wd.prev_cluster_column else None,
                    path=tuple((d.waves[s], int(clusters[i, s]) or None) for s in range(t + 1)),
                    previous_wave=prev_wave,
                    fixed=carry.request_key(str(d.ids[i]), wave, prev_wave) if carry else "",
                )
            )
        return out

    def _examples(
        self, wd: WaveData, s1: rp.Step1Result, prev_wave: str | None, per: int
    ) -> tuple[list[str], str, str]:
        """(example texts, heading, note) of the prefix; logs the trajectories used."""
        if prev_wave is None:
            ex = s1.examples.groupby(wd.cluster_column, group_keys=False).head(per)
            return (
                cluster_examples(ex, wd.cluster_column),
                "Examples of real respondents of this wave (CSV; NA = no answer):",
                f"{len(ex)} real example rows",
            )
        pw = self.real[prev_wave]
        rng = np.random.default_rng(
            [self.settings.seed, _TRAJECTORY_STREAM, int(self.setup.draw.waves.index(wd.wave))]
        )
        traj = sample_trajectories(
            pw.frame,
            wd.frame,
            id_column=self.id_column,
            rng=rng,
            per_type=per,
            previous_variables=pw.variables,
            current_variables=wd.variables,
            cluster_column=wd.cluster_column,
            prev_cluster_column=wd.prev_cluster_column or "prev_cluster",
        )
        self.trajectories[wd.wave] = traj
        texts = [
            format_trajectory(
                ex, previous_wave=prev_wave, wave=wd.wave, cluster_column=wd.cluster_column
            )
            for ex in traj
        ]
        heading = (
            f"Examples of real respondents followed from wave {prev_wave} to wave {wd.wave}, one "
            f"per line pair (CSV; NA = no answer):"
        )
        return texts, heading, f"{len(traj)} real trajectories ({per} per transition type)"

    def _prompt(
        self,
        wd: WaveData,
        s1: rp.Step1Result,
        s2: rp.Step2Result,
        rows: list[Requested],
        prev_wave: str | None,
    ) -> tuple[PanelPrompt, int, str]:
        """The wave's prompt, fitted into the model's context (fewer examples, then fewer rows
        per call, with a warning)."""
        metadata_text = rp.format_wave_description(s2.description, wd)
        descriptions_text = rp.format_descriptions(s1.descriptions)
        per = TRAJECTORIES_PER_TYPE if prev_wave else self.n_examples
        n_out = self.settings.n_outputs
        window = getattr(self.client, "context_window", None)
        sample = s1.examples.assign(**{self.id_column: rows[0].respondent if rows else "S00001"})
        while True:
            texts, heading, note = self._examples(wd, s1, prev_wave, per)
            prefix = panel_prefix(
                metadata_text=metadata_text,
                descriptions_text=descriptions_text,
                shares=wd.cluster_shares(),
                examples=texts,
                examples_heading=heading,
                wave=wd.wave,
                full=wd.mode == "full",
                id_column=self.id_column,
                cluster_column=wd.cluster_column,
                prev_cluster_column=wd.prev_cluster_column,
            )
            max_tokens = self.settings.max_tokens or rp.estimate_output_tokens(
                self.client, sample, n_out
            )
            prompt = PanelPrompt(
                prefix=prefix,
                n_examples_used=per,
                requests=rows,
                n_outputs=n_out,
                wave=wd.wave,
                id_column=self.id_column,
                cluster_column=wd.cluster_column,
                prev_cluster_column=wd.prev_cluster_column,
                board=self.board,
                variables=list(wd.variables),
                carry=self.setup.carry,
            )
            if not window:
                return prompt, max_tokens, note
            msgs = self._probe(prompt, rows, n_out).for_batch(0, n_out)
            used = self.client.count_tokens("\n".join(m["content"] for m in msgs)) + 32
            if used + max_tokens <= window:
                return prompt, max_tokens, note
            if per > 1:
                per = max(1, per // 2)
            elif n_out > 1:
                n_out = max(1, n_out // 2)
            else:
                raise PanelsynthError(
                    f"wave {wd.wave}: the panel prompt needs {used} + {max_tokens} tokens but "
                    f"{self.client.label} has a context of {window} — use fewer variables or a "
                    f"model with a longer context"
                )
            log.warning(
                "wave %s: the panel prompt does not fit the %d-token context of %s: %d examples "
                "per type, %d respondents per call",
                wd.wave,
                window,
                self.client.label,
                per,
                n_out,
            )

    def _probe(self, prompt: PanelPrompt, rows: list[Requested], n_out: int) -> PanelPrompt:
        """The wave's largest call as far as the host can tell before the previous answers
        exist: the ``n_out`` longest cluster paths, each with the widest real answers of the
        wave their request shows."""
        longest = sorted(rows, key=lambda r: -len(str(r.path)))[:n_out]
        board = AnswerBoard()
        for r in longest:
            if r.previous_wave is not None:
                board.publish(r.previous_wave, r.respondent, self._widest(r.previous_wave))
        return replace(prompt, requests=longest, board=board, assigned={}, fulfilled=set())

    def _widest(self, wave: str) -> dict[str, Any]:
        """Per variable of ``wave``, its real value written longest (a bound on a row's text)."""
        if wave not in self._widest_cache:
            wd = self.real[wave]
            out: dict[str, Any] = {}
            for v in wd.variables:
                texts = wd.frame[v].map(cell_text)
                out[v] = (
                    texts.iloc[int(texts.str.len().to_numpy().argmax())] if len(texts) else "NA"
                )
            self._widest_cache[wave] = out
        return self._widest_cache[wave]

    def _loop(
        self,
        wd: WaveData,
        s1: rp.Step1Result,
        s2: rp.Step2Result,
        prompt: PanelPrompt,
        max_tokens: int,
        examples_note: str,
    ) -> _Wave:
        ws, md, wave = self.ws, self.model_dir, wd.wave
        specs = [
            rp.RowSpec(**{**s.__dict__, "nullable": True})
            if s.name == wd.prev_cluster_column
            else s
            for s in rp.wave_row_specs(wd)
        ]
        shared = panel_row_model(rp.build_row_model(specs), self.id_column)
        prompt.shared_row_model = shared
        if self.client.is_local:  # schema-guided decoding: the ids and clusters are fixed
            prompt.fixed_row_model = shared
        columns = [self.id_column, *wd.columns]
        n = len(prompt.requests)
        settings = PanelSettings(
            **{**self.settings.__dict__, "n_outputs": prompt.n_outputs},
            rows=n,
        )
        settings.n_batches = max(1, math.ceil(n / prompt.n_outputs))
        header = panel_header(self.client, self.setup, wd, settings, prompt, shared)
        if self.drop_copies:  # part of the fingerprint: a resume keeps the same books
            header = {**header, "drop_copies": True}
        ckpt = PanelCheckpoint(ws.checkpoint(md, wave), wave)
        resume = resumable(ws, md, wave, ckpt, self.opts)
        base = wave_manifest_base(self, wd, s1, s2, settings, prompt, max_tokens, examples_note)
        if self.progress:
            self.progress({"stage": "step3", "wave": wave, "wanted": n})
        progress = self.progress
        gen = rp.Generation(
            self.client,
            prompt,
            shared,
            columns,
            settings,
            ckpt,
            header=header,
            resume=resume,
            wave=wave,
            progress=(lambda ev: progress({**ev, "wave": wave})) if progress else None,
            max_tokens=max_tokens,
            accept_headerless=self.opts.accept_headerless_checkpoint,
            throttle=self.throttle,
            # --drop-copies: a row equal to a real row of the wave (ids aside) is topped up
            exclude_rows=rp.row_keys(wd.frame, wd.columns) if self.drop_copies else None,
            exclude_columns=wd.columns,
        )
        return _Wave(wd, s1, s2, prompt, base, gen, time.time(), examples_note)

    def finish(self, pw: _Wave) -> dict[str, Any]:
        """Write the wave's CSV, manifest and trajectory log (or, when it stopped early, its
        incomplete manifest, and raise)."""
        ws, md, wd, prompt, base = self.ws, self.model_dir, pw.wd, pw.prompt, pw.base
        wave, n = wd.wave, len(pw.prompt.requests)
        try:
            gen = pw.gen.result()
        except GenerationExhaustedError as err:
            res = err.result if isinstance(err.result, rp.GenerationResult) else None
            base.update(status="incomplete", error=str(err))
            rp.write_manifest(ws.manifest(md, wave), base, pw.s1, pw.s2, res, self.config,
                              self.client, pw.started)  # fmt: skip
            raise
        rows = self._ordered(gen.rows, prompt, wd)
        calibrated = bool(self.setup.carry and self.setup.carry.settings.get("calibrated"))
        base.update(write_wave_output(ws, md, wd, rows, self.formats, calibrated=calibrated))
        data = rp.write_manifest(
            ws.manifest(md, wave), base, pw.s1, pw.s2, gen, self.config, self.client, pw.started
        )
        data["wanted"] = n  # one row per present respondent (not calls x rows per call)
        data["panel"]["carried_fixes"] = prompt.carried_fixes
        atomic_write_text(
            ws.manifest(md, wave), json.dumps(scrub_data(data), indent=2, default=str) + "\n"
        )
        write_trajectory_logs(
            ws, md, wave, self.trajectories.get(wave), self.id_column, self.prev_wave.get(wave)
        )
        self.generated[wave] = rows
        return {
            "rows": int(len(rows)),
            "wanted": n,
            "calls": len(gen.calls),
            "resumed_calls": gen.resumed_batches,
            "invalid_rows": gen.invalid_rows,
            "rejected_rows": prompt.rejected_rows,
            "carried_fixes": prompt.carried_fixes,
            "input_tokens": data["tokens"]["input"],
            "output_tokens": data["tokens"]["output"],
            "cost_usd": data["cost"].get("usd"),
            "examples": pw.examples_note,
        }

    def _ordered(self, rows: pd.DataFrame, prompt: PanelPrompt, wd: WaveData) -> pd.DataFrame:
        """Rows in the order of the respondents (one each), clusters as the host drew them."""
        order = {r.respondent: i for i, r in enumerate(prompt.requests)}
        rows = rows.copy()
        rows[self.id_column] = rows[self.id_column].astype(str)
        rows = rows.iloc[rows[self.id_column].map(order).argsort(kind="stable")]
        missing = len(prompt.requests) - rows[self.id_column].nunique()
        if missing or len(rows) != len(prompt.requests):  # pragma: no cover - books guarantee
            raise PanelsynthError(f"wave {wd.wave}: {missing} respondents have no row")
        if wd.prev_cluster_column:
            prev = {r.respondent: r.prev_cluster for r in prompt.requests}
            rows[wd.prev_cluster_column] = pd.array(
                [prev[i] for i in rows[self.id_column]], dtype="Int64"
            )
        return rows.reset_index(drop=True)
