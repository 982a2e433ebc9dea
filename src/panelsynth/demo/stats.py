"""Small statistics of the demo simulator: ARI, mutual information, a stable posterior."""

from __future__ import annotations

import numpy as np


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings (same as scikit-learn's, without importing it)."""
    a = np.asarray(a)
    b = np.asarray(b)
    n = a.size
    if n < 2:
        return 1.0
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    cont = np.bincount(ai * (bi.max() + 1) + bi, minlength=(ai.max() + 1) * (bi.max() + 1))

    def comb2(x: np.ndarray) -> float:
        x = x.astype(np.float64)
        return float(np.sum(x * (x - 1.0) / 2.0))

    index = comb2(cont)
    sum_a = comb2(np.bincount(ai))
    sum_b = comb2(np.bincount(bi))
    total = n * (n - 1) / 2.0
    expected = sum_a * sum_b / total
    maximum = (sum_a + sum_b) / 2.0
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


def mutual_information(prior1: float, table: np.ndarray) -> float:
    """MI (nats) of the class and a variable whose class-conditional pmfs are ``table`` (2, m)."""
    prior = np.array([prior1, 1.0 - prior1])
    joint = table * prior[:, None]
    marg = joint.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / (prior[:, None] * marg[None, :])), 0.0)
    return float(terms.sum())


def posterior_class1(loglik: np.ndarray) -> np.ndarray:
    """P(class 1 | data) from per-class log-likelihoods, shape ``(n, 2)``, computed stably."""
    diff = loglik[:, 1] - loglik[:, 0]
    return 1.0 / (1.0 + np.exp(np.clip(diff, -700.0, 700.0)))
