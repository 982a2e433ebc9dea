"""Respondent-level persistence of the demo's answers across waves (issue 19).

Each respondent ``i`` and item ``j`` carry a standard-normal latent score

    z[i, j, t] = sqrt(share) * u[i, j] + sqrt(1 - share) * e[i, j, t],
    e[i, j, 1] ~ N(0, 1),   e[i, j, t] = ar * e[i, j, t - 1] + sqrt(1 - ar**2) * eps[i, j, t],

a person effect ``u`` (drawn once) plus a stationary AR(1) component that evolves every wave
(also while the respondent is absent or the item is not asked). The answer of wave ``t`` is the
code whose class-conditional cumulative probability interval holds ``Phi(z)`` under the
respondent's class of that wave (an ordered probit with class-dependent thresholds). The latent
scores are independent of the classes, of participation and across items, so

* given the class of a wave, the answer has exactly the class-conditional pmf of the item and a
  wave's answers stay independent of each other: the per-wave Bayes classifier is unchanged;
* two answers of the same item ``lag`` waves apart have latent correlation
  ``share + (1 - share) * ar**lag``: a person answers like they answered before, on top of what
  their class path implies.

*Identity items* (habits a person identifies with, like party identification in an election
panel) get a far higher persistence than the attitude items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

#: Items of the default demo treated as identity items: the vaccination habit and its history.
IDENTITY_ITEMS: tuple[str, ...] = ("howoftenvaccine", "howlongagovaccine")


@dataclass(frozen=True)
class Persistence:
    """Parameters of the latent person effect + AR(1) process of every item.

    Attributes:
        person_share: Variance share of the person effect for attitude items.
        ar: Wave-to-wave autocorrelation of the remaining component for attitude items.
        identity_items: Names of the identity items.
        identity_person_share: Variance share of the person effect for identity items.
        identity_ar: Autocorrelation of the remaining component for identity items.
    """

    person_share: float = 0.3
    ar: float = 0.45
    identity_items: tuple[str, ...] = IDENTITY_ITEMS
    identity_person_share: float = 0.95
    identity_ar: float = 0.9

    def __post_init__(self) -> None:
        for name in ("person_share", "ar", "identity_person_share", "identity_ar"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"persistence {name} must be in [0, 1), not {value}")

    def item_params(self, item: str) -> tuple[float, float]:
        """``(person_share, ar)`` of an item."""
        if item in self.identity_items:
            return self.identity_person_share, self.identity_ar
        return self.person_share, self.ar

    def latent_corr(self, item: str, lag: int) -> float:
        """Correlation of the item's latent scores ``lag`` waves apart."""
        share, ar = self.item_params(item)
        return 1.0 if lag == 0 else share + (1.0 - share) * ar ** abs(int(lag))

    def to_dict(self, items: list[str]) -> dict:
        """JSON-ready description: the model and, per item, its parameters and lag-1 correlation."""
        return {
            "model": "z = sqrt(person_share) * person effect + sqrt(1 - person_share) * AR(1) "
            "component (stationary N(0, 1), coefficient ar), per respondent and item; the answer "
            "is the code whose class-conditional cumulative interval holds Phi(z)",
            "identity_items": [i for i in items if i in self.identity_items],
            "items": {
                name: {
                    "person_share": round(self.item_params(name)[0], 6),
                    "ar": round(self.item_params(name)[1], 6),
                    "latent_corr_lag1": round(self.latent_corr(name, 1), 6),
                }
                for name in items
            },
        }


class LatentScores:
    """The latent scores of every respondent and item, advanced one wave at a time."""

    def __init__(self, persistence: Persistence, items: list[str], n: int, seed: int) -> None:
        # The person effects come from their own stream, so the main stream of the simulator
        # (classes, participation, missingness, outcome) is the same with or without persistence.
        rng = np.random.default_rng([abs(int(seed)), 19])
        self.items = list(items)
        params = [persistence.item_params(name) for name in self.items]
        self._share = np.array([p[0] for p in params])
        self._ar = np.array([p[1] for p in params])
        self._person = rng.standard_normal((n, len(self.items)))
        self._e: np.ndarray | None = None

    def advance(self, uniforms: list[np.ndarray]) -> np.ndarray:
        """Next wave's scores, shape ``(n, items)``; ``uniforms`` are the innovations as U(0, 1)."""
        eps = ndtri(np.clip(np.column_stack(uniforms), 1e-15, 1.0 - 1e-15))
        if self._e is None:
            self._e = eps
        else:
            self._e = self._ar * self._e + np.sqrt(1.0 - self._ar**2) * eps
        return np.sqrt(self._share) * self._person + np.sqrt(1.0 - self._share) * self._e


def codes_from_scores(z: np.ndarray, is_first: np.ndarray, pmf: np.ndarray) -> np.ndarray:
    """Codes ``1..K``: the interval of pmf row 0 (class 1) or row 1 holding ``Phi(z)``."""
    u = ndtr(z)
    cdf = np.cumsum(pmf, axis=1)
    codes = np.ones(z.size, dtype=np.int64)
    for k in range(pmf.shape[1] - 1):
        codes += u >= np.where(is_first, cdf[0, k], cdf[1, k])
    return codes


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(96)
_BOUND = 9.0


def _cuts(pmf_row: np.ndarray) -> np.ndarray:
    """Latent thresholds of one class: ``-inf, ..., +inf`` clipped to +-9, length ``K + 1``."""
    inner = ndtri(np.clip(np.cumsum(pmf_row)[:-1], 0.0, 1.0))
    return np.clip(np.concatenate([[-_BOUND], inner, [_BOUND]]), -_BOUND, _BOUND)


def pair_table(pmf: np.ndarray, rho: float) -> np.ndarray:
    """``P(x_s = a, x_t = b | class_s, class_t)``, shape ``(2, 2, K, K)``, for latent corr ``rho``.

    Exact up to quadrature error (96-point Gauss-Legendre per answer interval); each table is
    rescaled so that its margins are the class-conditional pmfs to machine precision.
    """
    k = pmf.shape[1]
    s = np.sqrt(max(1.0 - rho * rho, 1e-12))
    out = np.zeros((2, 2, k, k))
    for cs in range(2):
        a = _cuts(pmf[cs])
        for ct in range(2):
            b = _cuts(pmf[ct])
            for i in range(k):
                lo, hi = a[i], a[i + 1]
                if hi <= lo:
                    continue
                x = (hi - lo) / 2.0 * _NODES + (hi + lo) / 2.0
                w = (hi - lo) / 2.0 * _WEIGHTS * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
                cond = ndtr((b[None, :] - rho * x[:, None]) / s)  # (nodes, K + 1)
                cond[:, 0], cond[:, -1] = 0.0, 1.0
                out[cs, ct, i] = w @ np.diff(cond, axis=1)
            out[cs, ct] = _rake(np.clip(out[cs, ct], 0.0, None), pmf[cs], pmf[ct])
    return out


def _rake(table: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Iterative proportional fitting of ``table`` to the margins ``rows`` and ``cols``."""
    for _ in range(50):
        r = table.sum(axis=1)
        table = table * np.divide(rows, r, out=np.zeros_like(r), where=r > 0)[:, None]
        c = table.sum(axis=0)
        table = table * np.divide(cols, c, out=np.zeros_like(c), where=c > 0)[None, :]
    return table


def wave_pair_stability(
    before: pd.DataFrame, after: pd.DataFrame, items: list[str], id_column: str
) -> dict[str, dict[str, float | int]]:
    """Per item asked in both waves: over respondents who answered it in both, ``n``, the share of
    unchanged answers and the Spearman correlation (answers are codes ``>= 1``; missing codes
    are negative)."""
    both = before.merge(after, on=id_column, suffixes=("_a", "_b"))
    out: dict[str, dict[str, float | int]] = {}
    for item in items:
        if f"{item}_a" not in both.columns or f"{item}_b" not in both.columns:
            continue
        x, y = both[f"{item}_a"].to_numpy(), both[f"{item}_b"].to_numpy()
        ok = (x > 0) & (y > 0)
        if ok.sum() < 3:
            continue
        rx = pd.Series(x[ok]).rank().to_numpy()
        ry = pd.Series(y[ok]).rank().to_numpy()
        rho = float(np.corrcoef(rx, ry)[0, 1]) if rx.std() > 0 and ry.std() > 0 else float("nan")
        out[item] = {
            "n": int(ok.sum()),
            "unchanged": round(float(np.mean(x[ok] == y[ok])), 6),
            "spearman": round(rho, 6),
        }
    return out
