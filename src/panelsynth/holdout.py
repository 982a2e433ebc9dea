"""Held-out respondents (issue 16): a seeded share of the panel that never reaches steps 1-3.

The split is made per respondent id, not per row: each id is held out when a seeded hash of the
id falls below the share, so a person held out of one wave is held out of every wave (whatever
waves exist or are added later) and the split can be recomputed from the manifest alone
(share, seed, id column). The share per wave is therefore close to, not exactly, the share asked.

The run applies the split where it loads a wave (``pipeline.load_wave_for_run``): statistics,
examples, cluster shares and the calibrated selection's targets see only the training
respondents. A panel run (``--panel``) applies the same split to the waves it loads and to the
real panel its structure is estimated from (``panel.setup``). ``panelsynth evaluate`` recomputes
the same split and scores the run against the held-out respondents.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from panelsynth.errors import ConfigError, DataError

if TYPE_CHECKING:
    from panelsynth.config import PanelsynthConfig
    from panelsynth.data import WaveData
    from panelsynth.workspace import Workspace

log = logging.getLogger("panelsynth")


@dataclass(frozen=True)
class HoldoutSpec:
    """What defines a split: the share held out, the seed and the id column."""

    share: float
    seed: int
    id_column: str

    def to_json(self) -> dict[str, Any]:
        return {"share": self.share, "seed": self.seed, "id_column": self.id_column}


@dataclass
class HoldoutSplit:
    """One wave's split: row positions of the wave frame and the respondent ids on each side."""

    spec: HoldoutSpec
    wave: str
    held_out: np.ndarray  # boolean, one per row of the wave file (file order)
    ids: pd.Series  # the id of every row of the wave file, as text

    @property
    def held_out_ids(self) -> list[str]:
        return sorted(set(self.ids[self.held_out]), key=_id_key)

    @property
    def training_ids(self) -> list[str]:
        return sorted(set(self.ids[~self.held_out]), key=_id_key)

    def summary(self) -> dict[str, Any]:
        return {
            "enabled": True,
            **self.spec.to_json(),
            "training_respondents": int((~self.held_out).sum()),
            "held_out_respondents": int(self.held_out.sum()),
        }


def check_share(share: float | None) -> float:
    """The share as a float in (0, 1), 0.0 when off; raises one line when out of range."""
    if share is None or share == 0:
        return 0.0
    if not 0 < share < 1:
        raise ConfigError(
            f"holdout {share} is not a share — use a number between 0 and 1, e.g. --holdout 0.3"
        )
    return float(share)


def held_out_mask(ids: pd.Series, share: float, seed: int) -> np.ndarray:
    """Whether each id is held out: a seeded hash of the id (as text) below ``share``."""
    salt = f"panelsynth-holdout:{int(seed)}:".encode()
    u = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(salt + str(i).encode(), digest_size=8).digest(), "big")
            / 2.0**64
            for i in ids
        ),
        dtype="float64",
        count=len(ids),
    )
    return u < share


def read_ids(path: Path, id_column: str, source: str) -> pd.Series:
    """The id of every row of a wave file (as text, file order).

    Raises:
        DataError: the file has no such column or some rows have no id.
    """
    from panelsynth.data import read_csv_any, respondent_ids

    return respondent_ids(read_csv_any(path), id_column, source, purpose="--holdout")


def split_wave(path: Path, wave: str, spec: HoldoutSpec, source: str) -> HoldoutSplit:
    """The split of one wave file (the real file's rows, in file order)."""
    ids = read_ids(path, spec.id_column, source)
    return HoldoutSplit(spec, wave, held_out_mask(ids, spec.share, spec.seed), ids)


_SPLITS: dict[tuple[Any, ...], HoldoutSplit] = {}


def wave_split(path: Path, wave: str, spec: HoldoutSpec, source: str) -> HoldoutSplit:
    """:func:`split_wave`, remembered while the file is unchanged (a run asks several times)."""
    st = path.stat() if path.exists() else None
    key = (str(path), st.st_mtime_ns if st else None, st.st_size if st else None, spec, wave)
    if key not in _SPLITS:
        if len(_SPLITS) > 32:
            _SPLITS.clear()
        _SPLITS[key] = split_wave(path, wave, spec, source)
    return _SPLITS[key]


def spec_from_config(config: PanelsynthConfig) -> HoldoutSpec | None:
    """The run's split (``generation.holdout``, ``generation.seed``, ``study.id_column``)."""
    share = check_share(config.generation.holdout)
    if not share:
        return None
    return HoldoutSpec(share, int(config.generation.seed), config.study.id_column)


def hold_out_respondents(ws: Workspace, wd: WaveData, config: PanelsynthConfig) -> None:
    """Keep only the training respondents in ``wd.frame`` when the run holds some out.

    Raises:
        DataError: no id column, empty ids, or a cluster left without training respondents.
    """
    spec = spec_from_config(config)
    if spec is None:
        return
    path = ws.original_data(wd.wave)
    split = wave_split(path, wd.wave, spec, ws.rel(path))
    wd.frame = apply_split(wd.frame, split, keep_held_out=False)
    present = set(wd.frame[wd.cluster_column])
    missing = [c for c in range(1, config.clustering.k + 1) if c not in present]
    if missing:
        raise DataError(
            f"{ws.rel(path)}: cluster {missing[0]} has no respondent left after holding out "
            f"{spec.share:.0%} — use a smaller --holdout",
            path=ws.rel(path),
        )
    note = (
        f"wave {wd.wave}: {int(split.held_out.sum())} respondents held out for the evaluation "
        f"(share {spec.share:g}, seed {spec.seed}); steps 1-3 use the other "
        f"{int((~split.held_out).sum())}"
    )
    log.info(note)
    wd.notes.append(note)


def apply_split(frame: pd.DataFrame, split: HoldoutSplit, *, keep_held_out: bool) -> pd.DataFrame:
    """The rows of a wave frame on one side of the split (the frame keeps the file's row index)."""
    held = pd.Series(split.held_out, index=pd.RangeIndex(len(split.held_out)))
    side = held.reindex(frame.index).fillna(False).to_numpy(dtype=bool)
    return frame[side if keep_held_out else ~side]


def write_ids_file(path: Path, split: HoldoutSplit, model_dir: str) -> None:
    """Record the held-out ids in ``Evaluation/holdout_ids.csv`` (one row per wave, model dir, id).

    Rows of the same wave and model dir are replaced; other runs' rows are kept.
    """
    with _file_lock(path.with_name(f".{path.name}.lock")):
        _merge_ids(path, split, model_dir)


def _merge_ids(path: Path, split: HoldoutSplit, model_dir: str) -> None:
    from panelsynth.io import atomic_write_csv

    cols = ["wave", "model_dir", "respondent_id", "share", "seed", "id_column"]
    old = pd.DataFrame(columns=cols)
    if path.exists():
        try:
            old = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError):
            log.warning("rewriting unreadable %s", path)
        if list(old.columns) != cols:
            old = pd.DataFrame(columns=cols)
    keep = old[~((old["wave"] == split.wave) & (old["model_dir"] == model_dir))]
    new = pd.DataFrame(
        {
            "wave": split.wave,
            "model_dir": model_dir,
            "respondent_id": split.held_out_ids,
            "share": _num_text(split.spec.share),
            "seed": str(split.spec.seed),
            "id_column": split.spec.id_column,
        },
        columns=cols,
    )
    atomic_write_csv(path, pd.concat([keep, new], ignore_index=True))


def spec_from_manifest(manifest: dict[str, Any]) -> HoldoutSpec | None:
    """The split a run used, from its manifest (``None``: the run held no respondent out)."""
    h = manifest.get("holdout")
    if not isinstance(h, dict) or not h.get("enabled"):
        return None
    try:
        return HoldoutSpec(float(h["share"]), int(h["seed"]), str(h["id_column"]))
    except (KeyError, TypeError, ValueError):
        log.warning("the manifest's holdout section is unreadable: evaluating without it")
        return None


def _id_key(v: str) -> tuple[int, float, str]:
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)


def _num_text(x: float) -> str:
    return f"{float(x):g}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (runs of other waves may write the ids file at the same time)."""
    os.makedirs(path.parent, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no concurrent writers are guarded
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
