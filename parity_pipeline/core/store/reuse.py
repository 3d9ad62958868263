"""Reuse of unit results across runs: a nightly run recomputes only what changed.

Every model fit of the three stages goes through ``reused_or_computed(kind, inputs, compute)``.
Its **reuse key** is the SHA-256 of the canonical JSON of::

    {"recipe": "parity.reuse/v1", "kind": <what is computed>,
     "environment": <sha256 of the package source files and the library versions>,
     "inputs": <everything the computation reads: configs, seeds, the exact numeric inputs>}

where an array enters by dtype, shape and the SHA-256 of its bytes, and a table by
``rows_in_order_sha256`` (its values with the row order, which a fit depends on). What a fit
reads of the panel enters as ``PanelDigests.columns``: the digest of each symbol's rows of each
column it reads (and, for a pooled fit of every symbol, the order the panel interleaves the
symbols' rows), so each value is hashed once per step, not once per fit. So a unit is reused only
when its strict identity (data, code, libraries, config, seed) is the one of an earlier result;
one symbol's new bars change the inputs of that symbol's fits and of the pooled
(cross-sectional) fits, and nothing else.

Results are pickled into the content store (an object named by its SHA-256, hashed when
read: a damaged or missing object is a miss, recomputed and re-stored) and the key's entry
``globals/reuse/<aa>/<key>.json`` names the object. Both are written by rename without fsync:
losing or damaging one to a crash costs a recomputation, never a wrong answer.

A whole target of a stage is also keyed (``UnitMemo.whole``: its inputs are the whole panel's
digest, the registry, the plan, the config and the seed), so an unchanged nightly loads one
result per target instead of hashing each fit's inputs and loading each fit's result.

The memo in use is a context variable (``active``), so the stage functions keep their
signatures; outside ``active`` every fit is computed and nothing is stored.
"""

import contextlib
import contextvars
import dataclasses
import json
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from parity_pipeline.core.errors import ArtifactIntegrityError, ParityStorageError
from parity_pipeline.core.hashing import rows_in_order_sha256, sha256_bytes, sha256_json
from parity_pipeline.core.store.atomic import atomic_write_bytes
from parity_pipeline.core.store.content import ContentStore, split_name

RECIPE = "parity.reuse/v1"
T = TypeVar("T")


def unit_label(stage: str, target: str, view: str, symbol: str = "", family: str = "") -> str:
    """How a unit is named in reuse reports and matched to its snapshot: stage|target|view,
    plus |symbol|family for a trained model."""
    return "|".join([stage, target, view, *((symbol, family) if stage == "TRAINING" else ())])


def all_reused(unit_maps: Sequence[Mapping[str, bool]]) -> dict[str, bool]:
    """Units by label, from several pieces' reports: a unit computed in several pieces (the
    symbol groups of a SYMBOL_SPECIFIC ranking or selection unit) counts as reused only when
    every piece reused it."""
    merged: dict[str, bool] = {}
    for units in unit_maps:
        for label, reused in units.items():
            merged[label] = merged.get(label, True) and reused
    return merged


class SharedInput:
    """An input several keys share (one symbol's rows of a panel column, read by every
    training unit of that symbol): built and digested once, when a key first needs it, and
    never when no key is made (reuse off without a store). It digests exactly as the value it
    builds."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build: Callable[[], Any] | None = build
        self._digest: Any = None

    def digest(self) -> Any:
        if self._build is not None:
            self._digest, self._build = digest(self._build()), None
        return self._digest


class PanelDigests:
    """One panel's values as reuse-key inputs: each symbol's rows of each column digested at most
    once, when a key first reads them, and shared by every key made from this panel.

    ``columns(names, symbols)`` identifies what a fit reads: the columns ``names`` of the rows of
    ``symbols`` (each symbol's rows in the panel's order), or of every symbol (``None``) with
    the panel's symbol column (the order the pooled rows come in). A fit's rows are a function
    of those values and of the code (in every key's environment), so they identify its input as
    strictly as its rows' bytes. Digested per (symbol, column), each value is hashed once per
    step instead of once per fit that reads it: every pooled fit reads every symbol's rows, and
    the 12 training calls of a step read the same columns (0.23 s of key CPU per default run
    before, see docs/performance.md)."""

    def __init__(self, panel: pd.DataFrame) -> None:
        self.panel = panel
        self._positions: dict[str, np.ndarray] | None = None
        self._cells: dict[tuple[str, str], str] = {}
        self._interleaving: str | None = None

    def columns(self, names: Sequence[str], symbols: Sequence[str] | None = None) -> SharedInput:
        """The digest of ``names`` of ``symbols``' rows, made only when a key needs it."""
        chosen = None if symbols is None else tuple(str(symbol) for symbol in symbols)
        return SharedInput(lambda: self._digest(tuple(names), chosen))

    def _digest(self, names: tuple[str, ...], symbols: Sequence[str] | None) -> str:
        positions = self._symbol_positions()
        chosen = sorted(positions) if symbols is None else sorted(symbols)
        unknown = [symbol for symbol in chosen if symbol not in positions]
        if unknown:
            raise ValueError(f"symbols {unknown} have no rows in the panel a key reads")
        body: dict[str, Any] = {"symbols": chosen, "columns": {
            name: [self._cell(symbol, name) for symbol in chosen] for name in names}}
        if symbols is None:  # a pooled fit reads the rows in the panel's interleaving
            if self._interleaving is None:
                self._interleaving = rows_in_order_sha256(self.panel[["symbol"]])
            body["interleaving"] = self._interleaving
        return sha256_json(body)

    def _symbol_positions(self) -> dict[str, np.ndarray]:
        if self._positions is None:
            self._positions = {str(symbol): rows for symbol, rows in
                               self.panel.groupby("symbol", sort=True).indices.items()}
        return self._positions

    def _cell(self, symbol: str, name: str) -> str:
        cell = self._cells.get((symbol, name))
        if cell is None:
            values = self.panel[name]
            rows = self._symbol_positions()[symbol]
            if isinstance(values.dtype, np.dtype) and values.dtype.kind in "biuf":
                part: Any = values.to_numpy()[rows]  # numpy numbers: digested by their bytes
            else:
                part = values.iloc[rows].to_frame()  # ts and text: by the table rule
            cell = self._cells[symbol, name] = sha256_json(digest(part))
        return cell


_PANEL: contextvars.ContextVar[PanelDigests | None] = contextvars.ContextVar("parity_panel",
                                                                          default=None)


@contextlib.contextmanager
def panel_digests(panel: pd.DataFrame) -> Iterator[PanelDigests]:
    """Share one ``PanelDigests`` of ``panel`` with every key made inside (a step's pieces,
    a stage call's units); the one already shared is kept when it is of this very frame."""
    shared = _PANEL.get()
    if shared is not None and shared.panel is panel:
        yield shared
        return
    digests = PanelDigests(panel)
    token = _PANEL.set(digests)
    try:
        yield digests
    finally:
        _PANEL.reset(token)


def panel_columns(panel: pd.DataFrame, names: Sequence[str],
                  symbols: Sequence[str] | None = None) -> SharedInput:
    """``PanelDigests.columns`` of ``panel``: through the shared digests when they are of this
    very frame object (the stages never change a frame in place), else digests of its own."""
    shared = _PANEL.get()
    digests = shared if shared is not None and shared.panel is panel else PanelDigests(panel)
    return digests.columns(names, symbols)


def digest(value: Any) -> Any:
    """``value`` with every array and table replaced by its content digest (for the key)."""
    if isinstance(value, SharedInput):
        return value.digest()
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:  # its bytes are object addresses, different in every process
            raise TypeError("an object array has no stable bytes to key by; pass a DataFrame "
                            "(hashed by the table rule) or an array of numbers")
        data = np.ascontiguousarray(value)
        return {"array": str(data.dtype), "shape": list(data.shape),
                "sha256": sha256_bytes(data.data.cast("B"))}
    if isinstance(value, pd.DataFrame):  # row order is part of a fit's input
        return {"table": rows_in_order_sha256(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__,
                **{f.name: digest(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {str(k): digest(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [digest(v) for v in value]
    return value


class UnitMemo:
    """Reuse keys -> stored results for one store, environment and on/off switch.

    ``enabled=False`` (``--no-reuse``) recomputes every fit but still records the results, so
    the next run can reuse them. ``unit(label)`` reports whether a unit's fits were reused."""

    def __init__(self, content: ContentStore | None, environment: str, enabled: bool) -> None:
        self.content, self.environment, self.enabled = content, environment, enabled
        self.hits = self.misses = 0
        self.units: dict[str, bool] = {}

    def key(self, kind: str, inputs: Any) -> str:
        return sha256_json({"recipe": RECIPE, "kind": kind, "environment": self.environment,
                            "inputs": digest(inputs)})

    def reused_or_computed(self, kind: str, inputs: Any, compute: Callable[[], T],
                           valid: Callable[[T], bool] = lambda _value: True) -> T:
        if self.content is None:
            self.misses += 1
            return compute()
        key = self.key(kind, inputs)
        if self.enabled:
            found = self._load(key)
            if found is not None and valid(found[0]):
                self.hits += 1
                return found[0]
        self.misses += 1
        value = compute()
        self._store(key, kind, value)
        return value

    def whole(self, kind: str, inputs: Any, compute: Callable[[], T],
              valid: Callable[[T], bool] = lambda _value: True) -> T:
        """A whole target's work under one key, whose inputs cover those of all its units.

        A hit returns the stored result at the cost of one load, and every unit the result
        held counts as reused. On a miss (e.g. one symbol's bars changed) ``compute`` runs unit
        by unit, each unit reused or computed under its own key, and the whole is stored with
        the labels of its units."""
        if self.content is None:
            return compute()
        key = self.key(kind, inputs)
        if self.enabled:
            found = self._load(key)
            if found is not None and valid(found[0][0]):
                value, labels = found[0]
                self.hits += 1
                self.units.update({label: True for label in labels})
                return value
        before = set(self.units)
        value = compute()
        self._store(key, kind, (value, sorted(set(self.units) - before)))
        return value

    @contextlib.contextmanager
    def unit(self, label: str) -> Iterator[None]:
        """Reused: at least one fit reused and none computed (a unit blocked before any fit,
        e.g. too few symbols, is not reported as reused)."""
        hits, misses = self.hits, self.misses
        yield
        self.units[label] = self.misses == misses and self.hits > hits

    def summary(self) -> str:
        reused = sum(self.units.values())
        return (f"{reused} of {len(self.units)} units reused ({self.hits} stored results "
                f"reused, {self.misses} fits computed)")

    # --- storage --------------------------------------------------------------------------
    def _store_of(self) -> ContentStore:
        if self.content is None:  # callers compute without storing when there is no store
            raise RuntimeError("a UnitMemo without a content store neither loads nor stores")
        return self.content

    def _entry(self, key: str) -> Path:
        return self._store_of().reuse_entry_path(key)

    def _load(self, key: str) -> tuple[Any] | None:
        try:
            name = json.loads(self._entry(key).read_text(encoding="utf-8"))["object"]
            split_name(name)
            return (pickle.loads(self._store_of().read_bytes(name)),)
        except (OSError, ValueError, KeyError, TypeError, ArtifactIntegrityError,
                ParityStorageError, pickle.UnpicklingError, EOFError, AttributeError):
            return None  # no entry, or an unreadable or damaged one: compute again

    def _store(self, key: str, kind: str, value: Any) -> None:
        # neither is durable: a lost or damaged result or entry (hashed on read) only costs a
        # recomputation (module doc); the fsyncs took ~0.5-0.6 ms of wall a store, 287 a run
        name = self._store_of().put_bytes(pickle.dumps(value, protocol=5), ".pkl", durable=False)
        atomic_write_bytes(self._entry(key), json.dumps({"kind": kind, "object": name},
                                                        sort_keys=True).encode(), durable=False)


COMPUTE_ONLY = UnitMemo(None, "", enabled=False)
_ACTIVE: contextvars.ContextVar[UnitMemo] = contextvars.ContextVar("parity_reuse",
                                                                   default=COMPUTE_ONLY)


def current() -> UnitMemo:
    return _ACTIVE.get()


@contextlib.contextmanager
def active(memo: UnitMemo) -> Iterator[UnitMemo]:
    token = _ACTIVE.set(memo)
    try:
        yield memo
    finally:
        _ACTIVE.reset(token)


def reused_or_computed(kind: str, inputs: Any, compute: Callable[[], T],
                       valid: Callable[[T], bool] = lambda _value: True) -> T:
    return current().reused_or_computed(kind, inputs, compute, valid)
