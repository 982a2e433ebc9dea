"""The evaluation's protocol: the candidates, the caps, the protocol text written into every
metrics JSON (:data:`PROTOCOL`) and the flat summary figures (:data:`SUMMARY_METRICS`)."""

from __future__ import annotations

from typing import Any

from panelsynth.evaluate.membership import MIA_MAX_ROWS
from panelsynth.evaluate.privacy import DCR_MAX_ROWS
from panelsynth.evaluate.sdm import QUALITY_MAX_ROWS
from panelsynth.evaluate.utility import C2ST_MAX_ROWS

#: Rows per real half the real-vs-real reference and the baselines use (a seeded random sample of
#: each half above it). The reference is a sampling-noise floor: two independent samples of h rows
#: differ by noise of variance ~ 2/h, while the LLM output (m rows) scored against the full wave
#: (n rows) carries noise ~ 1/m + 1/n. As long as h >= 2m the capped floor is no noisier than the
#: synthetic score it is read against (a conservative bar): 2,000 rows per half cover m up to
#: 1,000 (the reference study generates 700 per wave). Larger halves would only sharpen a floor
#: that is already tighter than the synthetic score's own noise, at a cost that grows with the rows
#: (the CART baseline, the classifiers). Below the cap (waves of up to 4,000 respondents) the
#: halves are used whole, as SPEC §3.6 describes.
REFERENCE_MAX_ROWS = 2_000
#: Seeded splits the real-vs-real floor is scored on (its spread is reported; issue 12 item 10).
FLOOR_REPEATS = 5

SYNTHETIC = "synthetic"
HOLDOUT = "_real_holdout"
MARGINAL = "_baseline_marginal"
CART = "_baseline_cart"
REFERENCES: tuple[str, ...] = (HOLDOUT, MARGINAL, CART)
CANDIDATES: tuple[str, ...] = (SYNTHETIC, *REFERENCES)

PROTOCOL: dict[str, Any] = {
    "split": "The real wave R is split at random, stratified by cluster, into halves A and B of "
    "equal size (one row dropped when the count is odd). Above caps.reference_rows_per_half "
    "rows per half, the real-half reference and the baselines use a random sample of that many "
    "rows of each half (see rows.reference_sampling), and so do the LLM output's size-matched "
    "copy share and its TSTR test rows (sampled B); its exact copies are still checked against "
    "every real row, and its DCR against every real row with the holdout's DCR measured "
    "against the whole half B.",
    SYNTHETIC: "LLM output S. Fidelity (shapes, trends, C2ST, per cluster, NA) against the full "
    "wave R, as in the reference study; exact copies against R and, size-matched to "
    "the holdout, against B; DCR against R (conservative: twice the reference rows of "
    "the holdout's figure, so copies of any real row count); TSTR: trained on S, "
    "tested on B.",
    HOLDOUT: "Real-vs-real reference: half A scored as if it were synthetic against half B (same "
    "code). It is the sampling-noise floor: what a second sample of real respondents "
    "scores. TSTR here is train-on-real-test-on-real (trained on A, tested on B).",
    MARGINAL: "Independent per-cluster marginals with NA, fitted on A, |B| rows; fidelity and "
    "TSTR against B; exact copies and DCR against A (its training data).",
    CART: "Sequential CART (synthpop-style donor sampling, min leaf 5), fitted on A, |B| rows; "
    "scored like the marginal baseline.",
    "floor": "The real-half figure is the noise of two independent real samples of n/2 rows "
    "(of caps.reference_rows_per_half rows when n/2 is larger). "
    "For S (m rows) scored against the full wave (n rows) the sampling noise is of the "
    "same size when 1/m + 1/n is close to 4/n (e.g. m = 700, n = 2000); with many more "
    "synthetic rows the floor is conservative. A method fitted on the full wave (as the "
    "LLM prompt's statistics and examples are) can score above the floor in-sample.",
    "size_matching": "The real-half floor and the baselines are scored at the synthetic set's "
    "size: the floor is a random sample of that many rows of half A (all of A when it is "
    "smaller), each baseline draws that many rows (see rows.size_matched). The floor is scored "
    "on several seeded splits (floor_spread: min, max, sd) for Column Shapes, the "
    "gradient-boosting C2ST, cluster shares and transitions and NA shares; its summary figures "
    "are the first split's.",
    "held_out": "Runs made with --holdout are scored against the held-out respondents H (never "
    "seen by steps 1-3) instead of the wave: fidelity and TSTR against H; the baselines are "
    "fitted on the training respondents T the run saw; the floor is a sample of T scored "
    "against H; the DCR ratio compares S's and H's distances to T.",
    "membership_inference": "Distance-based membership inference: the attacker guesses 'member' "
    "when a record's closest candidate row (Gower) is nearer than a threshold. Members: the "
    "few-shot example rows (LLM output; the training respondents when examples are synthetic) or "
    "the rows a baseline was fitted on; non-members: held-out respondents (or the other real "
    "half for baselines). TPR at 1% and 10% FPR (chance 0.01, 0.10) and AUC (chance 0.5).",
    "variance_collapse": "Per item, overall and per cluster: entropy of the answers (NA left "
    "out, continuous items in the real bins) and the modal answer's share, real vs candidate; "
    "an item is collapsed when the candidate's entropy is below half the real one.",
    "caps": {
        "floor_repeats": FLOOR_REPEATS,
        "membership_rows_per_side": MIA_MAX_ROWS,
        "reference_rows_per_half": REFERENCE_MAX_ROWS,
        "c2st_rows_per_side": C2ST_MAX_ROWS,
        "quality_report_rows_per_side": QUALITY_MAX_ROWS,
        "dcr_candidate_rows": DCR_MAX_ROWS,
        "note": "above a cap a seeded random sample is used",
    },
    "diversity": "duplicate share is size-dependent; the holdout figure in the summary is computed "
    "on a random real sample of the synthetic data's size (size-matched).",
    "dcr": "Gower distance over the wave's variables: ordered items scaled by the real range (+1 "
    "when exactly one side is missing), nominal items 0/1, averaged over variables.",
    "privacy_records": "Copies and distances compare the wave's variables (not cluster labels).",
}


#: (key, label, higher_is_better, how to read it) of the flat comparison table.
SUMMARY_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("density_shape", "Column Shapes (sdmetrics)", True),
    ("density_trend", "Column Pair Trends (sdmetrics, thresholded)", True),
    ("density_overall", "Overall quality (sdmetrics)", True),
    ("density_trend_unthresholded", "Pair Trends, every pair (unthresholded)", True),
    ("association_similarity", "Association similarity (Cramér's V / r)", True),
    ("c2st", "C2ST logistic (sdmetrics LogisticDetection)", True),
    ("c2st_gb", "C2ST gradient boosting", True),
    ("cluster_shares", "Cluster shares (1 - TV)", True),
    ("transition_similarity", "prev→current cluster table (1 - TV)", True),
    ("na_share_similarity", "NA shares (1 - mean |Δ|)", True),
    ("na_mean_abs_diff", "NA share mean |Δ|", False),
    ("duplicate_share", "Duplicate rows share", False),
    ("exact_copy_share", "Rows identical to a row of the real wave", False),
    ("exact_copy_share_half", "Rows identical to a row of a real half (size-matched)", False),
    ("example_copy_share", "Rows identical to a few-shot example", False),
    ("dcr_mean", "Mean distance to closest real record", True),
    ("dcr_ratio", "DCR ratio to real holdout (capped at 1)", True),
    ("tstr_auc", "TSTR AUC (holdout: TRTR)", True),
    ("collapsed_item_share", "Items with collapsed variance (entropy < half the real)", False),
    ("modal_share", "Mean share of each item's modal answer", False),
    ("mia_tpr_1pct_fpr", "Membership inference: TPR at 1% FPR (chance 0.01)", False),
    ("mia_tpr_10pct_fpr", "Membership inference: TPR at 10% FPR (chance 0.10)", False),
    ("mia_auc", "Membership inference AUC (chance 0.5)", False),
)
#: Summary figures whose spread over the floor's repeats is reported.
FLOOR_SPREAD_KEYS: frozenset[str] = frozenset(
    {
        "density_shape",
        "c2st_gb",
        "cluster_shares",
        "transition_similarity",
        "na_share_similarity",
    }
)
