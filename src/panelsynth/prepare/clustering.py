"""Step 1a: cluster respondents of a wave into latent classes and align labels across waves.

Encoding the items and the estimators (LCA by EM or StepMix, the k-modes and k-means fallbacks,
and why: LCA with FIML, the ``auto`` treatment of missing answers) live in :mod:`.lca`; this
module fits one wave (:func:`fit_clusters`, the BIC table), aligns labels and measures agreement.

Fallbacks (``method``)
----------------------
- ``kmodes``: k-modes (simple-matching distance, Huang-style random initial modes, ``n_init``
  restarts) on answers where missing values are imputed by the item's mode.
- ``kmeans``: scikit-learn k-means on items scaled to [0, 1] (categorical items one-hot), missing
  values imputed by the item's median (mode for categorical items).
Both give hard assignments: their "posterior" is 0/1, so average posterior and entropy are 1 by
construction. The BIC table of the fit report always comes from LCA, whatever the method.

Label alignment
---------------
Cluster numbers out of any fit are arbitrary. :func:`orientation_order` makes the class with the
more positive answers on an orientation item cluster 1; :func:`match_profiles` instead permutes the
classes of a wave so that their answer profiles (class-conditional response distributions on the
items both waves share) are closest to the previous wave's (Hungarian assignment on the mean total
variation distance). :func:`reference_order` orders the classes of the first wave when there is no
orientation item: the class with the higher average standardised answer becomes 1.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from panelsynth.errors import ConfigError, DataError
from panelsynth.prepare.lca import (
    AUTO_MISSING_MAX_SHARE,
    DEFAULT_BIC_KS,
    DEFAULT_BIC_MAX_ROWS,
    DEFAULT_MAX_FIT_ROWS,
    EncodedItems,
    Engine,
    ItemKind,
    LCAModel,
    Method,
    MissingMode,
    encode_items,
    fit_lca,
    fit_lca_stepmix,
    impute_modes,
    kmeans_matrix,
    kmodes,
    kmodes_predict,
)

__all__ = [
    "AUTO_MISSING_MAX_SHARE",
    "ClusterFit",
    "EncodedItems",
    "Engine",
    "ItemKind",
    "LCAModel",
    "Method",
    "MissingMode",
    "adjusted_rand_index",
    "bic_table",
    "class_means",
    "class_profiles",
    "encode_items",
    "fit_clusters",
    "fit_lca",
    "fit_lca_stepmix",
    "match_profiles",
    "mutual_information",
    "orientation_order",
    "profile_distance",
    "profiles_by_item",
    "reference_order",
    "relative_entropy",
]

log = logging.getLogger("panelsynth")


# ----------------------------------------------------------------------------------------------
# One wave
# ----------------------------------------------------------------------------------------------
@dataclass
class ClusterFit:
    """The clustering of one wave (labels are zero-based until aligned).

    Attributes:
        method: ``lca``, ``kmodes`` or ``kmeans``.
        k: Number of clusters.
        labels: Zero-based cluster of every respondent.
        posterior: ``(n, k)`` posterior probabilities (0/1 for the hard fallbacks).
        bic: BIC of latent class models with ``k`` classes, for every ``k`` asked.
        bic_n: Rows the BICs were computed on.
        n_fit: Rows the model was fitted on (a subsample when the wave is large).
        loglik: Log-likelihood of the LCA fit on those rows (``None`` for the fallbacks).
        converged: Whether EM converged (always ``True`` for the fallbacks).
        engine: ``numpy`` or ``stepmix`` (LCA) or the fallback's name.
        model: The fitted latent class model, when the method is LCA.
    """

    method: str
    k: int
    labels: np.ndarray
    posterior: np.ndarray
    bic: dict[int, float] = field(default_factory=dict)
    bic_n: int = 0
    n_fit: int = 0
    loglik: float | None = None
    converged: bool = True
    engine: str = "numpy"
    model: LCAModel | None = None

    def permute(self, order: Sequence[int]) -> ClusterFit:
        """Relabel: new cluster ``i`` is old cluster ``order[i]``."""
        order = np.asarray(order, dtype=int)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        model = self.model
        if model is not None:
            model = LCAModel(
                model.weights[order],
                model.pis[order],
                model.n_levels,
                model.loglik,
                model.n_fit,
                model.n_iter,
                model.converged,
            )
        return ClusterFit(
            self.method,
            self.k,
            inverse[self.labels],
            self.posterior[:, order],
            dict(self.bic),
            self.bic_n,
            self.n_fit,
            self.loglik,
            self.converged,
            self.engine,
            model,
        )

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.k)

    def average_posterior(self) -> np.ndarray:
        """Mean posterior of its own class among the respondents assigned to each class."""
        out = np.full(self.k, np.nan)
        for c in range(self.k):
            m = self.labels == c
            if m.any():
                out[c] = float(self.posterior[m, c].mean())
        return out

    def relative_entropy(self) -> float:
        """Scaled relative entropy (1 = perfectly separated classes, 0 = no separation)."""
        return relative_entropy(self.posterior)


def relative_entropy(posterior: np.ndarray) -> float:
    """``1 - sum(-p log p) / (n log k)`` (Ramaswamy et al., 1993); NaN for one class."""
    n, k = posterior.shape
    if k < 2 or n == 0:
        return float("nan")
    p = np.clip(posterior, 1e-15, 1.0)
    return float(1.0 - (-(p * np.log(p)).sum()) / (n * np.log(k)))


def _subsample(n: int, size: int | None, rng: np.random.Generator) -> np.ndarray | None:
    if size is None or n <= size:
        return None
    return np.sort(rng.choice(n, size=size, replace=False))


def fit_clusters(
    enc: EncodedItems,
    *,
    k: int = 2,
    method: Method = "lca",
    seed: int = 42,
    n_init: int = 4,
    max_fit_rows: int | None = DEFAULT_MAX_FIT_ROWS,
    bic_ks: Sequence[int] = DEFAULT_BIC_KS,
    bic_max_rows: int | None = DEFAULT_BIC_MAX_ROWS,
    engine: Engine = "numpy",
    missing: MissingMode = "auto",
) -> ClusterFit:
    """Cluster the respondents of one wave.

    Args:
        enc: Encoded items of the wave.
        k: Number of clusters.
        method: ``lca`` (latent class analysis), or the ``kmodes``/``kmeans`` fallbacks.
        seed: Seed of the subsamples and of the random starts; same seed, same labels.
        n_init: Random restarts.
        max_fit_rows: Fit on a seeded subsample of at most this many rows, then assign everyone
            (``None``: always fit on all rows).
        bic_ks: Class counts whose LCA BIC goes into the fit report (empty: none).
        bic_max_rows: The BIC table is computed on a seeded subsample of at most this many rows
            (all BICs of a wave on the same rows, so they are comparable).
        engine: LCA estimator, ``numpy`` (vectorised EM) or ``stepmix``.
        missing: ``fiml`` (skipped answers add no likelihood term), ``category`` (a skipped
            answer is its own response category) or ``auto`` (``category`` for items missing
            for at most :data:`AUTO_MISSING_MAX_SHARE` of the respondents, ``fiml`` for the rest).

    Returns:
        Zero-based labels and posteriors of every respondent, BIC per class count.
    """
    if enc.n < k:
        raise DataError(
            f"{enc.n} respondents cannot form {k} clusters — set clustering.k to at most "
            f"{enc.n}, or add respondents"
        )
    if missing == "category":
        enc = enc.with_missing_category()
    elif missing == "auto":
        enc = enc.with_missing_category(AUTO_MISSING_MAX_SHARE)
    rng = np.random.default_rng(seed)
    fit_rows = _subsample(enc.n, max_fit_rows, rng)
    fit_enc = enc if fit_rows is None else enc.subset(fit_rows)
    if fit_rows is not None:
        log.debug("fitting on a seeded subsample of %d of %d respondents", fit_enc.n, enc.n)
    fitter = fit_lca_stepmix if engine == "stepmix" else fit_lca

    if method == "lca":
        main = fitter(fit_enc, k, seed=seed, n_init=n_init)
        posterior = main.predict_proba(enc.codes)
        fit = ClusterFit(
            "lca",
            k,
            posterior.argmax(axis=1),
            posterior,
            n_fit=fit_enc.n,
            loglik=main.loglik,
            converged=main.converged,
            engine=engine,
            model=main,
        )
    elif method == "kmodes":
        codes = impute_modes(fit_enc)
        best = None
        for _ in range(max(1, n_init)):
            _, modes, cost = kmodes(codes, k, rng)
            if best is None or cost < best[1]:
                best = (modes, cost)
        labels = kmodes_predict(impute_modes(enc), best[0])
        fit = ClusterFit("kmodes", k, labels, np.eye(k)[labels], n_fit=fit_enc.n, engine="kmodes")
    elif method == "kmeans":
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=k, n_init=max(1, n_init), random_state=seed)
        km.fit(kmeans_matrix(fit_enc))
        labels = km.predict(kmeans_matrix(enc))
        fit = ClusterFit("kmeans", k, labels, np.eye(k)[labels], n_fit=fit_enc.n, engine="kmeans")
    else:  # config validation prevents it; reachable from the Python API
        raise ConfigError(
            f"unknown clustering method {method!r} — set clustering.method to lca, kmodes or kmeans"
        )

    fit.bic, fit.bic_n = bic_table(
        enc,
        bic_ks,
        seed=seed,
        n_init=n_init,
        max_rows=bic_max_rows,
        engine=engine,
        reuse=fit.model if fit.model is not None and fit_rows is None else None,
    )
    empty = np.flatnonzero(fit.sizes == 0)
    if len(empty):
        log.warning("clustering left %d of %d classes empty", len(empty), k)
    return fit


def bic_table(
    enc: EncodedItems,
    ks: Sequence[int],
    *,
    seed: int = 42,
    n_init: int = 4,
    max_rows: int | None = DEFAULT_BIC_MAX_ROWS,
    engine: Engine = "numpy",
    reuse: LCAModel | None = None,
) -> tuple[dict[int, float], int]:
    """BIC of latent class models with each of ``ks`` classes, all on the same rows.

    Args:
        enc: Encoded items.
        ks: Class counts.
        seed: Seed of the subsample and the random starts.
        n_init: Restarts (at most 2 for class counts other than ``reuse``'s).
        max_rows: Seeded subsample size (``None``: all rows).
        engine: LCA estimator.
        reuse: A model already fitted on all rows of ``enc`` (its BIC is reused).

    Returns:
        ``{k: BIC}`` and the number of rows the BICs were computed on.
    """
    if not ks:
        return {}, 0
    rows = _subsample(enc.n, max_rows, np.random.default_rng(seed + 7919))
    sub = enc if rows is None else enc.subset(rows)
    if rows is not None:
        reuse = None
    fitter = fit_lca_stepmix if engine == "stepmix" else fit_lca
    out: dict[int, float] = {}
    for kk in sorted(set(ks)):
        if kk > sub.n:
            continue
        if reuse is not None and reuse.k == kk:
            out[kk] = reuse.bic
            continue
        model = fitter(sub, kk, seed=seed + kk, n_init=min(n_init, 2), tol=1e-5, max_iter=150)
        out[kk] = model.bic
    return out, sub.n


# ----------------------------------------------------------------------------------------------
# Profiles and alignment
# ----------------------------------------------------------------------------------------------
def class_profiles(enc: EncodedItems, labels: np.ndarray, k: int) -> list[np.ndarray]:
    """Per item, the ``(k, L)`` answer distribution of each class over the observed answers."""
    out = []
    for j, lv in enumerate(enc.levels):
        L = len(lv)
        col = enc.codes[:, j]
        obs = col >= 0
        counts = np.zeros((k, L))
        np.add.at(counts, (labels[obs], col[obs]), 1.0)
        tot = counts.sum(axis=1, keepdims=True)
        out.append(np.divide(counts, tot, out=np.full_like(counts, 1.0 / L), where=tot > 0))
    return out


def class_means(frame: pd.DataFrame, item: str, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean numeric answer on ``item`` in each class (NaN where a class has no answer)."""
    vals = pd.to_numeric(frame[item], errors="coerce").to_numpy(dtype=float)
    out = np.full(k, np.nan)
    for c in range(k):
        v = vals[(labels == c) & ~np.isnan(vals)]
        if len(v):
            out[c] = float(v.mean())
    return out


def orientation_order(means: np.ndarray, higher_is_positive: bool = True) -> list[int]:
    """Order classes so the most positive on the orientation item comes first (cluster 1)."""
    key = np.where(np.isnan(means), -np.inf if higher_is_positive else np.inf, means)
    order = np.argsort(-key if higher_is_positive else key, kind="stable")
    return [int(i) for i in order]


def reference_order(enc: EncodedItems, labels: np.ndarray, k: int) -> list[int]:
    """Order the classes of the first wave without an orientation item.

    The class with the higher average standardised answer over the ordinal/binary/continuous
    items comes first (categorical items carry no direction and are ignored).
    """
    scores = np.zeros(k)
    used = 0
    for j, kind in enumerate(enc.kinds):
        if kind == "categorical":
            continue
        col = enc.codes[:, j].astype(float)
        obs = col >= 0
        if obs.sum() < 2 or col[obs].std() == 0:
            continue
        z = (col - col[obs].mean()) / col[obs].std()
        for c in range(k):
            m = obs & (labels == c)
            if m.any():
                scores[c] += z[m].mean()
        used += 1
    return [int(i) for i in np.argsort(-scores, kind="stable")]


def profiles_by_item(enc: EncodedItems, labels: np.ndarray, k: int) -> dict[str, pd.DataFrame]:
    """Per item, the answer distribution of each class (rows: classes, columns: answer values)."""
    out: dict[str, pd.DataFrame] = {}
    for item, lv, prof in zip(enc.items, enc.levels, class_profiles(enc, labels, k), strict=True):
        out[item] = pd.DataFrame(prof, columns=[str(v) for v in lv])
    return out


def profile_distance(
    prev: dict[str, pd.DataFrame], cur: dict[str, pd.DataFrame]
) -> tuple[np.ndarray, list[str]]:
    """``(k_prev, k_cur)`` mean total-variation distance over the items both waves share.

    Answer values seen in only one wave count as probability 0 in the other.
    """
    common = [i for i in prev if i in cur]
    kp = len(next(iter(prev.values()))) if prev else 0
    kc = len(next(iter(cur.values()))) if cur else 0
    dist = np.zeros((kp, kc))
    for item in common:
        cols = list(dict.fromkeys([*prev[item].columns, *cur[item].columns]))
        a = prev[item].reindex(columns=cols, fill_value=0.0).to_numpy()
        b = cur[item].reindex(columns=cols, fill_value=0.0).to_numpy()
        dist += 0.5 * np.abs(a[:, None, :] - b[None, :, :]).sum(axis=2)
    if common:
        dist /= len(common)
    return dist, common


def match_profiles(prev: dict[str, pd.DataFrame], cur: dict[str, pd.DataFrame]) -> list[int] | None:
    """Permutation of the current classes that best matches the previous wave's profiles.

    Returns ``order`` such that new cluster ``i`` is current class ``order[i]`` (Hungarian
    assignment on :func:`profile_distance`), or ``None`` when the waves share no item.
    """
    from scipy.optimize import linear_sum_assignment

    dist, common = profile_distance(prev, cur)
    if not common:
        return None
    rows, cols = linear_sum_assignment(dist)
    return [int(c) for _, c in sorted(zip(rows, cols, strict=True))]


# ----------------------------------------------------------------------------------------------
# Association of an item with the labels
# ----------------------------------------------------------------------------------------------
def mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """Mutual information in bits between two integer codings (negative codes = missing).

    Only rows where both are observed count.
    """
    m = (x >= 0) & (y >= 0)
    if m.sum() == 0:
        return 0.0
    xs, ys = x[m], y[m]
    nx, ny = int(xs.max()) + 1, int(ys.max()) + 1
    joint = np.bincount(xs * ny + ys, minlength=nx * ny).reshape(nx, ny).astype(float)
    joint /= joint.sum()
    px = joint.sum(axis=1, keepdims=True)
    py = joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log2(joint[nz] / (px @ py)[nz])).sum())


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings (equal to scikit-learn's ``adjusted_rand_score``)."""
    a, b = np.asarray(a), np.asarray(b)
    n = a.size
    if n < 2:
        return 1.0
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    nb = int(bi.max()) + 1
    cont = np.bincount(ai * nb + bi, minlength=(int(ai.max()) + 1) * nb).astype(float)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    index = pairs(cont)
    sum_a = pairs(np.bincount(ai).astype(float))
    sum_b = pairs(np.bincount(bi).astype(float))
    expected = sum_a * sum_b / (n * (n - 1) / 2)
    maximum = (sum_a + sum_b) / 2
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))
