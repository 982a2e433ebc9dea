"""On-disk cache of the per-wave references (real halves, baselines and their scorecards).

The references do not depend on the model being evaluated, only on the real wave, the evaluated
columns, the target, the seed and the code, so evaluating a second model dir or re-running the
evaluation reuses them. Entries live in ``<workspace>/.panelsynth/cache/eval-reference-<key>.json``;
the key hashes the real data itself, so an edited real file (or new evaluation settings, or a new
panelsynth/sdmetrics version) misses the cache and the reference is rebuilt.

A workspace may come from someone else, so an entry is *data*, never code: tagged JSON that only
builds the few classes of a reference (:data:`_CLASSES`), frames and numbers — no pickle. The
first line names the format, the key and the SHA-256 of the second (the payload); an entry whose
format, key or checksum does not match, or that does not decode to a reference, is ignored with a
warning and rebuilt. Pickles of earlier versions (``.pkl``) are never read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.cache import fingerprint
from panelsynth.evaluate.base import MetricResult
from panelsynth.evaluate.columns import EvalColumn, EvalColumns
from panelsynth.evaluate.protocol import PROTOCOL
from panelsynth.evaluate.scoring import Scorecard
from panelsynth.evaluate.suite import Reference
from panelsynth.io import atomic_write_bytes

log = logging.getLogger("panelsynth")

STAGE = "eval-reference"
FORMAT = "panelsynth-eval-reference"
VERSION = 1

#: The only classes an entry may build.
_CLASSES: dict[str, type] = {
    c.__name__: c for c in (Reference, Scorecard, MetricResult, EvalColumns, EvalColumn)
}


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
    return folder / f"{STAGE}-{key}.json"


def load_reference(folder: Path, key: str) -> Reference | None:
    """The cached reference, or None (missing, damaged, foreign or mismatched entries are
    ignored: the caller rebuilds them)."""
    path = _path(folder, key)
    if path.is_symlink() or not path.is_file():
        return None
    try:
        head, _, payload = path.read_bytes().partition(b"\n")
        meta = json.loads(head)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError("not a reference entry")
        if meta.get("version") != VERSION or meta.get("key") != key:
            raise ValueError("made for other inputs")
        if meta.get("sha256") != hashlib.sha256(payload).hexdigest():
            raise ValueError("checksum mismatch")
        obj = decode(json.loads(payload))
    except (ValueError, TypeError, KeyError, RecursionError, UnicodeDecodeError) as err:
        log.warning("ignoring the cache entry %s (%s): rebuilding it", path.name, err)
        return None
    if not isinstance(obj, Reference):
        log.warning("ignoring the cache entry %s (not a reference): rebuilding it", path.name)
        return None
    return obj


def store_reference(folder: Path, key: str, ref: Reference) -> None:
    """Write ``ref`` as a verified data entry (a reference that cannot be encoded is not cached)."""
    try:
        payload = json.dumps(encode(ref), separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as err:
        log.warning("the reference of key %s is not cached (%s)", key[:8], err)
        return
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "key": key,
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    atomic_write_bytes(_path(folder, key), json.dumps(meta).encode("utf-8") + b"\n" + payload)


# ---------------------------------------------------------------------------------- codec
def encode(obj: Any) -> Any:
    """Tagged JSON of a reference's parts (numbers, text, containers, frames, dataclasses)."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"$float": repr(obj)}
    if obj is pd.NA:
        return {"$na": 1}
    if isinstance(obj, np.generic):
        return {"$np": obj.dtype.str, "v": encode(obj.item())}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, tuple):
        return {"$tuple": [encode(v) for v in obj]}
    if isinstance(obj, dict):
        return {"$dict": [[encode(k), encode(v)] for k, v in obj.items()]}
    if isinstance(obj, pd.DataFrame):
        return {
            "$df": {
                "columns": [encode(c) for c in obj.columns],
                "index": _encode_index(obj.index),
                "data": [_encode_values(obj.iloc[:, i]) for i in range(obj.shape[1])],
            }
        }
    if isinstance(obj, pd.Series):
        return {
            "$series": {
                "name": encode(obj.name),
                "index": _encode_index(obj.index),
                "data": _encode_values(obj),
            }
        }
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "biuf":
        return {
            "$nd": {
                "dtype": obj.dtype.str,
                "shape": list(obj.shape),
                "data": [encode(v) for v in obj.ravel().tolist()],
            }
        }
    name = type(obj).__name__
    if dataclasses.is_dataclass(obj) and _CLASSES.get(name) is type(obj):
        fields = {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {"$dc": name, "fields": fields}
    raise TypeError(f"cannot cache a {name}")


def decode(obj: Any) -> Any:
    """The inverse of :func:`encode`; builds only frames, numbers and :data:`_CLASSES`."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict) or len(obj) not in (1, 2):
        raise ValueError("unexpected value in the entry")
    if "$float" in obj:
        return float(obj["$float"])
    if "$na" in obj:
        return pd.NA
    if "$np" in obj:
        return np.dtype(obj["$np"]).type(decode(obj["v"]))
    if "$tuple" in obj:
        return tuple(decode(v) for v in obj["$tuple"])
    if "$dict" in obj:
        return {_hashable(decode(k)): decode(v) for k, v in obj["$dict"]}
    if "$df" in obj:
        d = obj["$df"]
        index = _decode_index(d["index"])
        cols = [_hashable(decode(c)) for c in d["columns"]]
        plain = pd.RangeIndex(len(index))
        series = [_decode_values(v, plain) for v in d["data"]]
        if len(cols) != len(series):
            raise ValueError("frame columns and data differ")
        if not series:
            return pd.DataFrame(index=index)
        frame = pd.concat(series, axis=1, ignore_index=True)
        frame.index = index
        frame.columns = pd.Index(cols)
        return frame
    if "$series" in obj:
        d = obj["$series"]
        out = _decode_values(d["data"], _decode_index(d["index"]))
        out.name = decode(d["name"])
        return out
    if "$nd" in obj:
        d = obj["$nd"]
        dtype = np.dtype(d["dtype"])
        if dtype.kind not in "biuf":
            raise ValueError("unexpected array type")
        return np.array([decode(v) for v in d["data"]], dtype=dtype).reshape(d["shape"])
    if "$dc" in obj:
        cls = _CLASSES.get(obj["$dc"])
        if cls is None:
            raise ValueError(f"unexpected class {obj['$dc']!r}")
        return cls(**{str(k): decode(v) for k, v in obj["fields"].items()})
    raise ValueError("unexpected value in the entry")


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, list | tuple) else v


def _encode_values(s: pd.Series) -> dict[str, Any]:
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return {
            "dtype": "category",
            "categories": [encode(c) for c in dtype.categories.tolist()],
            "ordered": bool(dtype.ordered),
            "codes": [int(c) for c in s.cat.codes.tolist()],
        }
    return {"dtype": str(dtype), "values": [encode(v) for v in s.tolist()]}


def _decode_values(d: dict[str, Any], index: pd.Index) -> pd.Series:
    if d["dtype"] == "category":
        cats = [decode(c) for c in d["categories"]]
        dtype = pd.CategoricalDtype(cats, ordered=bool(d["ordered"]))
        values = pd.Categorical.from_codes([int(c) for c in d["codes"]], dtype=dtype)
        return pd.Series(values, index=index)
    values = [decode(v) for v in d["values"]]
    dtype = d["dtype"]
    if dtype == "object":
        return pd.Series(values, index=index, dtype=object)
    return pd.Series(values, index=index, dtype=pd.api.types.pandas_dtype(dtype))


def _encode_index(index: pd.Index) -> dict[str, Any]:
    if isinstance(index, pd.RangeIndex):
        return {"range": [index.start, index.stop, index.step], "name": encode(index.name)}
    if isinstance(index, pd.MultiIndex):
        raise TypeError("cannot cache a multi-index")
    return {"values": _encode_values(index.to_series()), "name": encode(index.name)}


def _decode_index(d: dict[str, Any]) -> pd.Index:
    if "range" in d:
        start, stop, step = (int(x) for x in d["range"])
        return pd.RangeIndex(start, stop, step, name=decode(d["name"]))
    raw = d["values"]
    n = len(raw.get("values") if "values" in raw else raw.get("codes", []))
    return pd.Index(_decode_values(raw, pd.RangeIndex(n)), name=decode(d["name"]))
