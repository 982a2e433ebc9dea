"""LLM access through one narrow seam: ``client.create(messages, response_model, ...)``."""

from panelsynth.llm.base import Completion, FakeClient, LLMCallError, LLMClient, Usage

__all__ = ["Completion", "FakeClient", "LLMCallError", "LLMClient", "Usage"]
