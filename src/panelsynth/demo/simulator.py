"""Pure simulation of a FluPaths-like panel (SPEC §7): numpy/pandas only, no files.

Generating process (all parameters are in :class:`SimulationParams`):

* Each respondent has a latent attitude class per wave: 1 = positive towards vaccination,
  2 = negative. Wave 1 draws it from ``initial_class_probs``; later waves follow the Markov chain
  ``transition`` (the latent class keeps evolving while a respondent is absent).
* Unit non-response: after each wave a respondent leaves the panel for good with probability
  ``dropout[class in the previous wave]``; a respondent still in the panel skips a single wave
  with probability ``wave_skip[current class]`` (wave 1 has no skips).
* Items: ordinal answers whose class-conditional distribution is an ordered-logit model (one
  strength per item, so some items separate the classes strongly and some weakly). Answers
  persist within a person (:mod:`panelsynth.demo.persistence`): a latent person effect plus an
  AR(1) component per respondent and item, independent of the classes, is mapped to the codes
  through the current class's cumulative probabilities, so the class-conditional distribution of
  every answer is exactly the ordered-logit one while a person's answers correlate across waves
  (strongly for the identity items). Item non-response is missing not at random: its
  probability depends on the class.
  A missing answer is written as -99 (refused) or -98 (don't know).
* ``age`` (whole years, 18-90, top-coded) and ``sex`` (1 = Male, 2 = Female) are fixed traits of
  a respondent; age depends mildly on the wave-1 class and grows by one year every two waves.
* ``already_vaccinated`` (0 = No, 1 = Yes) is asked from wave ``outcome_from_wave`` on and
  depends on the current class.

Because the process is known, :func:`simulate_panel` also computes the exact Bayes-optimal class
assignment of every observed respondent (posterior under the true parameters given that wave's
answers, missingness pattern, age and outcome, and the wave's class prior among respondents who
take part) — conditionally on the class, the answers of one wave are independent (the latent
scores are independent across items and of the classes), so the posterior is a naive-Bayes
product. Age enters through its exact class-conditional distribution among participants, a
mixture over the wave-1 class computed by a forward recursion. The Bayes assignment uses one
wave's data only; the persistence of answers across waves is not used by it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import ndtr

from panelsynth.demo.persistence import LatentScores, Persistence, codes_from_scores
from panelsynth.demo.stats import adjusted_rand_index, mutual_information, posterior_class1

log = logging.getLogger("panelsynth")

REFUSED = -99
DONT_KNOW = -98
MISSING_CODES: tuple[int, int] = (REFUSED, DONT_KNOW)
CLASS_LABELS: dict[int, str] = {
    1: "positive towards vaccination",
    2: "negative towards vaccination",
}
AGE_MIN, AGE_MAX = 18, 90
ID_COLUMN = "respondent_id"
OUTCOME = "already_vaccinated"


@dataclass(frozen=True)
class ItemSpec:
    """One ordinal attitude item and its class-conditional distribution.

    Attributes:
        name: Variable name (FluPaths-like).
        question: Question text for the dictionary.
        labels: Response labels for codes ``1..K`` in order.
        strength: Ordered-logit distance between the classes (0 = identical distributions).
        location: Shift of both classes towards higher codes (negative: towards lower codes).
        positive_high: Whether the positive class answers higher codes.
        missing: Item non-response probability for class 1 and class 2.
        absent_waves: Waves (1-based) in which the item was not asked.
    """

    name: str
    question: str
    labels: tuple[str, ...]
    strength: float
    location: float = 0.0
    positive_high: bool = True
    missing: tuple[float, float] = (0.03, 0.08)
    absent_waves: tuple[int, ...] = ()

    @property
    def n_categories(self) -> int:
        return len(self.labels)

    def pmf(self) -> np.ndarray:
        """Class-conditional response probabilities, shape ``(2, K)`` (row 0 = class 1)."""
        k = self.n_categories
        cut = np.log(np.arange(1, k) / (k - np.arange(1, k))) - self.location  # logit(j / K)
        half = self.strength / 2.0 if self.positive_high else -self.strength / 2.0
        rows = []
        for eta in (half, -half):
            cdf = np.concatenate([1.0 / (1.0 + np.exp(-(cut - eta))), [1.0]])
            rows.append(np.diff(np.concatenate([[0.0], cdf])))
        return np.vstack(rows)

    def responses_text(self) -> str:
        """``1=Label; 2=Label; ...`` as written in the CSV dictionary."""
        return "; ".join(f"{i}={lab}" for i, lab in enumerate(self.labels, start=1))


_IMPORTANCE = (
    "Not at all important",
    "Slightly important",
    "Moderately important",
    "Very important",
    "Extremely important",
)
_SAFE = ("Not at all safe", "Slightly safe", "Moderately safe", "Very safe", "Extremely safe")
_EFFECTIVE = (
    "Not at all effective",
    "Slightly effective",
    "Moderately effective",
    "Very effective",
    "Extremely effective",
)
_LIKELY = ("Very unlikely", "Unlikely", "Neither likely nor unlikely", "Likely", "Very likely")
_WORRY4 = ("Not at all worried", "A little worried", "Somewhat worried", "Very worried")
_TRUST = (
    "Do not trust at all",
    "Trust a little",
    "Trust somewhat",
    "Trust a lot",
    "Trust completely",
)

#: The ten named items of the demo, strongest separation first.
DEMO_ITEMS: tuple[ItemSpec, ...] = (
    ItemSpec(
        "vaccimportant",
        "How important is it to you to get a flu vaccine this season?",
        _IMPORTANCE,
        strength=2.2,
        location=0.2,
        missing=(0.02, 0.06),
    ),
    ItemSpec(
        "vaccsafe",
        "How safe do you think the flu vaccine is?",
        _SAFE,
        strength=1.95,
        location=0.3,
        missing=(0.04, 0.10),
    ),
    ItemSpec(
        "howoftenvaccine",
        "How often do you get a flu vaccine?",
        ("Never", "Rarely", "Some years", "Every year"),
        strength=1.7,
        missing=(0.02, 0.05),
    ),
    ItemSpec(
        "vacceffective",
        "How effective do you think the flu vaccine is at preventing the flu?",
        _EFFECTIVE,
        strength=1.3,
        location=0.1,
        missing=(0.05, 0.12),
    ),
    ItemSpec(
        "howlongagovaccine",
        "How long ago did you last get a flu vaccine?",
        (
            "Less than 1 year ago",
            "1 to 2 years ago",
            "3 to 5 years ago",
            "More than 5 years ago",
            "Never",
        ),
        strength=1.1,
        location=-0.2,
        positive_high=False,
        missing=(0.04, 0.09),
    ),
    ItemSpec(
        "doctortrust",
        "How much do you trust your doctor's advice about vaccines?",
        _TRUST,
        strength=0.8,
        location=0.6,
        missing=(0.03, 0.08),
    ),
    ItemSpec(
        "sideeffectworry",
        "How worried are you about side effects of the flu vaccine?",
        _WORRY4,
        strength=0.7,
        location=-0.3,
        positive_high=False,
        missing=(0.05, 0.12),
    ),
    ItemSpec(
        "worryflu",
        "How worried are you about getting the flu this season?",
        _WORRY4,
        strength=0.45,
        location=-0.4,
        missing=(0.03, 0.07),
    ),
    ItemSpec(
        "likelyflu",
        "How likely do you think it is that you will get the flu this season?",
        _LIKELY,
        strength=0.25,
        location=-0.3,
        missing=(0.06, 0.11),
        absent_waves=(5,),
    ),
    ItemSpec(
        "vaccconvenient",
        "How convenient is it for you to get a flu vaccine?",
        ("Not convenient", "Somewhat convenient", "Very convenient"),
        strength=0.35,
        location=0.3,
        missing=(0.04, 0.08),
        absent_waves=(1,),
    ),
)

_EXTRA_CATEGORIES = (5, 4, 5, 3, 6)


def make_items(n_items: int) -> tuple[ItemSpec, ...]:
    """The first ``n_items`` demo items; past the ten named ones, weak generic ``item11``, ..."""
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1, not {n_items}")
    items = list(DEMO_ITEMS[:n_items])
    for j in range(len(DEMO_ITEMS), n_items):
        k = _EXTRA_CATEGORIES[j % len(_EXTRA_CATEGORIES)]
        items.append(
            ItemSpec(
                f"item{j + 1}",
                f"Simulated attitude item {j + 1}",
                tuple(f"Level {c}" for c in range(1, k + 1)),
                strength=0.15 + 0.25 * ((j * 7) % 5) / 4,
                location=0.1 * ((j % 3) - 1),
                positive_high=j % 4 != 3,
                missing=(0.03 + 0.01 * (j % 4), 0.07 + 0.02 * (j % 4)),
            )
        )
    return tuple(items)


@dataclass(frozen=True)
class SimulationParams:
    """Every true parameter of the generating process (class index 0 = label 1, positive)."""

    items: tuple[ItemSpec, ...]
    n_waves: int = 7
    initial_class_probs: tuple[float, float] = (0.55, 0.45)
    transition: tuple[tuple[float, float], tuple[float, float]] = ((0.90, 0.10), (0.12, 0.88))
    dropout: tuple[float, float] = (0.06, 0.10)
    wave_skip: tuple[float, float] = (0.03, 0.05)
    age_mean: tuple[float, float] = (51.0, 44.0)
    age_sd: float = 16.0
    female_share: float = 0.53
    outcome_from_wave: int = 3
    outcome_yes: tuple[float, float] = (0.62, 0.20)
    outcome_missing: tuple[float, float] = (0.01, 0.03)
    refused_share: float = 0.4
    persistence: Persistence = Persistence()

    def waves(self) -> list[str]:
        return [str(w) for w in range(1, self.n_waves + 1)]

    def items_in_wave(self, wave: int) -> list[ItemSpec]:
        return [it for it in self.items if wave not in it.absent_waves]

    def age_offset(self, wave: int) -> int:
        """Years since wave 1 (two waves a year: autumn and spring)."""
        return (wave - 1) // 2

    def to_dict(self) -> dict:
        """JSON-ready description of every parameter (floats rounded to 6 digits)."""
        items = {}
        for it in self.items:
            pmf = it.pmf()
            items[it.name] = {
                "categories": it.n_categories,
                "labels": list(it.labels),
                "strength": _r(it.strength),
                "location": _r(it.location),
                "positive_class_answers_higher": it.positive_high,
                "probs": {"1": _rl(pmf[0]), "2": _rl(pmf[1])},
                "missing": {"1": _r(it.missing[0]), "2": _r(it.missing[1])},
                "absent_waves": [str(w) for w in it.absent_waves],
            }
        return {
            "class_labels": {str(k): v for k, v in CLASS_LABELS.items()},
            "initial_class_probs": {
                "1": _r(self.initial_class_probs[0]),
                "2": _r(self.initial_class_probs[1]),
            },
            "transition": {
                "from_1": {"1": _r(self.transition[0][0]), "2": _r(self.transition[0][1])},
                "from_2": {"1": _r(self.transition[1][0]), "2": _r(self.transition[1][1])},
            },
            "dropout_after_wave": {"1": _r(self.dropout[0]), "2": _r(self.dropout[1])},
            "wave_skip": {"1": _r(self.wave_skip[0]), "2": _r(self.wave_skip[1])},
            "age": {
                "model": "round(Normal(mean[class in wave 1], sd)), clipped to 18..90 in wave 1; "
                "+1 year every two waves, top-coded at 90",
                "mean": {"1": _r(self.age_mean[0]), "2": _r(self.age_mean[1])},
                "sd": _r(self.age_sd),
            },
            "sex": {"codes": {"1": "Male", "2": "Female"}, "female_share": _r(self.female_share)},
            "outcome": {
                "variable": OUTCOME,
                "from_wave": str(self.outcome_from_wave),
                "p_yes": {"1": _r(self.outcome_yes[0]), "2": _r(self.outcome_yes[1])},
                "missing": {"1": _r(self.outcome_missing[0]), "2": _r(self.outcome_missing[1])},
            },
            "missing_codes": {str(REFUSED): "Refused", str(DONT_KNOW): "Don't know"},
            "refused_share_of_missing": _r(self.refused_share),
            "persistence": self.persistence.to_dict([it.name for it in self.items]),
            "items": items,
        }


def _r(x: float) -> float:
    return round(float(x), 6)


def _rl(xs: np.ndarray) -> list[float]:
    return [_r(x) for x in xs]


@dataclass
class SimulatedPanel:
    """A simulated panel and its truth.

    Attributes:
        params: The true parameters.
        seed: Seed of the random generator.
        n_respondents: Respondents recruited in wave 1.
        waves: Wave ids ``"1".."n"``.
        raw: Per wave, the raw answers of the participants (missing answers as -99/-98):
            ``respondent_id``, the wave's items, ``age``, ``sex`` and, from the outcome wave on,
            ``already_vaccinated``.
        truth: Per wave, one row per participant: ``respondent_id``, ``true_class``,
            ``prev_class`` (true class in the previous wave if the respondent took part in it,
            else NA), ``posterior_class1`` and ``bayes_class`` (Bayes-optimal assignment), and
            ``posterior_class1_items`` (posterior from the attitude items only, incl. missingness).
        bayes_accuracy: Per wave, share of participants whose Bayes class is their true class.
        bayes_ari: Per wave, adjusted Rand index between Bayes and true classes.
        bayes_expected_accuracy: Per wave, mean of max(posterior) — the accuracy the model expects.
        bayes_accuracy_items_only: Per wave, accuracy of the items-only posterior.
        class_prior: Per wave, the model's class-1 share among participants.
        separation: Per wave, mutual information (nats) of each item (missing = own category)
            with the class under the wave's prior, sorted from strongest to weakest.
    """

    params: SimulationParams
    seed: int
    n_respondents: int
    waves: list[str]
    raw: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]
    bayes_accuracy: dict[str, float] = field(default_factory=dict)
    bayes_ari: dict[str, float] = field(default_factory=dict)
    bayes_expected_accuracy: dict[str, float] = field(default_factory=dict)
    bayes_accuracy_items_only: dict[str, float] = field(default_factory=dict)
    class_prior: dict[str, float] = field(default_factory=dict)
    separation: dict[str, dict[str, float]] = field(default_factory=dict)

    def items_in_wave(self, wave: str) -> list[str]:
        return [it.name for it in self.params.items_in_wave(int(wave))]

    def top_items(self, wave: str, n: int = 3) -> list[str]:
        """The ``n`` items that separate the classes best in ``wave`` (by the true parameters)."""
        return list(self.separation[wave])[:n]

    def has_outcome(self, wave: str) -> bool:
        return int(wave) >= self.params.outcome_from_wave

    def class_shares(self, wave: str) -> dict[str, float]:
        """Observed share of each true class among the wave's participants."""
        t = self.truth[wave]["true_class"].to_numpy()
        return {"1": float(np.mean(t == 1)), "2": float(np.mean(t == 2))}


def _age_pmf_wave1(params: SimulationParams) -> np.ndarray:
    """P(age in wave 1 = a | wave-1 class), shape ``(2, 73)`` over ages 18..90."""
    ages = np.arange(AGE_MIN, AGE_MAX + 1, dtype=np.float64)
    out = np.empty((2, ages.size))
    for c in range(2):
        z_hi = (ages + 0.5 - params.age_mean[c]) / params.age_sd
        z_lo = (ages - 0.5 - params.age_mean[c]) / params.age_sd
        cdf_hi = ndtr(z_hi)
        cdf_lo = ndtr(z_lo)
        cdf_lo[0] = 0.0  # everything below 18 is recruited as 18
        cdf_hi[-1] = 1.0  # everything above 90 is top-coded
        out[c] = cdf_hi - cdf_lo
    return out


def _age_pmf_wave(pmf1: np.ndarray, offset: int) -> np.ndarray:
    """Distribution of ``min(age1 + offset, 90)`` given the wave-1 class."""
    if offset == 0:
        return pmf1
    out = np.zeros_like(pmf1)
    out[:, offset:] = pmf1[:, : pmf1.shape[1] - offset]
    out[:, -1] += pmf1[:, pmf1.shape[1] - offset :].sum(axis=1)
    return out


def _participation_joint(params: SimulationParams) -> list[np.ndarray]:
    """Per wave, P(wave-1 class, current class, takes part), shape ``(2, 2)``; forward recursion."""
    trans = np.asarray(params.transition, dtype=np.float64)
    stay = 1.0 - np.asarray(params.dropout, dtype=np.float64)
    skip = np.asarray(params.wave_skip, dtype=np.float64)
    alive = np.diag(np.asarray(params.initial_class_probs, dtype=np.float64))
    joints = [alive.copy()]
    for _ in range(2, params.n_waves + 1):
        alive = (alive * stay[None, :]) @ trans
        joints.append(alive * (1.0 - skip)[None, :])
    return joints


def _missing_codes(
    rng: np.random.Generator, is_first: np.ndarray, p_missing: tuple[float, float], refused: float
) -> np.ndarray:
    """Per respondent 0 (answered), -99 (refused) or -98 (don't know); P(missing) by class."""
    p = np.where(is_first, p_missing[0], p_missing[1])
    u = rng.random(is_first.size)
    out = np.where(u < p, DONT_KNOW, 0)
    out[u < p * refused] = REFUSED
    return out


def simulate_panel(
    n_respondents: int = 2000,
    n_waves: int = 7,
    n_items: int = 10,
    seed: int = 2024,
    *,
    params: SimulationParams | None = None,
) -> SimulatedPanel:
    """Simulate a FluPaths-like panel and its Bayes-optimal class assignment (vectorised).

    Args:
        n_respondents: Respondents recruited in wave 1.
        n_waves: Number of waves (ids ``"1".."n_waves"``).
        n_items: Number of attitude items (the ten named demo items first, then weak generic ones).
        seed: Seed of the random generator; the same seed gives the same panel.
        params: Full parameter set (overrides ``n_waves`` and ``n_items``).

    Returns:
        The raw answers per wave, the truth per wave and the Bayes-optimal accuracy and ARI.
    """
    if n_respondents < 2:
        raise ValueError(f"n_respondents must be at least 2, not {n_respondents}")
    if params is None:
        if n_waves < 1:
            raise ValueError(f"n_waves must be at least 1, not {n_waves}")
        params = SimulationParams(items=make_items(n_items), n_waves=n_waves)
    n = int(n_respondents)
    rng = np.random.default_rng(seed)
    log.debug(
        "simulating %d respondents x %d waves x %d items", n, params.n_waves, len(params.items)
    )

    ids = np.arange(100_001, 100_001 + n, dtype=np.int64)
    trans = np.asarray(params.transition, dtype=np.float64)

    # Fixed traits: wave-1 class, age at wave 1, sex.
    cls0 = (rng.random(n) >= params.initial_class_probs[0]).astype(np.int64)  # 0 = label 1
    age1 = np.rint(rng.normal(np.asarray(params.age_mean)[cls0], params.age_sd))
    age1 = np.clip(age1, AGE_MIN, AGE_MAX).astype(np.int64)
    sex = np.where(rng.random(n) < params.female_share, 2, 1).astype(np.int64)

    age_pmf1 = _age_pmf_wave1(params)
    joints = _participation_joint(params)
    item_pmfs = {it.name: it.pmf() for it in params.items}
    latent = LatentScores(params.persistence, [it.name for it in params.items], n, seed)

    alive = np.ones(n, dtype=bool)
    present = alive.copy()
    panel = SimulatedPanel(
        params=params, seed=seed, n_respondents=n, waves=params.waves(), raw={}, truth={}
    )

    for w in range(1, params.n_waves + 1):
        wave = str(w)
        prev_cls, prev_present = cls0, present
        if w > 1:
            alive &= rng.random(n) >= np.asarray(params.dropout)[prev_cls]
            cls0 = (rng.random(n) >= trans[prev_cls, 0]).astype(np.int64)
            present = alive & (rng.random(n) >= np.asarray(params.wave_skip)[cls0])

        joint = joints[w - 1]  # (c1, c_w)
        prior = joint.sum(axis=0) / joint.sum()
        c1_given_cw = joint / joint.sum(axis=0, keepdims=True)  # P(c1 | c_w, present)
        idx = np.flatnonzero(present)
        cw = cls0[idx]
        is_first = cls0 == 0

        columns: dict[str, np.ndarray] = {ID_COLUMN: ids[idx]}
        loglik_items = np.tile(np.log(prior), (idx.size, 1))
        separation: dict[str, float] = {}

        # Same draws in the same order as independent sampling; the uniforms are the innovations
        # of the latent scores (see persistence.py).
        draws = [
            (rng.random(n), _missing_codes(rng, is_first, it.missing, params.refused_share))
            for it in params.items
        ]
        scores = latent.advance([u for u, _ in draws])
        for j, (it, (_, miss)) in enumerate(zip(params.items, draws, strict=True)):
            pmf = item_pmfs[it.name]
            if w in it.absent_waves:
                continue  # its latent score evolves anyway, as do the draws of the other items
            codes = codes_from_scores(scores[:, j], is_first, pmf)
            obs = np.where(miss < 0, miss, codes)[idx]
            # log P(answer | class) with a last row for "missing": shape (K + 1, 2)
            p_miss = np.asarray(it.missing, dtype=np.float64)
            table = np.vstack([(pmf * (1.0 - p_miss)[:, None]).T, p_miss[None, :]])
            loglik_items += np.log(table)[np.where(obs < 0, it.n_categories, obs - 1)]
            columns[it.name] = obs
            separation[it.name] = mutual_information(float(prior[0]), table.T)

        # Age: fixed trait, top-coded; exact class-conditional pmf among participants.
        offset = params.age_offset(w)
        age_w = np.minimum(age1 + offset, AGE_MAX)[idx]
        age_pmf = c1_given_cw.T @ _age_pmf_wave(age_pmf1, offset)  # (c_w, ages)
        loglik = loglik_items + np.log(age_pmf[:, age_w - AGE_MIN]).T
        columns["age"] = age_w
        columns["sex"] = sex[idx]

        if w >= params.outcome_from_wave:
            p_yes = np.asarray(params.outcome_yes, dtype=np.float64)
            p_miss = np.asarray(params.outcome_missing, dtype=np.float64)
            yes = (rng.random(n) < p_yes[cls0]).astype(np.int64)
            miss = _missing_codes(rng, is_first, params.outcome_missing, params.refused_share)
            out = np.where(miss < 0, miss, yes)[idx]
            table = np.vstack([(1 - p_miss) * (1 - p_yes), (1 - p_miss) * p_yes, p_miss])  # (3, 2)
            loglik += np.log(table)[np.where(out < 0, 2, out)]
            columns[OUTCOME] = out

        post1 = posterior_class1(loglik)
        post1_items = posterior_class1(loglik_items)
        bayes = np.where(post1 >= 0.5, 1, 2)
        true_label = cw + 1
        prev = pd.array(prev_cls[idx] + 1, dtype="Int64")  # true class in the previous wave
        prev[(~prev_present[idx]) | (w == 1)] = pd.NA

        panel.raw[wave] = pd.DataFrame(columns)
        panel.truth[wave] = pd.DataFrame(
            {
                ID_COLUMN: ids[idx],
                "true_class": true_label,
                "prev_class": prev,
                "posterior_class1": post1,
                "bayes_class": bayes,
                "posterior_class1_items": post1_items,
            }
        )
        panel.bayes_accuracy[wave] = float(np.mean(bayes == true_label))
        panel.bayes_ari[wave] = adjusted_rand_index(bayes, true_label)
        panel.bayes_expected_accuracy[wave] = float(np.mean(np.maximum(post1, 1.0 - post1)))
        panel.bayes_accuracy_items_only[wave] = float(
            np.mean(np.where(post1_items >= 0.5, 1, 2) == true_label)
        )
        panel.class_prior[wave] = float(prior[0])
        panel.separation[wave] = dict(sorted(separation.items(), key=lambda kv: (-kv[1], kv[0])))
    return panel
