"""The record of a submitted batch: one JSON line in a wave's checkpoint, restorable anywhere."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from panelsynth.llm.batch.core import STATES, TERMINAL_STATES, BatchStatus

#: Version of the :class:`BatchJob` record written to checkpoints.
JOB_RECORD_VERSION = 1
#: Key that marks a checkpoint record as a :class:`BatchJob`.
JOB_RECORD_KEY = "batch_job"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class BatchJob:
    """A submitted batch: enough to poll, collect or cancel it from another process.

    Attributes:
        provider: ``openai`` or ``anthropic``.
        model: Model name as sent to the provider.
        batch_id: The provider's batch id.
        custom_ids: The requests submitted, in order.
        submitted_at: UTC time of submission (ISO 8601).
        input_file_id: The uploaded JSONL file (OpenAI).
        status: Last known state (see :data:`STATES`).
        counts: Last known counts (:meth:`BatchCounts.to_dict`).
        output_file_id: File of results (OpenAI), once known.
        error_file_id: File of per-request errors (OpenAI), once known.
        books: What the run must know about a request to use its answer, by ``custom_id``
            (a calibrated call: the profiles it asked for), written with the job at once.
    """

    provider: str
    model: str
    batch_id: str
    custom_ids: list[str]
    submitted_at: str = field(default_factory=_now)
    input_file_id: str | None = None
    status: str = "validating"
    counts: dict[str, int] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    books: dict[str, dict[str, Any]] = field(default_factory=dict)

    def update(self, status: BatchStatus) -> None:
        """Take the state and counts of a fresh poll. A batch that has ended stays ended: an
        answer to an earlier poll that arrives late (a cancel polls from another thread than
        the collector) does not make it look running again."""
        if self.terminal and not status.terminal:
            return
        self.status = status.state
        self.counts = status.counts.to_dict()

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATES

    def to_record(self) -> dict[str, Any]:
        """The JSON-able checkpoint record (``{"batch_job": {...}}``)."""
        return {
            JOB_RECORD_KEY: {
                "v": JOB_RECORD_VERSION,
                "provider": self.provider,
                "model": self.model,
                "batch_id": self.batch_id,
                "custom_ids": list(self.custom_ids),
                "submitted_at": self.submitted_at,
                "input_file_id": self.input_file_id,
                "status": self.status,
                "counts": dict(self.counts),
                "output_file_id": self.output_file_id,
                "error_file_id": self.error_file_id,
                **({"books": {k: dict(v) for k, v in self.books.items()}} if self.books else {}),
            }
        }

    def to_json_line(self) -> str:
        """One JSON line (with its newline), to append to a wave's checkpoint."""
        return json.dumps(self.to_record(), sort_keys=True) + "\n"

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> BatchJob:
        """Restore a job from :meth:`to_record` output.

        Raises:
            ValueError: The record is not a batch job of a known version, or is malformed.
        """
        body = record.get(JOB_RECORD_KEY)
        if not isinstance(body, Mapping):
            raise ValueError(f"not a {JOB_RECORD_KEY} record")
        if body.get("v") != JOB_RECORD_VERSION:
            raise ValueError(f"{JOB_RECORD_KEY} record of unknown version {body.get('v')!r}")
        try:
            ids = [str(c) for c in body["custom_ids"]]
            job = cls(
                provider=str(body["provider"]),
                model=str(body["model"]),
                batch_id=str(body["batch_id"]),
                custom_ids=ids,
                submitted_at=str(body["submitted_at"]),
                input_file_id=body.get("input_file_id"),
                status=str(body.get("status") or "validating"),
                counts={str(k): int(v) for k, v in (body.get("counts") or {}).items()},
                output_file_id=body.get("output_file_id"),
                error_file_id=body.get("error_file_id"),
                books={str(k): dict(v) for k, v in (body.get("books") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed {JOB_RECORD_KEY} record: {err}") from None
        if job.status not in STATES or not job.batch_id or len(set(ids)) != len(ids):
            raise ValueError(f"malformed {JOB_RECORD_KEY} record for batch {job.batch_id!r}")
        return job

    @classmethod
    def from_json_line(cls, line: str) -> BatchJob:
        """Restore a job from :meth:`to_json_line` output."""
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"not a JSON line: {err}") from None
        if not isinstance(record, Mapping):
            raise ValueError(f"not a {JOB_RECORD_KEY} record")
        return cls.from_record(record)


def split_job_records(
    records: Iterable[Mapping[str, Any]],
) -> tuple[list[BatchJob], list[Mapping[str, Any]]]:
    """Separate batch-job records from the other records of a checkpoint.

    A later record of the same batch id (a status update) replaces an earlier one; jobs keep
    the order of their first record.

    Returns:
        ``(jobs, other_records)``.
    """
    jobs: dict[str, BatchJob] = {}
    others: list[Mapping[str, Any]] = []
    for record in records:
        if JOB_RECORD_KEY in record:
            job = BatchJob.from_record(record)
            jobs[job.batch_id] = job
        else:
            others.append(record)
    return list(jobs.values()), others
