"""Per-variable real-vs-synthetic plots (matplotlib, Agg backend: no display, no browser)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from panelsynth.evaluate._io import atomic_write_bytes
from panelsynth.evaluate.columns import EvalColumns
from panelsynth.evaluate.encoding import continuous_edges, discrete_codes

REAL_COLOUR = "#4C72B0"
SYNTH_COLOUR = "#DD8452"
NCOLS = 3


def plot_wave(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    columns: EvalColumns,
    path: Path,
    *,
    title: str,
    shapes: dict[str, float] | None = None,
) -> Path:
    """Write one PNG with a panel per column: shares of each code (or bin), NA as its own bar.

    Bars are shares of *all* rows, so a variable's bars including NA sum to 1 on each side.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cols = list(columns)
    n = max(len(cols), 1)
    ncols = min(NCOLS, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 2.9 * nrows + 0.6), squeeze=False)
    for ax in axes.flat[len(cols) :]:
        ax.set_visible(False)
    for ax, col in zip(axes.flat, cols, strict=False):
        edges = None if col.discrete else continuous_edges(real[col.name])
        (cr, cs), k, labels = discrete_codes(col, [real, synthetic], edges)
        pr = np.bincount(cr, minlength=k) / max(len(cr), 1)
        ps = np.bincount(cs, minlength=k) / max(len(cs), 1)
        if pr[-1] == 0 and ps[-1] == 0:  # no NA on either side: drop the empty NA bar
            pr, ps, labels = pr[:-1], ps[:-1], labels[:-1]
        x = np.arange(len(labels))
        w = 0.4
        ax.bar(x - w / 2, pr, w, label="real", color=REAL_COLOUR)
        ax.bar(x + w / 2, ps, w, label="synthetic", color=SYNTH_COLOUR)
        if labels and labels[-1] == "NA":
            ax.axvline(len(labels) - 1.5, color="#999999", lw=0.8, ls=":")
        ax.set_xticks(x)
        rot = 45 if (len(labels) > 6 or max((len(s) for s in labels), default=0) > 4) else 0
        ax.set_xticklabels(labels, rotation=rot, ha="right" if rot else "center", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylabel("share of rows", fontsize=7)
        kind = col.var_type or col.role
        sub = (
            f" — shape {shapes[col.name]:.2f}"
            if shapes and col.name in shapes and shapes[col.name] == shapes[col.name]
            else ""
        )
        ax.set_title(f"{col.name} ({kind}){sub}", fontsize=8.5)
    handles, lab = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, lab, loc="upper right", fontsize=8, ncol=2)
    fig.suptitle(title, fontsize=10.5, x=0.01, ha="left")
    height = 2.9 * nrows + 0.6
    # fixed margins (tight_layout took half of the plotting time)
    fig.subplots_adjust(
        left=0.06,
        right=0.985,
        bottom=0.75 / height,
        top=1 - 0.75 / height,
        wspace=0.28,
        hspace=0.62,
    )
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=80)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
