"""Provider batch APIs (OpenAI Batch, Anthropic Message Batches): half price, within 24 hours.

Two levels:

* :class:`BatchApi` (one provider's batch endpoints): build :class:`BatchRequest` s, ``api =
  make_batch_api(label)``, ``job = api.submit(requests)`` and record ``job.to_json_line()`` at
  once; later (in this or another process, after ``BatchJob.from_json_line``) ``api.poll(job)``
  / ``api.wait(job)``, ``api.collect(job, response_model)`` and ``api.cancel(job)``;
* :class:`BatchTransport` (the step-3 call seam): ``await transport.call(batch, messages,
  response_model, ...)`` queues a request and returns its :class:`~panelsynth.llm.base.Completion`
  once the provider batch holding it has ended.

See ``docs/batch.md``.
"""

from panelsynth.llm.batch import anthropic as _anthropic  # noqa: F401 - registers the batch API
from panelsynth.llm.batch import openai as _openai  # noqa: F401 - registers the batch API
from panelsynth.llm.batch.api import (
    BATCH_APIS,
    BatchApi,
    api_for_job,
    make_batch_api,
    register_batch_api,
    supports_batch,
)
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
from panelsynth.llm.batch.prices import (
    BATCH_MULTIPLIER,
    BatchPricing,
    Projection,
    project,
    project_batch,
)
from panelsynth.llm.batch.schema import strict_json_schema
from panelsynth.llm.batch.transport import (
    BatchCallError,
    BatchCancelledError,
    BatchCompletion,
    BatchTransport,
    consumed_answers,
)

__all__ = [
    "BATCH_MULTIPLIER",
    "BATCH_APIS",
    "STATES",
    "TERMINAL_STATES",
    "UNFINISHED",
    "BatchApi",
    "BatchCallError",
    "BatchCancelledError",
    "BatchCompletion",
    "BatchCounts",
    "BatchError",
    "BatchJob",
    "BatchPricing",
    "BatchRequest",
    "BatchResult",
    "BatchStatus",
    "BatchTransport",
    "Projection",
    "consumed_answers",
    "make_batch_api",
    "project",
    "project_batch",
    "register_batch_api",
    "split_job_records",
    "strict_json_schema",
    "supports_batch",
    "total_usage",
    "api_for_job",
]
