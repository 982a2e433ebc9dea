"""Calibrated generation: host-sampled profiles and oversample-and-select (issue 8).

LLM-written survey rows drift from the real distributions: cluster and demographic shares move,
answers pile on the modal option, spread shrinks. The calibrated mode keeps the LLM's job — writing
coherent respondents — and lets the host guarantee the distributions it knows:

1. **Profiles.** For every requested row the host draws the cluster label from the real cluster
   shares and a few *anchor* variables (by default the wave's demographics, e.g. age band and sex)
   jointly from that cluster's empirical distribution: the anchor tuple of a random real respondent
   of that cluster — never a whole real row. Continuous anchors are given as a band (``age
   35-44``). The prompt asks the LLM to complete exactly these profiles, and a returned row that
   does not keep its profile is rejected, counted and asked for again (:class:`CalibratedPrompt`).
   For schema-guided decoders (local models) each call's response schema also fixes the profiles
   (:func:`profiled_batch_model`); hosted models keep one shared schema for prompt caching.
   In the full mode a profile also carries the *missingness pattern* of the same real
   respondent (which items it left unanswered): the model answers only the other items, so the
   rows' item non-response follows the cluster's real patterns, not the model's habit of
   answering everything.
2. **Oversample and select.** The loop collects ``oversample x N`` valid rows, sampled at
   :data:`POOL_TEMPERATURE` unless the user set a temperature; :func:`select_rows`
   then keeps exactly ``N`` whole rows (cells of different rows are never mixed) whose per-cluster
   marginal distribution of every variable — NA included where the mode allows NA — is as close as
   possible to the real one, with cluster counts matched to the real shares. Rows identical to a
   real row or a few-shot example are used only when a cluster has no other rows left.

Everything is seeded and deterministic. Functions here are pure (data frames in, data frames and
numbers out) except :class:`CalibratedPrompt`, which keeps the books of which profile each call
was asked to complete.
"""

from __future__ import annotations

from panelsynth.calibrate.profiles import (
    AGE_BAND_EDGES,
    N_QUANTILE_BANDS,
    Band,
    Profile,
    ProfileDesign,
    allocate,
    anchor_bands,
    default_anchors,
    profile_first,
    resolve_anchors,
)
from panelsynth.calibrate.prompt import (
    PATTERN_RULE,
    PROFILE_RULE,
    CalibratedPrompt,
    add_profile_rule,
    profiled_batch_model,
)
from panelsynth.calibrate.select import (
    Selection,
    select_rows,
)
from panelsynth.calibrate.setup import (
    CalibrationSetup,
    setup_calibration,
)
from panelsynth.calibrate.targets import (
    N_MATCH_BINS,
    Targets,
    build_targets,
    marginal_distance,
)

__all__ = [
    "AGE_BAND_EDGES",
    "Band",
    "CalibratedPrompt",
    "CalibrationSetup",
    "N_MATCH_BINS",
    "N_QUANTILE_BANDS",
    "PATTERN_RULE",
    "PROFILE_RULE",
    "Profile",
    "ProfileDesign",
    "Selection",
    "Targets",
    "add_profile_rule",
    "allocate",
    "anchor_bands",
    "build_targets",
    "default_anchors",
    "marginal_distance",
    "profile_first",
    "profiled_batch_model",
    "resolve_anchors",
    "select_rows",
    "setup_calibration",
]
