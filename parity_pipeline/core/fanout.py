"""Per-target fan-out helpers: step keys for targets and merging per-target results.

A stage run as one step per target must produce the very artifact the one-process function
produces (same bytes, same hash), so the parts are merged here, sorted by their unit key, onto
``base``: the stage run on no unit at all, which carries the panel-level fields (n_effective,
per-symbol counts, seed, config) every part must agree with.
"""

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from parity_pipeline.core.hashing import sha256_text

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def mapping_keys(names: Iterable[str]) -> dict[str, str]:
    """Target name -> Dagster mapping key (``[A-Za-z0-9_]+``), one-to-one and stable.

    Unsafe characters become ``_``; a name that then clashes with another gets the first 8 hex
    digits of its SHA-256 appended, so keys never depend on iteration order."""
    ordered = sorted(set(names))
    plain = {name: _KEY_UNSAFE.sub("_", name) or "_" for name in ordered}
    counts: dict[str, int] = {}
    for key in plain.values():
        counts[key] = counts.get(key, 0) + 1
    return {name: key if counts[key] == 1 else f"{key}_{sha256_text(name)[:8]}"
            for name, key in plain.items()}


def merge_parts(base: Any, parts: Sequence[Any], field: str,
                sort_key: Callable[[Any], Any]) -> Any:
    """``base`` with ``field`` holding every part's items, sorted by ``sort_key``."""
    for part in parts:
        if dataclasses.replace(part, **{field: ()}) != base:
            raise ValueError(f"a per-target part disagrees with the stage on the panel-level "
                             f"fields (n_effective, counts, seed or config) of {type(base)}")
    items = sorted((item for part in parts for item in getattr(part, field)), key=sort_key)
    keys = [sort_key(item) for item in items]
    if len(set(keys)) != len(keys):
        raise ValueError(f"per-target parts overlap in {field}: a unit was computed twice")
    return dataclasses.replace(base, **{field: tuple(items)})
