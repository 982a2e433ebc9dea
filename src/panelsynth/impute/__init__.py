"""Multiple imputation of a real panel's gaps (issue 15): the non-LLM core.

``gaps`` (what is missing, host-drawn clusters), ``mask`` (seeded masking for evaluation),
``baselines`` (hot-deck, LOCF, chained equations), ``completed`` (one completed set),
``csvtext`` and ``output`` (byte-preserving files), ``score`` (metrics and Rubin's rules) and
``demo_reference`` (the Bayes-optimal imputation of a demo item). See docs/imputation.md.
"""
