"""``parity diff``: why two runs differ, at the fingerprint level (DESIGN §1).

Each unit (stage × target × view × symbol × family) is compared fingerprint by fingerprint in
lineage order; the first one that differs is where the runs part, and its cause is classified:

- ``universe``: the comparable key moved because the symbols differ (one added or removed);
- ``config``: the comparable key moved otherwise (N, split config, registry, hyperparameters,
  label definition): the runs were never meant to agree;
- ``data``: same comparable key, different data fingerprint (the sampled window changed);
- ``nan_rates``: as ``data``, and a column of the unit's symbol (any symbol, for a
  cross-sectional unit) has a NaN rate that moved by more than ``NAN_RATE_CAUSE`` while its
  row count stayed the same: a burst of NaN, which no count shows;
- ``code/library``: same data, different library versions or git commit;
- ``seed``: same replicate key, different ``train_seed``;
- ``non-determinism``: same strict key (and code) yet different outputs: a bug.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.repro.checks import describe_nan_rate_changes, nan_rate_changes

LINEAGE = (
    ("data window", "data_fingerprint"),
    ("split", "split_signature"),
    ("candidate features", "feature_fingerprint_input"),
    ("selected features", "feature_fingerprint_output"),
    ("hyperparameters", "hyperparameters_signature"),
    ("seed", "train_seed"),
    ("model artifact", "model_artifact_sha256"),
    ("predictions", "predictions_sha256"),
    ("metrics", "metrics_sha256"),
)
CAUSES = ("universe", "config", "data", "nan_rates", "code/library", "seed", "non-determinism")
# the registry's default max_nan_rate_change: smaller moves come with any new bars (a target's
# last horizon_bars rows, a warm-up), so "data" names them better
NAN_RATE_CAUSE = 0.05
STAGE_ORDER = ("TARGET_RANKING", "FEATURE_SELECTION", "TRAINING")  # the pipeline's order


@dataclass(frozen=True)
class RunSide:
    """What diff needs from one run: its snapshots and run-level provenance."""

    run_id: str
    snapshots: Sequence[Mapping[str, Any]]
    per_symbol_n: Mapping[str, int]
    library_versions: Mapping[str, str]
    git_commit: str | None
    settings: Mapping[str, Any]
    assets: Mapping[str, str] = field(default_factory=dict)  # asset -> output's logical sha256
    has_snapshots: bool = True
    # {symbol: {column: NaN rate}} of the sampled window (none for runs made before they were)
    nan_rates: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitDiff:
    unit: str
    differing: tuple[str, ...]
    first_divergence: str
    cause: str
    metric_deltas: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DiffReport:
    run_a: str
    run_b: str
    compared: int
    identical: int
    units: tuple[UnitDiff, ...]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    per_symbol_changes: dict[str, str]
    setting_changes: dict[str, str]
    library_changes: dict[str, str]
    cause_counts: dict[str, int]
    asset_changes: dict[str, str] = field(default_factory=dict)
    note: str = ""
    nan_rate_changes: dict[str, str] = field(default_factory=dict)  # symbol -> "col a -> b, .."

    @property
    def differs(self) -> bool:
        return bool(self.units or self.only_in_a or self.only_in_b or self.per_symbol_changes
                    or self.asset_changes or self.nan_rate_changes)


def unit_name(snapshot: Mapping[str, Any]) -> str:
    parts = [snapshot.get("stage"), snapshot.get("target"), snapshot.get("view"),
             snapshot.get("symbol"), snapshot.get("model_family")]
    return " ".join(str(p) for p in parts if p)


def _value(snapshot: Mapping[str, Any], key: str) -> Any:
    group = snapshot.get("comparison_group") or {}
    return snapshot.get(key, group.get(key))


def compare_runs(a: RunSide, b: RunSide, targets: Sequence[str] = ()) -> DiffReport:
    """Every unit of both runs, or only the units of ``targets`` (e.g. a one-target run against
    the same target in the nightly run)."""
    both = a.has_snapshots and b.has_snapshots  # else: stage outputs only (see the note)
    units_a = {unit_name(s): s for s in _of_targets(a.snapshots, targets)} if both else {}
    units_b = {unit_name(s): s for s in _of_targets(b.snapshots, targets)} if both else {}
    if targets and not units_a and not units_b:
        known = sorted({str(s.get("target")) for s in (*a.snapshots, *b.snapshots)})
        raise ParityInputError(f"no snapshot of targets {sorted(targets)} in runs {a.run_id} "
                               f"or {b.run_id}; their targets: {', '.join(known)}")
    common = sorted(set(units_a) & set(units_b), key=_lineage_order)
    code_changed = a.git_commit != b.git_commit or dict(a.library_versions) != dict(
        b.library_versions)
    # provenance is compared where both runs recorded it (a run of one stage alone has none)
    count_changes = (_changes(a.per_symbol_n, b.per_symbol_n)
                     if a.per_symbol_n and b.per_symbol_n else {})
    # a symbol whose window changed length is "data": its NaN rates moved with the window
    nan_symbols = {c["symbol"] for c in nan_rate_changes(a.nan_rates, b.nan_rates,
                                                          NAN_RATE_CAUSE)} - set(count_changes)
    diffs = [d for d in (compare_unit(name, units_a[name], units_b[name], code_changed,
                                      nan_symbols) for name in common) if d is not None]
    counts = {cause: sum(d.cause == cause for d in diffs) for cause in CAUSES}
    return DiffReport(
        run_a=a.run_id, run_b=b.run_id, compared=len(common), identical=len(common) - len(diffs),
        units=tuple(diffs), only_in_a=tuple(sorted(set(units_a) - set(units_b))),
        only_in_b=tuple(sorted(set(units_b) - set(units_a))),
        per_symbol_changes=count_changes,
        setting_changes=_changes(a.settings, b.settings) if both else {},
        library_changes=_changes({**a.library_versions, "git": a.git_commit},
                                 {**b.library_versions, "git": b.git_commit}) if both else {},
        cause_counts={k: v for k, v in counts.items() if v},
        # a target filter compares units; whole-stage outputs cover every target
        asset_changes={} if targets else _asset_changes(a.assets, b.assets),
        note=_scope_note(a, b),
        nan_rate_changes=describe_nan_rate_changes(nan_rate_changes(a.nan_rates, b.nan_rates)))


def _asset_changes(a: Mapping[str, str], b: Mapping[str, str]) -> dict[str, str]:
    """Stage outputs both runs stand for whose content differs (first 12 hex digits)."""
    return {asset: f"{a[asset][:12]} -> {b[asset][:12]}" for asset in a
            if asset in b and a[asset] != b[asset]}


def _scope_note(a: RunSide, b: RunSide) -> str:
    without = [side.run_id for side in (a, b) if not side.has_snapshots]
    if not without:
        return ""
    return (f"run(s) {', '.join(without)} made no snapshots: compared the stage outputs both "
            "runs stand for (" + ", ".join(sorted(set(a.assets) & set(b.assets))) + ")")


def _of_targets(snapshots: Sequence[Mapping[str, Any]], targets: Sequence[str]
                ) -> list[Mapping[str, Any]]:
    wanted = set(targets)
    return [s for s in snapshots if not wanted or s.get("target") in wanted]


def _lineage_order(unit: str) -> tuple[int, str]:
    stage = unit.split(" ", 1)[0]
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), unit)


def compare_unit(name: str, a: Mapping[str, Any], b: Mapping[str, Any],
                 code_changed: bool, nan_symbols: Collection[str] = ()) -> UnitDiff | None:
    differing = tuple(label for label, key in LINEAGE if _value(a, key) != _value(b, key))
    if not differing:
        return None
    return UnitDiff(unit=name, differing=differing, first_divergence=differing[0],
                    cause=classify(a, b, code_changed, nan_symbols),
                    metric_deltas=metric_deltas(a, b))


def classify(a: Mapping[str, Any], b: Mapping[str, Any], code_changed: bool,
             nan_symbols: Collection[str] = ()) -> str:
    """``nan_symbols``: the symbols whose NaN rates moved by more than ``NAN_RATE_CAUSE``."""
    if a.get("comparable_key") != b.get("comparable_key"):
        return "universe" if _value(a, "universe_sig") != _value(b, "universe_sig") else "config"
    if _value(a, "data_fingerprint") != _value(b, "data_fingerprint"):
        symbol = a.get("symbol")  # none: a cross-sectional unit reads every symbol
        touched = symbol in nan_symbols if symbol else bool(nan_symbols)
        return "nan_rates" if touched else "data"
    if a.get("replicate_key") != b.get("replicate_key") or code_changed:
        return "code/library"
    if a.get("strict_key") != b.get("strict_key"):
        return "seed"
    return "non-determinism"


def metric_deltas(a: Mapping[str, Any], b: Mapping[str, Any], limit: int = 4) -> dict[str, str]:
    values_a = {**(a.get("metrics") or {}), **{k: a[k] for k in ("skill", "score") if k in a}}
    values_b = {**(b.get("metrics") or {}), **{k: b[k] for k in ("skill", "score") if k in b}}
    deltas = {}
    for key in sorted(set(values_a) & set(values_b)):
        x, y = values_a[key], values_b[key]
        if isinstance(x, int | float) and isinstance(y, int | float) and x != y:
            deltas[key] = f"{x:.4g} -> {y:.4g}"
    return dict(list(deltas.items())[:limit])


def _changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, str]:
    return {key: f"{a.get(key, '-')} -> {b.get(key, '-')}" for key in sorted(set(a) | set(b))
            if a.get(key) != b.get(key)}


def render_text(report: DiffReport, max_units: int = 30) -> str:
    lines = [f"parity diff {report.run_a} -> {report.run_b}",
             f"units: {report.compared} compared, {report.identical} identical, "
             f"{len(report.units)} differ, {len(report.only_in_a)} only in A, "
             f"{len(report.only_in_b)} only in B"]
    if report.note:
        lines.append(f"note: {report.note}")
    for title, changes in (("stage outputs", report.asset_changes),
                           ("sample rows per symbol", report.per_symbol_changes),
                           ("settings", report.setting_changes),
                           ("code/library", report.library_changes)):
        if changes:
            lines.append(f"{title}: " + ", ".join(f"{k} {v}" for k, v in changes.items()))
    if report.nan_rate_changes:
        lines.append("NaN rates: " + "; ".join(f"{symbol}: {moves}" for symbol, moves
                                                in report.nan_rate_changes.items()))
    if report.cause_counts:
        lines.append("causes: " + ", ".join(f"{k} x{v}" for k, v in report.cause_counts.items()))
        firsts = [u.first_divergence for u in report.units]
        lines.append("first divergence: " + ", ".join(
            f"{label} x{firsts.count(label)}" for label, _ in LINEAGE if label in firsts))
    for unit in report.units[:max_units]:
        deltas = "; ".join(f"{k} {v}" for k, v in unit.metric_deltas.items())
        lines.append(f"  {unit.unit}: first divergence at {unit.first_divergence} "
                     f"(cause: {unit.cause}); differ: {', '.join(unit.differing)}"
                     + (f"; {deltas}" if deltas else ""))
    if len(report.units) > max_units:
        lines.append(f"  ... {len(report.units) - max_units} more (use --json)")
    lines.append("identical" if not report.differs else "runs differ")
    return "\n".join(lines)
