"""The one canonical hashing rule for every fingerprint in parity (DESIGN §6).

Canonical JSON: keys sorted, separators ``(",", ":")``, floats by ``repr`` (the shortest string
that round-trips the IEEE double, identical on every platform), NaN/inf as the strings
``"NaN"``/``"Infinity"``/``"-Infinity"``, datetimes as UTC ISO-8601, enums by value, paths as
POSIX strings, sets sorted, numpy scalars/arrays as their Python values. Anything else raises.
Hashes are SHA-256, stored as the full 64 hex digits.

Tables hash their *logical* content (column names, dtypes, values in a fixed row order), never
the bytes a parquet writer produced, so writer version, compression or row-group layout can
never change a fingerprint.

Derived seeds follow one recipe::

    int(sha256("parity:v1|<base_seed>|<stage>|<target>|<view>|<symbol>|<purpose>")[:8], 16)

Python's ``hash()`` is never used: it is salted per process.
"""

import dataclasses
import datetime as dt
import enum
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

SEED_RECIPE_VERSION = "parity:v1"
# LightGBM echoes run-time settings (thread count, file paths) into the model text; they do not
# change the model, so they are dropped before hashing.
_LGBM_ECHO_LINE = re.compile(r"^\[(num_threads|output_model|input_model|data|valid|verbosity|"
                             r"device_type|gpu_\w+|saved_feature_importance_type): .*\]$")


def _canonical_float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def to_canonical(value: Any) -> Any:
    """Turn ``value`` into plain JSON types following the canonical rule, or raise TypeError."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return to_canonical(value.value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _canonical_float(float(value))
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, pd.Timestamp | dt.datetime):
        return _utc_iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return value.as_posix()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return _canonical_mapping(value)
    if isinstance(value, set | frozenset):
        return sorted((to_canonical(v) for v in value), key=canonical_json)
    if isinstance(value, np.ndarray):
        return [to_canonical(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [to_canonical(v) for v in value]
    raise TypeError(f"canonical JSON cannot encode {type(value).__name__}: {value!r:.80}")


def _canonical_mapping(mapping: Mapping) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in mapping.items():
        if not isinstance(key, str | int | enum.Enum):
            raise TypeError(f"canonical JSON keys must be str/int/enum, got {type(key).__name__}")
        text_key = str(key.value if isinstance(key, enum.Enum) else key)
        if text_key in out:
            raise TypeError(f"canonical JSON: two keys render as {text_key!r}")
        out[text_key] = to_canonical(item)
    return out


def _utc_iso(value: dt.datetime) -> str:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        raise TypeError(f"naive datetime {value!r} has no time zone; parity stores UTC only")
    return stamp.tz_convert("UTC").isoformat()


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value`` (sorted keys, compact, fixed float rule)."""
    return json.dumps(to_canonical(value), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def sha256_json(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``: metrics, configs, feature lists, splits."""
    return sha256_text(canonical_json(value))


def sha256_file(path: PurePath | str, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def table_sha256(frame: pd.DataFrame, sort_by: Iterable[str] | None = None) -> str:
    """Logical hash of a table: column names, dtypes and every value, in a fixed row order.

    Columns are taken in sorted name order; rows are sorted by ``sort_by`` and then by every
    other column as a tie-breaker, so that neither column order nor row order from a writer can
    change the hash, even when ``sort_by`` is not a unique key. The index is ignored. Every row
    is hashed (never a prefix).
    """
    columns = sorted(str(c) for c in frame.columns)
    if len(columns) != frame.shape[1]:
        raise TypeError("table_sha256: column names must be unique strings")
    ordered = frame.rename(columns=str)[columns]
    # Ties in sort_by would leave rows in input order (stable sort): break them by the rest.
    # When sort_by is already a unique key the order is the same without tie-breakers, so the
    # (costly) many-column sort is skipped; the hash does not change either way.
    first = [str(c) for c in sort_by] if sort_by is not None else []
    unique_key = bool(first) and not ordered.duplicated(first).any()
    keys = first if unique_key else first + [c for c in columns if c not in first]
    if keys:
        ordered = ordered.sort_values(keys, kind="mergesort", ignore_index=True)
    digest = hashlib.sha256()
    digest.update(canonical_json({"columns": columns, "n_rows": len(ordered)}).encode())
    for name in columns:
        digest.update(_column_digest(name, ordered[name]))
    return digest.hexdigest()


def _column_digest(name: str, column: pd.Series) -> bytes:
    """Per-column bytes: name, a normalized dtype tag, then the values in a fixed encoding."""
    tag, payload = _column_payload(column)
    head = canonical_json({"name": name, "dtype": tag}).encode()
    return hashlib.sha256(head + b"\x00" + payload).digest()


def _column_payload(column: pd.Series) -> tuple[str, bytes]:
    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        if getattr(dtype, "tz", None) is None:
            raise TypeError(f"column {column.name!r} holds naive datetimes; parity stores UTC")
        nanos = column.dt.tz_convert("UTC").dt.as_unit("ns").astype("int64").to_numpy()
        return "datetime_ns_utc", nanos.astype("<i8").tobytes()
    if pd.api.types.is_bool_dtype(dtype) and not column.isna().any():
        return "bool", column.to_numpy(dtype=np.uint8).tobytes()
    if pd.api.types.is_integer_dtype(dtype) and not column.isna().any():
        return "int64", column.to_numpy(dtype="<i8").tobytes()
    if pd.api.types.is_numeric_dtype(dtype):
        values = column.to_numpy(dtype="<f8", na_value=np.nan)
        # One NaN bit pattern. -0.0 becomes 0.0: the row sort treats them as equal, so their
        # relative order (and the hashed bytes) would otherwise follow the input row order.
        values = np.where(np.isnan(values), np.nan, values)
        values = np.where(values == 0.0, 0.0, values)
        return "float64", values.tobytes()
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        texts = [None if (v is None or (isinstance(v, float) and math.isnan(v))) else str(v)
                 for v in column.tolist()]
        # A list of str/None is already canonical: json.dumps gives canonical_json's exact text
        # without walking every value through to_canonical (20k rows: ~20 ms saved).
        return "string", json.dumps(texts, ensure_ascii=False, separators=(",", ":")).encode()
    raise TypeError(f"table_sha256: column {column.name!r} has unsupported dtype {dtype}")


def lightgbm_model_sha256(model_text: str) -> str:
    """Hash LightGBM model text without the config-echo lines (e.g. ``[num_threads: 2]``)."""
    kept = [line for line in model_text.splitlines() if not _LGBM_ECHO_LINE.match(line.strip())]
    return sha256_text("\n".join(kept))


def derive_seed(base_seed: int, stage: str, target: str = "", view: str = "",
                symbol: str = "", purpose: str = "") -> int:
    """A 32-bit seed derived from ``base_seed`` by the documented SHA-256 recipe (module doc)."""
    fields = [stage, target, view, symbol, purpose]
    # "|" is the separator: ("a|b", "c") and ("a", "b|c") would give the same material and seed.
    if any("|" in field for field in fields):
        raise ValueError(f"derive_seed: fields must not contain '|', got {fields!r}")
    material = "|".join([SEED_RECIPE_VERSION, str(int(base_seed)), *fields])
    return int(sha256_text(material)[:8], 16)
