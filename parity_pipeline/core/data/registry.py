"""The feature registry: the declared schema that tells features from targets (DESIGN §2).

File ``feature_registry.json`` beside the data::

    {"schema_version": 1, "interval": "5m", "bar_minutes": 5,
     "columns": [
       {"name": "ret_1h", "role": "feature", "timeframe": "1h", "lookback_bars": 12},
       {"name": "fwd_ret_60m", "role": "target", "task": "regression", "horizon_bars": 12,
        "horizon_minutes": 60, "definition": "close[t+12] / close[t] - 1"},
       {"name": "fwd_high_60m", "role": "label_side", "horizon_minutes": 60}, ...]}

Roles: ``timestamp`` (``ts``), ``ohlcv``, ``raw`` (inputs that are not features), ``feature``,
``target`` (task ``regression`` or ``binary``) and ``label_side`` (computed from the future,
never a feature). The registry hash covers the whole content, not just the names.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.hashing import sha256_json

REGISTRY_FILENAME = "feature_registry.json"
ROLES = ("timestamp", "ohlcv", "raw", "feature", "target", "label_side")
TASKS = ("regression", "binary")


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    timeframe: str
    lookback_bars: int


@dataclass(frozen=True)
class TargetSpec:
    name: str
    task: str
    horizon_bars: int
    horizon_minutes: int
    definition: str


@dataclass(frozen=True)
class FeatureRegistry:
    interval: str
    bar_minutes: int
    features: tuple[FeatureSpec, ...]  # sorted by name
    targets: tuple[TargetSpec, ...]  # sorted by name
    label_side: tuple[str, ...]
    other_columns: tuple[str, ...]  # ts, ohlcv and raw inputs
    content_hash: str
    source: str
    # optional: an out-of-sample |IC| of a return target above this is implausible for the
    # asset class (e.g. 0.1 for daily equities): ranking flags it as a suspected leak
    max_plausible_ic: float | None = None
    # a feature NaN on more than this share of a symbol's window is refused before launch
    max_nan_rate: float = 0.1
    # a column's NaN rate in a symbol's window moving by more than this since the previous run
    # fails the WARN check nan_rate_drift
    max_nan_rate_change: float = 0.05

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.features)

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.targets)

    def target(self, name: str) -> TargetSpec:
        for spec in self.targets:
            if spec.name == name:
                return spec
        raise ParityInputError(f"target {name!r} is not declared in {self.source}; declared: "
                               f"{', '.join(self.target_names)}")

    def check_targets(self, names: Sequence[str]) -> None:
        """Refuse a partial run's target list before anything runs, listing the declared ones."""
        undeclared = sorted(set(names) - set(self.target_names))
        if undeclared:
            raise ParityInputError(f"targets {undeclared} are not declared in {self.source}; "
                                   f"declared: {', '.join(self.target_names)} (settings.targets "
                                   "in the launchpad, or `parity run --targets`)")

    @property
    def declared_columns(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.feature_names) | set(self.target_names)
                            | set(self.label_side) | set(self.other_columns)))


def load_registry(data_dir: Path) -> FeatureRegistry:
    path = Path(data_dir) / REGISTRY_FILENAME
    if not path.is_file():
        raise ParityInputError(
            f"feature registry {path} is missing: every dataset needs a {REGISTRY_FILENAME} "
            "declaring features and targets (run `parity data synth` or `parity data import`)")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ParityInputError(f"feature registry {path} is not valid JSON ({exc}); "
                               "restore it from the generator or fix the syntax") from exc
    return registry_from_dict(content, source=str(path))


def registry_from_dict(content: Any, source: str = "<registry>") -> FeatureRegistry:
    if not isinstance(content, dict) or not isinstance(content.get("columns"), list):
        raise ParityInputError(f"feature registry {source}: expected an object with a "
                               "'columns' list")
    entries = [_checked_entry(entry, source) for entry in content["columns"]]
    names = [entry["name"] for entry in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ParityInputError(f"feature registry {source}: columns declared twice: {duplicates}")
    by_role = {role: [e for e in entries if e["role"] == role] for role in ROLES}
    if not by_role["feature"] or not by_role["target"]:
        raise ParityInputError(f"feature registry {source}: needs at least one feature and one "
                               "target column")
    return FeatureRegistry(
        interval=str(content.get("interval", "")),
        bar_minutes=_positive_int(content.get("bar_minutes"), "bar_minutes", source),
        features=tuple(sorted((_feature(e, source) for e in by_role["feature"]),
                              key=lambda s: s.name)),
        targets=tuple(sorted((_target(e, source) for e in by_role["target"]),
                             key=lambda s: s.name)),
        label_side=tuple(sorted(e["name"] for e in by_role["label_side"])),
        other_columns=tuple(sorted(e["name"] for role in ("timestamp", "ohlcv", "raw")
                                   for e in by_role[role])),
        content_hash=sha256_json(sorted(entries, key=lambda e: e["name"])
                                 + [{"bar_minutes": content.get("bar_minutes"),
                                     "interval": content.get("interval")}]
                                 + ([{"max_plausible_ic": content["max_plausible_ic"]}]
                                    if "max_plausible_ic" in content else [])
                                 + ([{"max_nan_rate": content["max_nan_rate"]}]
                                    if "max_nan_rate" in content else [])
                                 + ([{"max_nan_rate_change": content["max_nan_rate_change"]}]
                                    if "max_nan_rate_change" in content else [])),
        source=source,
        max_plausible_ic=_plausible_ic(content.get("max_plausible_ic"), source),
        max_nan_rate=_share(content.get("max_nan_rate", 0.1), "max_nan_rate", source),
        max_nan_rate_change=_share(content.get("max_nan_rate_change", 0.05),
                                   "max_nan_rate_change", source),
    )


def _share(value: Any, name: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ParityInputError(f"feature registry {source}: {name} must be a number in [0, 1], "
                               f"got {value!r}")
    return float(value)


def _plausible_ic(value: Any, source: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ParityInputError(f"feature registry {source}: max_plausible_ic must be a "
                               f"number in (0, 1], got {value!r}")
    return float(value)


def _checked_entry(entry: Any, source: str) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ParityInputError(f"feature registry {source}: every column needs a 'name': {entry!r}")
    if entry.get("role") not in ROLES:
        raise ParityInputError(f"feature registry {source}: column {entry['name']!r} has role "
                               f"{entry.get('role')!r}; use one of {list(ROLES)}")
    return entry


# Names that say "computed from the future": targets (fwd_ret_60m, y_will_peak_...) and label-side
# columns (fwd_high_60m) follow them, so such a name declared as a feature is a leak waiting to
# be selected first.
FORWARD_PREFIXES = ("fwd_", "y_", "future_", "next_", "target_", "label_")


def _feature(entry: dict[str, Any], source: str) -> FeatureSpec:
    prefix = next((p for p in FORWARD_PREFIXES if entry["name"].lower().startswith(p)), None)
    if prefix:
        raise ParityInputError(
            f"feature registry {source}: feature {entry['name']!r} is named like a column "
            f"computed from the future (prefix {prefix!r}); a feature must be known at the "
            "bar's close: give it the role 'target' or 'label_side', or, if it truly uses only "
            "past data, rename it (in the data and the registry)")
    return FeatureSpec(name=entry["name"], timeframe=str(entry.get("timeframe", "")),
                       lookback_bars=_positive_int(entry.get("lookback_bars"),
                                                   f"{entry['name']}.lookback_bars", source))


def _target(entry: dict[str, Any], source: str) -> TargetSpec:
    if entry.get("task") not in TASKS:
        raise ParityInputError(f"feature registry {source}: target {entry['name']!r} has task "
                               f"{entry.get('task')!r}; use one of {list(TASKS)}")
    return TargetSpec(name=entry["name"], task=entry["task"],
                      horizon_bars=_positive_int(entry.get("horizon_bars"),
                                                 f"{entry['name']}.horizon_bars", source),
                      horizon_minutes=_positive_int(entry.get("horizon_minutes"),
                                                    f"{entry['name']}.horizon_minutes", source),
                      definition=str(entry.get("definition", "")))


def _positive_int(value: Any, field: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ParityInputError(f"feature registry {source}: field {field!r} must be a positive "
                               f"integer, got {value!r}")
    return value
