"""Evaluation of synthetic waves (SPEC §3.6)."""
