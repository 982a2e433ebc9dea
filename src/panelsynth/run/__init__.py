"""One wave's run, above the stages (describe, metadata, generate, calibrate).

* :mod:`~panelsynth.run.plan` — :class:`RunOptions` (what the user set) and :func:`resolve_plan`,
  the one place where options, ``panelsynth.toml`` and the defaults become a :class:`RunPlan`;
* :mod:`~panelsynth.run.wave` — :func:`run_wave`: load once, step 1, step 2, step 3 through its
  strategy (:mod:`panelsynth.generate.strategy`), write, manifest;
* :mod:`~panelsynth.run.dryrun` — ``run --dry-run``: the same path answered by placeholders;
* :mod:`~panelsynth.run.files` — the wave's files, lock and refusals;
* :mod:`~panelsynth.run.manifest` — logs, cost and the manifest;
* :mod:`~panelsynth.run.failures` — one line for a step-1/2 call that failed for good.
"""
