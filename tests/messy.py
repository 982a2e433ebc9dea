"""A "messy survey" as real public surveys come: raw CSV waves and a CSV dictionary whose
conventions are not the demo's.

- an id column named ``id``; ``gender`` instead of ``sex``; ``age`` as a range;
- text categories with spaces and slashes, declared as ``code=label`` pairs
  (``Green/Left Alliance=Green/Left Alliance``) or as a list of plain labels
  (``Church of England; Roman Catholic; ...``);
- a 28-item attitude battery: items coded ``-1=Disagree; 0=Neither; 1=Agree`` (the -1s are
  answers, although -1 is a default missing code), ellipsis scales ``1 = much worse ... 5 =
  much better``, and Likert items listing ``-9=Don't know`` (a real missing code);
- a count item ``0-7``, an ``integer`` id row and a ``text`` row in the dictionary;
- item non-response: empty cells, -9 and -99 (unlisted) mixed in.

Seeded and small (300 respondents, 3 waves with attrition). Not the demo simulator.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from panelsynth.scaffold import init_workspace

TRINARY = [f"att{i:02d}" for i in range(1, 11)]  # -1/0/1
ELLIPSIS = [f"att{i:02d}" for i in range(11, 20)]  # 1 = much worse ... 5 = much better
LIKERT = [f"att{i:02d}" for i in range(20, 29)]  # 1..5 and -9 = Don't know
BATTERY = TRINARY + ELLIPSIS + LIKERT
RELIGIONS = ["Church of England", "Roman Catholic", "Other Christian", "Muslim", "No religion"]
PARTIES = ["Conservative", "Labour", "Social Democrat", "Green/Left Alliance", "Other"]
CLASSES = ["working class", "lower middle", "upper middle"]
CATEGORICAL = {"religion": RELIGIONS, "party": PARTIES, "social_class": CLASSES}
ELLIPSIS_CELL = "1 = much worse ... 5 = much better"
TRINARY_CELL = "-1=Disagree; 0=Neither; 1=Agree"
LIKERT_CELL = (
    "1=Strongly disagree; 2=Disagree; 3=Neither agree nor disagree; 4=Agree; 5=Strongly agree; "
    "-9=Don't know"
)


@dataclass
class MessySurvey:
    """What :func:`write_messy_survey` wrote.

    Attributes:
        root: The workspace.
        raw: The raw waves as written (missing codes included), by wave id.
        dictionary: The dictionary rows (variable, question, responses, type).
    """

    root: Path
    raw: dict[str, pd.DataFrame]
    dictionary: list[tuple[str, str, str, str]]

    @property
    def questions(self) -> dict[str, str]:
        return {name: q for name, q, _, _ in self.dictionary}


def dictionary_rows() -> list[tuple[str, str, str, str]]:
    """(variable, question, responses, type) of the messy survey's dictionary."""
    rows: list[tuple[str, str, str, str]] = [
        ("id", "Respondent identifier", "integer", ""),
        ("gender", "What is your gender?", "1=Man; 2=Woman; 3=Another way", ""),
        ("age", "Age in years at the time of the interview", "18-90", ""),
        ("religion", "Which religion, if any, do you belong to?", "; ".join(RELIGIONS), ""),
        (
            "party",
            "Which party did you vote for at the last general election?",
            "; ".join(f"{p}={p}" for p in PARTIES),
            "",
        ),
        ("social_class", "Which social class do you feel you belong to?", "; ".join(CLASSES), ""),
        ("days_active", "On how many days last week were you physically active?", "0-7", ""),
        ("comment", "Anything else you would like to tell us?", "text", ""),
    ]
    topics = [
        "the health service", "schools", "public transport", "policing", "the economy",
        "housing", "the environment", "pensions", "local roads", "childcare",
    ]
    for name, topic in zip(TRINARY, topics, strict=True):
        rows.append((name, f"The government should spend more on {topic}.", TRINARY_CELL, ""))
    for i, name in enumerate(ELLIPSIS):
        rows.append(
            (name, f"Compared with a year ago, how is your situation on aspect {i + 1} of daily "
             f"life (income, health, work, ...)?", ELLIPSIS_CELL, "")
        )
    for i, name in enumerate(LIKERT):
        rows.append((name, f"Statement {i + 1}: people like me have a say in what the "
                     f"government does.", LIKERT_CELL, "ordinal" if i == 0 else ""))
    return rows


def write_dictionary(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["variable", "question", "responses", "type"])
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buf.getvalue(), encoding="utf-8")


#: A dictionary with four independent mistakes (one line each when read).
BROKEN_ROWS: list[tuple[str, str, str, str]] = [
    ("gender", "Gender", "1=Man; 2=Woman", ""),
    ("att01", "Item 1", "-1=Disagree; 0=Neither; maybe", ""),
    ("att02", "Item 2", "5 = high ... 1 = low", ""),
    ("att03", "Item 3", "1=Yes; 2=No", "likertish"),
    ("gender", "Gender again", "1=Man; 2=Woman", ""),
]


def write_messy_survey(
    root: Path,
    *,
    n: int = 300,
    waves: tuple[str, ...] = ("1", "2", "3"),
    seed: int = 12,
    config: str = "",
    contexts: bool = True,
) -> MessySurvey:
    """Write the messy survey's raw waves, dictionary, config and wave contexts under ``root``.

    The config sets only ``study.id_column = "id"`` (plus ``config``): missing codes and
    demographics keep their defaults, as a new user's would.
    """
    init_workspace(root)
    rng = np.random.default_rng(seed)
    raw_dir = root / "Raw data"
    raw_dir.mkdir(exist_ok=True)
    ids = np.arange(1001, 1001 + n)
    positive = rng.random(n) < 0.5
    gender = rng.choice([1, 2, 3], size=n, p=[0.48, 0.49, 0.03])
    age = rng.integers(18, 91, n)
    religion = rng.choice(RELIGIONS, size=n)
    social = rng.choice(CLASSES, size=n, p=[0.45, 0.35, 0.2])
    alive = np.ones(n, dtype=bool)
    raw: dict[str, pd.DataFrame] = {}
    for i, w in enumerate(waves):
        if i:
            positive = np.where(rng.random(n) < 0.08, ~positive, positive)
            alive &= rng.random(n) > 0.07
        idx = np.flatnonzero(alive)
        m = idx.size
        pos = positive[idx]
        df = pd.DataFrame({"id": ids[idx], "gender": gender[idx], "age": age[idx]})
        for j, name in enumerate(TRINARY):
            shift = 0.9 if j < 6 else 0.0
            p_agree = np.where(pos, 0.35 + shift * 0.4, 0.35 - shift * 0.2)
            u = rng.random(m)
            x = np.where(u < p_agree, 1, np.where(u < p_agree + 0.3, 0, -1)).astype(object)
            df[name] = _gaps(rng, x, dk=None)
        for j, name in enumerate(ELLIPSIS):
            centre = np.where(pos, 3.6, 2.4) if j < 5 else np.full(m, 3.0)
            x = np.clip(np.rint(rng.normal(centre, 1.0)), 1, 5).astype(int).astype(object)
            df[name] = _gaps(rng, x, dk=None)
        for j, name in enumerate(LIKERT):
            centre = np.where(pos, 3.8, 2.2) if j < 4 else np.full(m, 3.0)
            x = np.clip(np.rint(rng.normal(centre, 1.1)), 1, 5).astype(int).astype(object)
            df[name] = _gaps(rng, x, dk=-9)
        df["religion"] = _gaps(rng, religion[idx].astype(object), dk=None)
        party = np.where(
            pos,
            rng.choice(PARTIES, size=m, p=[0.15, 0.35, 0.2, 0.25, 0.05]),
            rng.choice(PARTIES, size=m, p=[0.45, 0.25, 0.15, 0.05, 0.1]),
        ).astype(object)
        df["party"] = _gaps(rng, party, dk=None)
        df["social_class"] = social[idx]
        df["days_active"] = _gaps(rng, rng.binomial(7, np.where(pos, 0.5, 0.3)).astype(object),
                                  dk=None)
        df["comment"] = [f"remark {k}" if rng.random() < 0.3 else "" for k in range(m)]
        df = df.sample(frac=1.0, random_state=seed + i).reset_index(drop=True)  # row order
        df.to_csv(raw_dir / f"wave{w}.csv", index=False)
        raw[w] = df
    rows = dictionary_rows()
    write_dictionary(root / "Dictionaries" / "dictionary.csv", rows)
    (root / "panelsynth.toml").write_text(
        '[study]\nid_column = "id"\n' + config, encoding="utf-8"
    )
    if contexts:
        for i, w in enumerate(waves):
            prev = f"wave {waves[i - 1]}" if i else "none — this is the first wave"
            (root / "Dictionaries" / "wave_contexts" / f"wave{w}_context.txt").write_text(
                f"Purpose: wave {w} of a panel survey of adults about public spending, their "
                f"situation and politics.\nTime of collection: spring 202{i + 1}.\n"
                f"Target variable: party — the party voted for at the last general election.\n"
                f"Previous wave: {prev}.\n",
                encoding="utf-8",
            )
    return MessySurvey(root, raw, rows)


def _gaps(rng: np.random.Generator, x: np.ndarray, *, dk: int | None) -> np.ndarray:
    """Item non-response: about 4% empty cells, 2% -99 (refused, unlisted) and, where the
    dictionary lists it, 3% -9 (don't know)."""
    x = x.astype(object).copy()
    u = rng.random(x.size)
    x[u < 0.04] = None
    x[(u >= 0.04) & (u < 0.06)] = -99
    if dk is not None:
        x[(u >= 0.06) & (u < 0.09)] = dk
    return x
