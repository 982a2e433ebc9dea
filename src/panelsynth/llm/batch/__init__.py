"""Provider batch APIs (OpenAI Batch, Anthropic Message Batches): half price, within 24 hours.

Build :class:`BatchRequest` s, ``transport = make_batch_transport(label)``, ``job =
transport.submit(requests)`` and record ``job.to_json_line()`` at once; later (in this or
another process, after ``BatchJob.from_json_line``) ``transport.poll(job)`` /
``transport.wait(job)``, ``transport.collect(job, response_model)`` and ``transport.cancel(job)``.
See ``docs/batch.md``.
"""

from panelsynth.llm.batch import anthropic as _anthropic  # noqa: F401 - registers the transport
from panelsynth.llm.batch import openai as _openai  # noqa: F401 - registers the transport
from panelsynth.llm.batch.core import (
    STATES,
    TERMINAL_STATES,
    UNFINISHED,
    BatchCounts,
    BatchError,
    BatchRequest,
    BatchResult,
    BatchStatus,
    total_usage,
)
from panelsynth.llm.batch.job import BatchJob, split_job_records
from panelsynth.llm.batch.prices import BATCH_MULTIPLIER, BatchPricing, Projection, project
from panelsynth.llm.batch.schema import strict_json_schema
from panelsynth.llm.batch.transport import (
    BATCH_TRANSPORTS,
    BatchTransport,
    make_batch_transport,
    register_batch_transport,
    supports_batch,
    transport_for_job,
)

__all__ = [
    "BATCH_MULTIPLIER",
    "BATCH_TRANSPORTS",
    "STATES",
    "TERMINAL_STATES",
    "UNFINISHED",
    "BatchCounts",
    "BatchError",
    "BatchJob",
    "BatchPricing",
    "BatchRequest",
    "BatchResult",
    "BatchStatus",
    "BatchTransport",
    "Projection",
    "make_batch_transport",
    "project",
    "register_batch_transport",
    "split_job_records",
    "strict_json_schema",
    "supports_batch",
    "total_usage",
    "transport_for_job",
]
