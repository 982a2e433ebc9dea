"""Provider batches recorded in a workspace's checkpoints: status, collect and cancel.

``panelsynth batch status|collect|cancel`` read the ``{"batch_job": ...}`` records of the wave
checkpoints (``<output>/<model dir>/.checkpoints/wave{W}.jsonl``), written by a run with
``--batch`` the moment the provider accepted each batch. ``collect`` downloads the results of
ended batches and appends them to the checkpoint as the call records the step-3 loop writes
(rows validated one by one against the wave's row model), each with ``"via": <batch id>``, so a
later ``panelsynth run ... --resume`` takes them over without paying for them again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pydantic import BaseModel

from panelsynth.checkpoint import Checkpoint, RunLock
from panelsynth.config import PanelsynthConfig
from panelsynth.errors import PanelsynthError
from panelsynth.llm.batch import (
    UNFINISHED,
    BatchApi,
    BatchError,
    BatchJob,
    BatchPricing,
    BatchResult,
    BatchStatus,
    api_for_job,
    consumed_answers,
    split_job_records,
)
from panelsynth.llm.batch.ids import call_index_of, id_prefix_for
from panelsynth.workspace import (
    FINAL_GEN_DATA,
    Workspace,
    check_model_dir,
    check_wave_id,
    wave_sort_key,
)

log = logging.getLogger("panelsynth")


@dataclass
class WaveJobs:
    """The provider batches recorded in one wave's checkpoint."""

    model_dir: str
    wave: str
    checkpoint: Checkpoint
    header: dict[str, Any] | None
    jobs: list[BatchJob]
    records: list[Mapping[str, Any]]  # the call records


@dataclass
class Collected:
    """What ``collect`` did with one ended batch."""

    model_dir: str
    wave: str
    job: BatchJob
    with_rows: int = 0
    rows: int = 0
    invalid_rows: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    not_run: int = 0
    already: int = 0
    cost_usd: float | None = None


def find_jobs(
    ws: Workspace, model_dir: str | None = None, waves: Sequence[str] | None = None
) -> list[WaveJobs]:
    """Every wave checkpoint (of ``model_dir``, or of every model dir) that records a batch.

    Raises:
        PanelsynthError: ``model_dir`` has no checkpoints, or no checkpoint records a batch.
    """
    root = ws.root / FINAL_GEN_DATA
    if model_dir is not None:
        dirs = [check_model_dir(model_dir)]
    else:
        dirs = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    wanted = {check_wave_id(w) for w in waves} if waves else None
    found: list[WaveJobs] = []
    for md in dirs:
        folder = ws.output_dir(md) / ".checkpoints"
        names = sorted(folder.glob("wave*.jsonl")) if folder.is_dir() else []
        ids = sorted((p.stem[len("wave") :] for p in names), key=wave_sort_key)
        for wave in ids:
            if wanted is not None and wave not in wanted:
                continue
            ckpt = Checkpoint(ws.checkpoint(md, wave))
            header, records = ckpt.load()
            try:
                jobs, calls = split_job_records(records)
            except ValueError as err:
                raise PanelsynthError(f"{ws.rel(ckpt.path)}: {err}") from None
            if jobs:
                found.append(WaveJobs(md, wave, ckpt, header, jobs, calls))
    if not found:
        where = f"model dir {model_dir}" if model_dir else ws.rel(root)
        which = f" for wave(s) {', '.join(sorted(wanted))}" if wanted else ""
        raise PanelsynthError(
            f"no provider batch is recorded in the checkpoints of {where}{which} — batches are "
            f"recorded by a run with --batch"
        )
    return found


def open_api(job: BatchJob, api_key: str | None, base_url: str | None) -> BatchApi:
    """The batch API of a recorded job (the key from ``api_key`` or the provider's variable)."""
    return api_for_job(job, api_key=api_key, base_url=base_url)


def poll_all(
    found: Sequence[WaveJobs], api_key: str | None, base_url: str | None
) -> list[tuple[WaveJobs, BatchJob, BatchStatus | None, str]]:
    """The current status of every job (``None`` and the reason when it cannot be polled)."""
    return _each_job(found, api_key, base_url, lambda api, job: api.poll(job))


def cancel_all(
    found: Sequence[WaveJobs], api_key: str | None, base_url: str | None
) -> list[tuple[WaveJobs, BatchJob, BatchStatus | None, str]]:
    """Cancel every job that has not ended; the status of each job after it."""
    return _each_job(found, api_key, base_url, lambda api, job: api.cancel(job))


def _each_job(
    found: Sequence[WaveJobs],
    api_key: str | None,
    base_url: str | None,
    act: Callable[[BatchApi, BatchJob], BatchStatus],
) -> list[tuple[WaveJobs, BatchJob, BatchStatus | None, str]]:
    """``act(api, job)`` for every job; ``None`` and the reason where the provider refused."""
    out = []
    for wj in found:
        for job in wj.jobs:
            try:
                with open_api(job, api_key, base_url) as api:
                    out.append((wj, job, act(api, job), ""))
            except BatchError as err:
                out.append((wj, job, None, str(err)))
    return out


@dataclass
class RowContext:
    """How the step-3 loop checks a call's rows for one wave."""

    row_model: type[BaseModel]
    columns: list[str]
    n_outputs: int
    exclude: set[tuple[Any, ...]]


def row_context(
    ws: Workspace,
    config: PanelsynthConfig,
    wj: WaveJobs,
    trust_workspace_models: bool = False,
) -> RowContext:
    """The row model, columns and copy check of a wave, as its run built them.

    Raises:
        PanelsynthError: the checkpoint has no header, or the run was calibrated (its rows are
            checked against profiles drawn by the run, which only ``run --resume`` rebuilds).
    """
    from panelsynth.generate import row_keys
    from panelsynth.pydantic_models.rows import (
        row_model_for_wave,
        trusted_models_dir,
        wave_row_specs,
    )
    from panelsynth.run.wave import load_wave_for_run

    header = wj.header
    resume = f"panelsynth run --wave {wj.wave} --model-dir {wj.model_dir} ... --resume"
    if not header:
        raise PanelsynthError(
            f"{ws.rel(wj.checkpoint.path)} has no readable header: its rows cannot be checked "
            f"here — `{resume}` collects the batch"
        )
    if header.get("calibrate"):
        raise PanelsynthError(
            f"wave {wj.wave} of {wj.model_dir} is calibrated: its rows are checked against the "
            f"profiles the run draws — `{resume}` collects the batch"
        )
    wd = load_wave_for_run(ws, wj.wave, config, header.get("mode", "dense"))
    specs = wave_row_specs(wd)
    models_dir, _ = trusted_models_dir(ws.user_models_dir(), wd.wave, trust_workspace_models)
    row_model, _ = row_model_for_wave(specs, models_dir, wd.wave)
    columns = [s.name for s in specs]
    exclude: set[tuple[Any, ...]] = set()
    if header.get("drop_copies"):
        examples_csv = ws.examples_csv(wj.model_dir, wd.wave)
        if not examples_csv.is_file():
            raise PanelsynthError(
                f"wave {wj.wave} of {wj.model_dir} drops copies of its examples, but "
                f"{ws.rel(examples_csv)} is missing — `{resume}` collects the batch"
            )
        examples = pd.read_csv(examples_csv)
        exclude = row_keys(wd.frame, columns) | row_keys(examples, columns)
    return RowContext(row_model, columns, int(header["n_outputs"]), exclude)


def call_record(
    batch: int, result: BatchResult, via: str, ctx: RowContext
) -> dict[str, Any] | None:
    """The checkpoint record the step-3 loop writes for a call (``None``: it did not run)."""
    from panelsynth.generate import row_key
    from panelsynth.pydantic_models.rows import validate_rows

    if result.kind == UNFINISHED:
        return None
    if not result.ok:
        return {"batch": batch, "failed": result.kind, "usage": result.usage.to_dict(), "via": via}
    rows = list(getattr(result.value, "rows", []) or [])
    good, errors = validate_rows(rows, ctx.row_model, ctx.columns)
    kept = [r for r in good if row_key(r[c] for c in ctx.columns) not in ctx.exclude]
    copies = len(good) - len(kept)
    return {
        "batch": batch,
        "rows": kept[: ctx.n_outputs],
        "returned": len(rows),
        "invalid": len(errors),
        "copies": copies,
        "errors": errors[:5],
        "usage": result.usage.to_dict(),
        "finish_reason": result.finish_reason,
        "via": via,
    }


def collect_wave(
    ws: Workspace,
    config: PanelsynthConfig,
    wj: WaveJobs,
    api_key: str | None,
    base_url: str | None,
    *,
    trust_workspace_models: bool = False,
) -> list[Collected | tuple[BatchJob, BatchStatus | None, str]]:
    """Append the results of every ended batch of a wave to its checkpoint (under the wave's
    run lock); a batch still running (or that cannot be polled) is reported as it is."""
    from panelsynth.prices import price_for
    from panelsynth.pydantic_models.rows import batch_model

    ctx = row_context(ws, config, wj, trust_workspace_models)
    response = batch_model(ctx.row_model, ctx.n_outputs)
    prefix = id_prefix_for(wj.wave)  # the run's custom_id scheme
    out: list[Collected | tuple[BatchJob, BatchStatus | None, str]] = []
    with RunLock(ws.lock(wj.model_dir, wj.wave), f"wave {wj.wave} of {wj.model_dir}"):
        _, records = wj.checkpoint.load()  # again, under the lock
        _, calls = split_job_records(records)
        consumed = consumed_answers(calls)
        done = {int(r["batch"]) for r in calls if not r.get("failed")}
        for job in wj.jobs:
            try:
                with open_api(job, api_key, base_url) as api:
                    status = api.poll(job)
                    if not status.terminal:
                        out.append((job, status, ""))
                        continue
                    results = api.collect(job, response)
            except BatchError as err:
                out.append((job, None, str(err)))
                continue
            price = price_for(f"{job.provider}/{job.model}", config)
            got = Collected(wj.model_dir, wj.wave, job)
            if price is not None:
                got.cost_usd = BatchPricing.from_price(price).cost_of(results)
            for result in results:
                b = call_index_of(result.custom_id, prefix)
                if b is None or b in done or (job.batch_id, b) in consumed:
                    got.already += 1
                    continue
                record = call_record(b, result, job.batch_id, ctx)
                if record is None:
                    got.not_run += 1
                    continue
                wj.checkpoint.append(record)
                consumed.add((job.batch_id, b))
                if "failed" in record:
                    got.failed[record["failed"]] = got.failed.get(record["failed"], 0) + 1
                else:
                    done.add(b)
                    got.with_rows += 1
                    got.rows += len(record["rows"])
                    got.invalid_rows += record["invalid"]
            out.append(got)
    return out


def describe_status(status: BatchStatus | None, job: BatchJob) -> str:
    """One line on a job's state and counts."""
    if status is None:
        return f"{job.status} (last seen)"
    c = status.counts
    done = c.succeeded + c.failed
    pct = f" ({math.floor(100 * done / c.total)}%)" if c.total and not status.terminal else ""
    text = f"{status.state}: {done} of {c.total} requests done{pct}"
    text += f", {c.succeeded} succeeded, {c.failed} failed"
    if c.unfinished:
        text += f", {c.unfinished} not run"
    return text + (f" — {status.message}" if status.message else "")
