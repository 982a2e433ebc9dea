"""On-disk cache of the per-wave references (real halves, baselines and their scorecards).

The references do not depend on the model being evaluated, only on the real wave, the evaluated
columns, the target, the seed and the code, so evaluating a second model dir or re-running the
evaluation reuses them. Entries live in ``<workspace>/.panelsynth/cache/eval-reference-<key>.pkl``;
the key hashes the real data itself, so an edited real file (or new evaluation settings, or a new
panelsynth/sdmetrics version) misses the cache and the reference is rebuilt. The files are pickles
written by this package into the workspace's own state folder; delete the folder to drop them.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from pathlib import Path
from typing import Any

import pandas as pd

from panelsynth.cache import fingerprint
from panelsynth.evaluate._io import atomic_write_bytes
from panelsynth.evaluate.columns import EvalColumns
from panelsynth.evaluate.suite import PROTOCOL, Reference

log = logging.getLogger("panelsynth")

STAGE = "eval-reference"


def data_hash(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's columns, dtypes and values in row order."""
    h = hashlib.sha256()
    h.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def reference_key(
    real: pd.DataFrame,
    columns: EvalColumns,
    *,
    wave: str,
    seed: int,
    target: str | None,
    size: int | None = None,
    split: Any = None,
) -> str:
    """Everything a wave's reference depends on, hashed (the size-matched candidate size and a
    held-out run's split included)."""
    from panelsynth import __version__
    from panelsynth.evaluate.sdm import sdmetrics_version

    return fingerprint(
        STAGE,
        __version__,
        sdmetrics_version(),
        wave,
        seed,
        target,
        [(c.name, c.sdtype, c.var_type, c.role) for c in columns],
        PROTOCOL["caps"],
        data_hash(real[columns.names]),
        *([] if size is None and split is None else [size, split]),
    )


def _path(folder: Path, key: str) -> Path:
    return folder / f"{STAGE}-{key}.pkl"


def load_reference(folder: Path, key: str) -> Reference | None:
    """The cached reference, or None (missing or unreadable entries are ignored)."""
    path = _path(folder, key)
    if not path.exists():
        return None
    try:
        obj: Any = pickle.loads(path.read_bytes())
    except Exception:  # a truncated or foreign file: rebuild it
        log.warning("ignoring unreadable cache entry %s", path.name)
        return None
    return obj if isinstance(obj, Reference) else None


def store_reference(folder: Path, key: str, ref: Reference) -> None:
    atomic_write_bytes(_path(folder, key), pickle.dumps(ref, protocol=pickle.HIGHEST_PROTOCOL))
