"""Structured-output models (SPEC §4.4)."""
