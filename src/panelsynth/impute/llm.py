"""The cluster-guided LLM imputation of a panel's gaps (issue 15): one more step-3 strategy.

Per wave, the shared prefix of every call is the wave's formatted metadata and cluster
descriptions (steps 1-2, from the same cache as ``panelsynth run``) and few-shot examples:
complete real respondents of each cluster. Each call then completes **one** respondent: their
cluster in this wave (observed, or drawn by the host from the real transition table for a wave
they missed), their answers in earlier requested waves and the answers they gave in this wave.
The response model has exactly the missing cells as fields (codes and bounds as for generation,
no null), so an answer the respondent gave cannot be changed: it is not a field.

Imputation ``k`` is a separate pass with its own seed (``[seed, k]``) and its own checkpoint
(one fsync'ed line per finished call, naming the respondent), so a kill neither repeats nor loses
a respondent: ``--resume`` takes over the finished ones and asks only for the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from panelsynth.config import PanelsynthConfig
from panelsynth.impute import _runpath as rp
from panelsynth.impute.completed import CELL_COLUMNS, CompletedSet
from panelsynth.impute.gaps import Gaps, Panel, PanelWave, cluster_of, draw_missing_clusters
from panelsynth.values import plain
from panelsynth.workspace import Workspace

log = logging.getLogger("panelsynth")

SYSTEM_IMPUTE = (
    "You fill in the missing answers of real respondents of a longitudinal survey. Each "
    "respondent belongs to one of the clusters described below. Given the answers a respondent "
    "gave and their cluster, write a plausible answer for each missing question, as this "
    "respondent would have answered it. Reply with JSON only."
)

#: Few-shot examples per cluster, and earlier waves shown per respondent, by default.
DEFAULT_EXAMPLES = 5
DEFAULT_HISTORY = 2


@dataclass
class LLMSettings:
    """How the LLM imputes (the ``m`` and ``seed`` come with each :meth:`LLMImputer.impute`)."""

    temperature: float = 1.0
    n_examples: int = DEFAULT_EXAMPLES
    history: int = DEFAULT_HISTORY
    concurrency: int = 1
    max_attempts_factor: float = 3.0
    use_cache: bool = True
    resume: bool = False


@dataclass(frozen=True)
class Request:
    """What one call shows and asks about one respondent of one wave."""

    respondent_id: str
    cluster: int
    absent: bool
    given: tuple[tuple[str, Any], ...]
    history: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
    missing: tuple[str, ...]

    def text(self, wave: str, k: int, m: int, cluster_column: str) -> str:
        lines = [f"\n\nRespondent to complete (imputation {k} of {m}):"]
        how = (
            " (they did not take part in this wave; the cluster was drawn from the real "
            "transitions between waves)"
            if self.absent
            else ""
        )
        lines.append(f"- {cluster_column} in wave {wave}: {self.cluster}{how}")
        for w, answers in self.history:
            lines.append(f"- answers in wave {w}: {_pairs(answers)}")
        if self.given:
            lines.append(f"- answers given in wave {wave}: {_pairs(self.given)}")
        lines.append(
            f'Write their missing answers in wave {wave} as {{"rows": [{{...}}]}} with exactly '
            f"these fields: {', '.join(self.missing)}."
        )
        return "\n".join(lines)


def _pairs(answers: Sequence[tuple[str, Any]]) -> str:
    return ", ".join(f"{v}={plain(x)}" for v, x in answers) or "none"


class ImputationPrompt(rp.GenerationPrompt):
    """The step-3 strategy of one (wave, imputation): one respondent per call.

    Calls are bound to respondents when they are made (``for_batch``): a respondent is given to a
    call only if no finished or running call has them; the respondents of failed or rejected
    calls are freed before the next round of calls (``plan``). A resumed checkpoint's finished
    calls mark their respondents done (``restore``).
    """

    def __init__(
        self,
        prefix: list[dict[str, str]],
        n_examples_used: int,
        notes: list[str],
        requests: list[Request],
        texts: dict[str, str],
        row_models: dict[tuple[str, ...], type[BaseModel]],
    ) -> None:
        super().__init__(prefix, n_examples_used, notes)
        self.requests = {r.respondent_id: r for r in requests}
        self.order = [r.respondent_id for r in requests]
        self.texts = texts
        self.row_models = row_models
        self.bound: dict[int, str | None] = {}
        self.done: dict[str, dict[str, Any]] = {}
        self._batch_models: dict[tuple[str, ...], type[BaseModel]] = {}

    def _bind(self, batch: int) -> str | None:
        if batch not in self.bound:
            busy = {r for r in self.bound.values() if r is not None}
            self.bound[batch] = next(
                (r for r in self.order if r not in self.done and r not in busy), None
            )
        return self.bound[batch]

    def for_batch(self, batch: int, n_rows: int) -> list[dict[str, str]]:
        rid = self._bind(batch) or self.order[0]  # none left (a resume's extra call): discarded
        return rp.with_request(self.prefix, self.texts[rid])

    def plan(self, batches: Sequence[int]) -> None:
        self.bound = {b: r for b, r in self.bound.items() if r is not None and r in self.done}

    def response_model(self, batch: int, default: type[BaseModel]) -> type[BaseModel]:
        rid = self._bind(batch) or self.order[0]
        missing = self.requests[rid].missing
        if missing not in self._batch_models:
            self._batch_models[missing] = rp.batch_model(self.row_models[missing], 1)
        return self._batch_models[missing]

    def check_rows(
        self, batch: int, rows: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
        rid = self.bound.get(batch)
        if rid is None or rid in self.done:
            return [], ["no respondent left for this call"] if rows else [], {}
        if not rows:
            return [], [], {"respondent": rid}
        missing = self.requests[rid].missing
        try:
            obj = self.row_models[missing].model_validate(rows[0])
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(x) for x in first["loc"]) or "row"
            return [], [f"row 0: {loc}: {first['msg']}"], {"respondent": rid}
        dumped = obj.model_dump()
        cells = {v: dumped[v] for v in missing}
        self.done[rid] = cells
        return [cells], [], {"respondent": rid}

    def restore(self, record: dict[str, Any]) -> None:
        rid = record.get("respondent")
        if rid in self.requests and record.get("rows"):
            self.done[rid] = dict(record["rows"][0])
            self.bound[int(record["batch"])] = rid


class _AnyRow(BaseModel):
    """Lenient first check of a call's rows: any object; the respondent's own model decides."""

    model_config = ConfigDict(extra="allow")


class _ImputeCheckpoint(rp.Checkpoint):
    """The run's checkpoint, with a fault-injection point after every finished call (tests)."""

    appended = 0

    def append(self, record: dict[str, Any]) -> None:
        super().append(record)
        _ImputeCheckpoint.appended += 1
        from panelsynth import faultpoint

        faultpoint.reach(f"impute-append:{_ImputeCheckpoint.appended}")


def imputation_seed(seed: int, k: int) -> int:
    """The seed of imputation ``k`` (as the baselines: ``[seed, k]``)."""
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1)[0] % (2**31 - 1))


def requests_for(
    panel: Panel,
    wave: str,
    gaps: Gaps,
    clusters: pd.Series,
    history: int,
) -> list[Request]:
    """One request per respondent of ``wave`` with a gap: item gaps first (file order), then the
    absent rows."""
    pw = panel.waves[wave]
    cells = gaps.cells[gaps.cells["wave"] == wave]
    missing_by = cells.groupby("respondent_id", sort=False)["variable"].agg(tuple)
    absent = gaps.absent_ids(wave)
    shown = [c for c in pw.frame.columns if c not in _cluster_cols(panel)]
    out = []
    for rid in [*[r for r in pw.ids if r in missing_by.index], *absent]:
        is_absent = rid not in missing_by.index
        missing = tuple(pw.variables) if is_absent else tuple(missing_by[rid])
        given: tuple[tuple[str, Any], ...] = ()
        if not is_absent:
            row = pw.frame.loc[rid]
            given = tuple((c, row[c]) for c in shown if c not in missing and pd.notna(row[c]))
        out.append(
            Request(
                rid,
                int(clusters[rid]),
                is_absent,
                given,
                _history(panel, wave, rid, history),
                missing,
            )
        )
    return out


def _cluster_cols(panel: Panel) -> set[str]:
    return {panel.cluster_column, panel.prev_cluster_column}


def _history(
    panel: Panel, wave: str, rid: str, n: int
) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]:
    """The respondent's answers in up to ``n`` earlier requested waves they took part in."""
    out = []
    for w in reversed(panel.order[: panel.order.index(wave)]):
        if len(out) >= n:
            break
        frame = panel.waves[w].frame
        if rid not in frame.index:
            continue
        row = frame.loc[rid]
        cols = [c for c in frame.columns if c not in _cluster_cols(panel) and pd.notna(row[c])]
        out.append((w, tuple((c, row[c]) for c in cols)))
    return tuple(reversed(out))


def complete_examples(pw: PanelWave, cluster_column: str, n: int, seed: int) -> pd.DataFrame:
    """Up to ``n`` complete real respondents per cluster (no missing answer among the wave's
    variables), seeded; where a cluster has none complete, its most complete ones."""
    frame = pw.frame[[*pw.variables, cluster_column]]
    rng = np.random.default_rng(seed)
    parts = []
    for c in sorted(frame[cluster_column].dropna().unique()):
        sub = frame[frame[cluster_column] == c]
        n_missing = sub[pw.variables].isna().sum(axis=1)
        order = np.lexsort((rng.random(len(sub)), n_missing.to_numpy()))
        parts.append(sub.iloc[order[:n]])
    return pd.concat(parts).reset_index(drop=True) if parts else frame.head(0)


def build_prefix(
    pw: PanelWave,
    steps: rp.Steps12,
    examples: pd.DataFrame,
    cluster_column: str,
    shares: dict[int, float],
) -> list[dict[str, str]]:
    """The shared prefix of every call of a wave."""
    parts = [
        steps.metadata_text,
        "",
        "Clusters of respondents (labels mean the same group in every wave):",
        steps.descriptions_text,
        "",
        "Share of respondents in each cluster: "
        + ", ".join(f"cluster {c}: {s:.0%}" for c, s in shares.items())
        + ".",
        "",
        "Examples of complete real respondents of each cluster in this wave (CSV):",
    ]
    for c in sorted(examples[cluster_column].unique()):
        sub = examples[examples[cluster_column] == c]
        parts += [f"Cluster {c}:", rp.encode_table(sub)]
    parts += [
        "",
        "Rules:",
        "- Write only the missing answers asked for; the answers the respondent gave stay as "
        "they are and are not repeated.",
        "- Use only the codes listed for each variable; numbers stay inside their range; no null.",
        "- Answer like this respondent: consistent with the answers they gave in this and "
        "earlier waves and with their cluster.",
    ]
    return [
        {"role": "system", "content": SYSTEM_IMPUTE},
        {"role": "user", "content": "\n".join(parts)},
    ]


def row_models_for(pw: PanelWave, requests: list[Request]) -> dict[tuple[str, ...], type]:
    """A strict row model per set of missing variables: exactly those fields, no null."""
    specs = {
        s.name: s for s in rp.build_specs(pw.var_types, pw.metadata, nullable=False, frame=pw.frame)
    }
    out: dict[tuple[str, ...], type] = {}
    for r in requests:
        if r.missing not in out:
            out[r.missing] = rp.build_row_model(
                [specs[v] for v in r.missing], name=f"Wave{pw.wave}Missing"
            )
    return out


def output_budget(client: Any, requests: list[Request]) -> int:
    """Output tokens of the largest call: its fields with three-digit values, with headroom."""
    widest = max(requests, key=lambda r: len(r.missing))
    text = '{"rows": [{' + ", ".join(f'"{v}": 100' for v in widest.missing) + "}]}"
    return int(40 + client.count_tokens(text) * 1.6)


@dataclass
class WavePrompt:
    """What a wave's calls share: the fitted prefix, its notes and the output budget."""

    prefix: list[dict[str, str]]
    n_examples: int
    notes: list[str]
    max_tokens: int
    steps_usage: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class PassResult:
    """One (wave, imputation) pass: the imputed cells and the books of its calls."""

    wave: str
    k: int
    cells: dict[str, dict[str, Any]]
    gen: Any
    checkpoint: Path


class LLMImputer:
    """The LLM imputation behind the :class:`~panelsynth.impute.baselines.Imputer` interface.

    Args:
        ws: The workspace (metadata, contexts, the step cache).
        client: The model client.
        config: The study config.
        checkpoint_dir: Where the per-(wave, k) checkpoints go.
        settings: How it imputes.
        progress: Optional callback of each pass's progress events.
    """

    name = "LLM"

    def __init__(
        self,
        ws: Workspace,
        client: Any,
        config: PanelsynthConfig,
        checkpoint_dir: Path,
        settings: LLMSettings | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
        *,
        dry_run: bool = False,
    ) -> None:
        self.ws = ws
        self.dry_run = dry_run
        self.client = client
        self.config = config
        self.checkpoint_dir = checkpoint_dir
        self.s = settings or LLMSettings()
        self.progress = progress
        self.name = f"LLM ({client.label})"
        self.passes: list[PassResult] = []
        self.steps_usage: dict[str, dict[str, dict[str, Any]]] = {}
        self.notes: list[str] = []

    def checkpoint_path(self, wave: str, k: int) -> Path:
        return self.checkpoint_dir / f"wave{wave}_imp{k}.checkpoint.jsonl"

    def wave_prompt(
        self, panel: Panel, wave: str, requests: list[Request], seed: int
    ) -> WavePrompt:
        """Steps 1-2 and the fitted shared prefix of ``wave``."""
        pw = panel.waves[wave]
        wd = rp.wave_data(self.ws, pw, self.config)
        cache = (
            rp.readonly_cache(self.ws, self.s.use_cache)
            if self.dry_run
            else rp.step_cache(self.ws, self.s.use_cache)
        )
        steps = rp.steps_1_2(
            self.client, wd, cache=cache, seed=seed, outcome=self.config.study.outcome
        )
        examples = complete_examples(pw, panel.cluster_column, self.s.n_examples, seed)
        shares = wd.cluster_shares()
        max_tokens = output_budget(self.client, requests)
        longest = max(
            self.client.count_tokens(r.text(wave, 1, 1, panel.cluster_column)) for r in requests
        )
        fitted = rp.fit_prompt(
            self.client,
            lambda ex: build_prefix(pw, steps, ex, panel.cluster_column, shares),
            examples,
            panel.cluster_column,
            1,
            max_tokens + longest,
        )
        return WavePrompt(
            fitted.prefix, fitted.n_examples_used, fitted.notes, max_tokens, steps.usage
        )

    def impute(self, panel: Panel, gaps: Gaps, m: int, seed: int) -> list[CompletedSet]:
        """``m`` completed sets; raises ``GenerationExhaustedError`` when a pass runs out of
        calls (its checkpoint keeps every finished call: impute again with resume)."""
        if m < 1:
            raise ValueError(f"m must be at least 1, not {m}")
        drawn = [
            draw_missing_clusters(panel, gaps, imputation_seed(seed, k)) for k in range(1, m + 1)
        ]
        cells: dict[int, list[tuple[str, str, str, Any]]] = {k: [] for k in range(1, m + 1)}
        for wave in panel.order:
            if not len(gaps.cells[gaps.cells["wave"] == wave]) and not gaps.absent_ids(wave):
                continue  # nothing missing: no call at all
            first = requests_for(
                panel, wave, gaps, cluster_of(panel, wave, drawn[0]), self.s.history
            )
            wp = self.wave_prompt(panel, wave, first, seed)
            self.steps_usage[wave] = wp.steps_usage
            self.notes += wp.notes
            for k in range(1, m + 1):
                res = self.run_pass(panel, wave, gaps, drawn[k - 1], wp, k, m, seed)
                self.passes.append(res)
                for rid, row in res.cells.items():
                    cells[k] += [(wave, rid, v, x) for v, x in row.items()]
        return [
            CompletedSet(k, pd.DataFrame(cells[k], columns=CELL_COLUMNS), drawn[k - 1])
            for k in range(1, m + 1)
        ]

    def pass_prompt(
        self,
        panel: Panel,
        wave: str,
        gaps: Gaps,
        drawn: dict[str, pd.Series],
        wp: WavePrompt,
        k: int,
        m: int,
    ) -> ImputationPrompt:
        requests = requests_for(panel, wave, gaps, cluster_of(panel, wave, drawn), self.s.history)
        texts = {r.respondent_id: r.text(wave, k, m, panel.cluster_column) for r in requests}
        return ImputationPrompt(
            wp.prefix,
            wp.n_examples,
            list(wp.notes),
            requests,
            texts,
            row_models_for(panel.waves[wave], requests),
        )

    def run_pass(
        self,
        panel: Panel,
        wave: str,
        gaps: Gaps,
        drawn: dict[str, pd.Series],
        wp: WavePrompt,
        k: int,
        m: int,
        seed: int,
    ) -> PassResult:
        prompt = self.pass_prompt(panel, wave, gaps, drawn, wp, k, m)
        n = len(prompt.order)
        settings = rp.GenerationSettings(
            n_outputs=1,
            n_batches=n,
            seed=imputation_seed(seed, k),
            temperature=self.s.temperature,
            max_tokens=wp.max_tokens,
            concurrency=self.s.concurrency,
            max_attempts_factor=self.s.max_attempts_factor,
        )
        header = {
            "kind": "impute",
            "wave": wave,
            "imputation": k,
            "m": m,
            "model": self.client.label,
            "seed": seed,
            "temperature": self.s.temperature,
            "respondents": n,
        }
        header["fingerprint"] = rp.fingerprint(
            header,
            prompt.prefix,
            [prompt.texts[r] for r in prompt.order],
            sorted(str(sorted(f)) for f in prompt.row_models),
        )
        path = self.checkpoint_path(wave, k)
        path.parent.mkdir(parents=True, exist_ok=True)
        ckpt = _ImputeCheckpoint(path)
        log.info("wave %s, imputation %d of %d: %d respondents to complete", wave, k, m, n)
        gen = rp.generate_rows(
            self.client,
            prompt,
            _AnyRow,
            panel.waves[wave].variables,
            settings,
            ckpt,
            header=header,
            resume=self.s.resume and ckpt.exists(),
            wave=wave,
            progress=(lambda ev: self.progress({**ev, "wave": wave, "k": k, "m": m}))
            if self.progress
            else None,
            max_tokens=wp.max_tokens,
        )
        return PassResult(wave, k, dict(prompt.done), gen, path)
