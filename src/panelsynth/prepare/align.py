"""Cluster labels with the same meaning in every wave, and each respondent's previous label.

Labels out of a fit are arbitrary. Wave by wave, in study order, :class:`Alignment`:

1. orders the classes: by ``clustering.orientation_item`` where the wave has it (the more
   positive class is cluster 1), otherwise by matching the class profiles to the previous wave's
   (items both share; binned continuous items left out), and for the first wave without an
   orientation item by the higher average answers;
2. links respondents to the previous wave by their id (``prev_cluster``; empty for those who did
   not take part in it) and counts the transitions (``Prepare/transitions.csv``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from panelsynth.config import PanelsynthConfig
from panelsynth.prepare.clustering import (
    ClusterFit,
    EncodedItems,
    class_means,
    match_profiles,
    orientation_order,
    profiles_by_item,
    reference_order,
)
from panelsynth.prepare.raw import id_keys

TRANSITION_COLUMNS = ["from_wave", "to_wave", "from_cluster", "to_cluster", "n", "share_of_from"]


@dataclass
class Link:
    """A wave's link to the previous one: each respondent's previous label (``None`` for the
    first wave) and how many respondents took part in both."""

    prev_labels: pd.Series | None = None
    n_linked: int = 0


@dataclass
class Alignment:
    """The waves aligned so far (fed in study order)."""

    cfg: PanelsynthConfig
    warn: Callable[[str], None]
    orientation_seen: bool = False
    transitions: list[pd.DataFrame] = field(default_factory=list)
    _prev_ids: pd.Series | None = None
    _prev_labels: np.ndarray | None = None
    _prev_profiles: dict[str, pd.DataFrame] | None = None
    _prev_wave: str | None = None

    def order(
        self, wave: str, source: str, frame: pd.DataFrame, enc: EncodedItems, fit: ClusterFit
    ) -> tuple[ClusterFit, str]:
        """The fit with its classes in the aligned order, and how that order was chosen."""
        cc = self.cfg.clustering
        orient = cc.orientation_item
        if orient and orient in frame.columns and frame[orient].notna().any():
            self.orientation_seen = True
            means = class_means(frame, orient, fit.labels, cc.k)
            order = orientation_order(means, cc.orientation_higher_is_positive)
            how = f"orientation item {orient!r}"
        else:
            order = None
            if orient:
                self.warn(
                    f"wave {wave}: orientation item {orient!r} has no answers in {source} — "
                    f"labels matched to the previous wave's profiles instead"
                )
            if self._prev_profiles is not None:
                cur = profiles_by_item(_profile_subset(enc), fit.labels, cc.k)
                order = match_profiles(self._prev_profiles, cur)
                how = f"profiles matched to wave {self._prev_wave}"
            if order is None:
                order = reference_order(enc, fit.labels, cc.k)
                how = "higher average answers = cluster 1 (set clustering.orientation_item)"
                if self._prev_profiles is not None:
                    self.warn(f"wave {wave} shares no item with wave {self._prev_wave}; {how}")
        fit = fit.permute(order)
        self._prev_profiles = profiles_by_item(_profile_subset(enc), fit.labels, cc.k)
        return fit, how

    def link(self, wave: str, ids: pd.Series, labels: np.ndarray) -> Link:
        """Each respondent's label in the previous wave; ``labels`` (1..k) become the previous
        labels of the next wave."""
        out = Link()
        if self._prev_ids is not None and self._prev_labels is not None:
            lookup = pd.Series(self._prev_labels, index=id_keys(self._prev_ids))
            out.prev_labels = pd.Series(id_keys(ids), index=ids.index).map(lookup).astype("Int64")
            out.n_linked = int(out.prev_labels.notna().sum())
            self.transitions.append(
                transition_table(
                    self._prev_wave,
                    wave,
                    self._prev_ids,
                    self._prev_labels,
                    ids,
                    labels,
                    self.cfg.clustering.k,
                )
            )
        self._prev_ids, self._prev_labels, self._prev_wave = ids, labels, wave
        return out

    def transition_counts(self) -> pd.DataFrame:
        """Every transition between consecutive waves (``Prepare/transitions.csv``)."""
        if not self.transitions:
            return pd.DataFrame(columns=TRANSITION_COLUMNS)
        return pd.concat(self.transitions, ignore_index=True)


def _profile_subset(enc: EncodedItems) -> EncodedItems:
    """Items whose answer categories are comparable across waves (not binned continuous)."""
    keep = [j for j, k in enumerate(enc.kinds) if k != "continuous"]
    return EncodedItems(
        [enc.items[j] for j in keep],
        enc.codes[:, keep],
        [enc.levels[j] for j in keep],
        [enc.kinds[j] for j in keep],
    )


def transition_table(
    w_from: str | None,
    w_to: str,
    ids_from: pd.Series,
    lab_from: np.ndarray,
    ids_to: pd.Series,
    lab_to: np.ndarray,
    k: int,
) -> pd.DataFrame:
    """Counts of (previous cluster, current cluster), with ``absent`` for entries and exits."""
    a = pd.Series(lab_from, index=id_keys(ids_from), name="from")
    b = pd.Series(lab_to, index=id_keys(ids_to), name="to")
    both = pd.concat([a, b], axis=1)
    fr = both["from"].fillna(0).astype(int).to_numpy()  # 0 = absent
    to = both["to"].fillna(0).astype(int).to_numpy()
    grid = np.bincount(fr * (k + 1) + to, minlength=(k + 1) ** 2).reshape(k + 1, k + 1)
    cats = [str(c) for c in range(1, k + 1)] + ["absent"]
    order = [*range(1, k + 1), 0]
    counts = pd.DataFrame(grid[np.ix_(order, order)], index=cats, columns=cats)
    rows = []
    for f in cats:
        total = int(counts.loc[f].sum())
        for t in cats:
            if f == "absent" and t == "absent":
                continue
            n = int(counts.loc[f, t])
            rows.append(
                {
                    "from_wave": w_from,
                    "to_wave": w_to,
                    "from_cluster": f,
                    "to_cluster": t,
                    "n": n,
                    "share_of_from": round(n / total, 4) if total else 0.0,
                }
            )
    return pd.DataFrame(rows, columns=TRANSITION_COLUMNS)
