"""The parity checks as pure functions (DESIGN §3): plain inputs in, a ``CheckVerdict`` out.

Severity policy (why, per check):
- ``n_effective`` parity and the sample limit are ERROR and blocking: a stage that saw other
  rows than the panel (e.g. a whole history instead of the last N rows) or ignored N produces
  wrong results, which must not flow into training.
- ``n_effective`` drift (vs the previous run with the same comparable key) is ERROR but not
  blocking: the window moved (a truncated or late file), every number is still computed on the
  one shared panel, and people need the full run and ``parity diff`` to see why.
- ``train_seed``: a seed that differs from the configured ``base_seed`` or between stages is an
  ERROR (stages would disagree on what was fitted with which seed). A deliberate seed change
  between runs in one comparison group is a WARN: legitimate, but people must hear of it.
- Output parity: same ``strict_key`` with different outputs is genuine non-determinism: ERROR.
- NaN-rate drift (vs the previous complete run on the same dataset) is a WARN: a burst of NaN
  keeps every count the same, so nothing else sees it, yet it may be a real market halt.
- No model trained is a WARN: ranking may rightly block every target (noise, a partial run),
  but a run that ends with empty tables must say so and why.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ERROR, WARN = "ERROR", "WARN"

# The checks' names (asset check keys in Dagster, fields of alerts and `parity diff`).
N_EFFECTIVE_PARITY = "n_effective_parity"
N_EFFECTIVE_DRIFT = "n_effective_drift"
TRAIN_SEED_DRIFT = "train_seed_drift"
SAMPLE_LIMIT_RESPECTED = "sample_limit_respected"
OUTPUT_PARITY = "output_parity"
UNIVERSE_CHANGE = "universe_change"
MODELS_TRAINED = "models_trained"
NAN_RATE_DRIFT = "nan_rate_drift"
OUTPUT_FINGERPRINTS = ("model_artifact_sha256", "predictions_sha256", "metrics_sha256",
                       "feature_fingerprint_input", "feature_fingerprint_output")


@dataclass(frozen=True)
class CheckVerdict:
    passed: bool
    severity: str
    summary: str
    metadata: dict[str, Any] = field(default_factory=dict)


def count_changes(previous: Mapping[str, int], current: Mapping[str, int]) -> dict[str, str]:
    """Per-symbol counts that differ, as ``"prev -> cur"`` (missing shown as 0)."""
    symbols = sorted(set(previous) | set(current))
    return {s: f"{previous.get(s, 0)} -> {current.get(s, 0)}" for s in symbols
            if previous.get(s, 0) != current.get(s, 0)}


def n_effective_parity(stage_counts: Mapping[str, int],
                       panel_counts: Mapping[str, int]) -> CheckVerdict:
    """The stage saw exactly the panel's rows per symbol."""
    current_n, panel_n = sum(stage_counts.values()), sum(panel_counts.values())
    changes = count_changes(panel_counts, stage_counts)
    meta = {"observed": current_n, "expected": panel_n, "stage_vs_panel_changes": changes}
    if changes:
        return CheckVerdict(False, ERROR, f"stage saw {current_n} rows but the panel has "
                            f"{panel_n} ({len(changes)} symbols differ)", meta)
    return CheckVerdict(True, ERROR, f"stage saw exactly the panel's {panel_n} rows", meta)


def n_effective_drift(stage_counts: Mapping[str, int],
                      previous: Mapping[str, Any] | None) -> CheckVerdict:
    """As many rows per symbol as the previous materialization with the same comparable key."""
    current_n = sum(stage_counts.values())
    if previous is None:
        return CheckVerdict(True, ERROR, "first materialization of this comparison group",
                            {"observed": current_n, "expected": current_n})
    drift = count_changes(previous.get("per_symbol_counts") or {}, stage_counts)
    meta = {"observed": current_n, "expected": previous.get("n_effective"),
            "previous_n_effective": previous.get("n_effective"), "current_n_effective": current_n,
            "previous_run_id": previous.get("run_id"), "changed_symbols": drift}
    if previous.get("n_effective") != current_n or drift:
        return CheckVerdict(False, ERROR, f"n_effective {previous.get('n_effective')} -> "
                            f"{current_n} within one comparable key; changed: "
                            + ", ".join(f"{s} {c}" for s, c in drift.items()), meta)
    return CheckVerdict(True, ERROR, f"n_effective {current_n} as in the previous run", meta)


def universe_change(universe: Sequence[str], previous: Sequence[str] | None,
                    previous_run_id: str | None) -> CheckVerdict:
    """The same symbols as the previous complete run on the same dataset (WARN: a universe
    change starts new comparison groups, so no drift check would see it)."""
    meta = {"previous_run_id": previous_run_id, "universe": list(universe)}
    if previous is None:
        return CheckVerdict(True, WARN, "first run on this dataset", meta)
    added = sorted(set(universe) - set(previous))
    removed = sorted(set(previous) - set(universe))
    meta.update({"added": added, "removed": removed})
    if added or removed:
        return CheckVerdict(False, WARN, f"universe changed since run {previous_run_id}: added "
                            f"{added or 'none'}, removed {removed or 'none'} (new comparison "
                            "groups start; `parity diff` shows the cause universe)", meta)
    return CheckVerdict(True, WARN, f"{len(universe)} symbols, as in the previous run", meta)


NanRates = Mapping[str, Mapping[str, float]]  # {symbol: {column: share of NaN rows}}


def nan_rate_changes(previous: NanRates, current: NanRates, threshold: float = 0.0
                     ) -> list[dict[str, Any]]:
    """(symbol, column) pairs recorded in both runs whose NaN rate moved by more than
    ``threshold``, sorted; a symbol or column in one run only is a universe or registry change,
    reported elsewhere."""
    changes = []
    for symbol in sorted(set(previous) & set(current)):
        before, after = previous[symbol], current[symbol]
        for column in sorted(set(before) & set(after)):
            # rounded: rates are recorded to 6 decimals, a float residue must not cross the line
            if round(abs(after[column] - before[column]), 6) > threshold:
                changes.append({"symbol": symbol, "column": column,
                                "previous": before[column], "current": after[column]})
    return changes


def describe_nan_rate_changes(changes: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """{symbol: "noise_1 0.000 -> 0.375, ..."} for ``nan_rate_changes``."""
    by_symbol: dict[str, list[str]] = {}
    for change in changes:
        by_symbol.setdefault(change["symbol"], []).append(
            f"{change['column']} {_rate(change['previous'])} -> {_rate(change['current'])}")
    return {symbol: ", ".join(moves) for symbol, moves in by_symbol.items()}


def _rate(value: float) -> str:
    # 3 decimals reads best; more when that would hide the change (one row of a long window)
    return f"{value:.3f}" if value == round(value, 3) else f"{value:.6f}".rstrip("0")


def nan_rate_drift(current: NanRates, previous: NanRates | None, previous_run_id: str | None,
                   max_change: float) -> CheckVerdict:
    """Every feature's and target's NaN rate per symbol within ``max_change`` of the previous
    complete run on the same dataset (WARN: a burst of NaN keeps n and N as they were)."""
    meta: dict[str, object] = {"previous_run_id": previous_run_id,
                               "max_nan_rate_change": max_change}
    if not previous:  # none, or one made before NaN rates were recorded
        return CheckVerdict(True, WARN, "no previous run with NaN rates on this dataset", meta)
    changed = nan_rate_changes(previous, current, max_change)
    meta.update({"observed": len(changed), "expected": 0, "changed": changed})
    if changed:
        moves = "; ".join(f"{s}: {m}" for s, m in describe_nan_rate_changes(changed).items())
        return CheckVerdict(False, WARN, f"NaN rates moved by more than {max_change:g} since run "
                            f"{previous_run_id}: {moves} (`parity diff` names them too)", meta)
    return CheckVerdict(True, WARN, f"NaN rates within {max_change:g} of run {previous_run_id}",
                        meta)


def train_seed_drift(observed: int, base_seed: int, upstream: Mapping[str, int],
                     previous: int | None) -> CheckVerdict:
    meta = {"observed": observed, "expected": base_seed, "upstream_seeds": dict(upstream),
            "previous_train_seed": previous}
    mismatched = {stage: seed for stage, seed in upstream.items() if seed != observed}
    if observed != base_seed or mismatched:
        return CheckVerdict(False, ERROR, f"train_seed {observed} differs from base_seed "
                            f"{base_seed} or from stages {mismatched}", meta)
    if previous is not None and previous != observed:
        return CheckVerdict(False, WARN, f"train_seed changed {previous} -> {observed} within "
                            "the comparison group (deliberate seed change?)", meta)
    return CheckVerdict(True, ERROR, f"train_seed {observed} == base_seed everywhere", meta)


@dataclass(frozen=True)
class StageObservation:
    """What one stage saw, for its checks: rows per symbol, its seed, its upstream's seeds."""

    counts: Mapping[str, int]
    train_seed: int
    upstream_seeds: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PanelReference:
    """The sampled panel a stage must match: rows per symbol and its N (None: not found)."""

    counts: Mapping[str, int]
    max_rows: int | None


def stage_verdicts(seen: StageObservation, panel: PanelReference, max_rows: int, base_seed: int,
                   previous: Mapping[str, Any] | None) -> dict[str, CheckVerdict]:
    """The four checks every stage asset carries, by check name (``previous``: the last ledger
    record of the same comparable key written by a complete run)."""
    return {
        N_EFFECTIVE_PARITY: n_effective_parity(seen.counts, panel.counts),
        N_EFFECTIVE_DRIFT: n_effective_drift(seen.counts, previous),
        TRAIN_SEED_DRIFT: train_seed_drift(seen.train_seed, base_seed, seen.upstream_seeds,
                                           previous.get("train_seed") if previous else None),
        SAMPLE_LIMIT_RESPECTED: sample_limit(seen.counts, max_rows, panel.max_rows),
    }


def snapshots_train_seed_drift(current: Sequence[Mapping[str, Any]],
                               history: Sequence[Mapping[str, Any]],
                               base_seed: int) -> CheckVerdict:
    """``train_seed_drift`` over a run's snapshot index entries (every stage's): per stage the
    seed that differs from ``base_seed`` if there is one (else ``base_seed``), and the seed of
    the last earlier entry in one of the run's comparison groups."""
    stage_seeds: dict[str, int] = {}
    for entry in current:
        if stage_seeds.get(entry["stage"], base_seed) == base_seed:
            stage_seeds[entry["stage"]] = entry["train_seed"]
    observed = next((s for s in stage_seeds.values() if s != base_seed), base_seed)
    keys = {entry["comparable_key"] for entry in current}
    previous = [e["train_seed"] for e in history if e["comparable_key"] in keys]
    return train_seed_drift(observed, base_seed, stage_seeds, previous[-1] if previous else None)


def sample_limit(per_symbol_n: Mapping[str, int], limit: int,
                 panel_limit: int | None = None) -> CheckVerdict:
    largest = max(per_symbol_n.values(), default=0)
    over = {s: n for s, n in sorted(per_symbol_n.items()) if n > limit}
    meta = {"observed_max_n": largest, "expected_max": limit, "panel_limit": panel_limit,
            "symbols_over_limit": over}
    if over:
        return CheckVerdict(False, ERROR, f"{len(over)} symbols exceed the limit {limit}", meta)
    if panel_limit is not None and panel_limit != limit:
        return CheckVerdict(False, ERROR, f"this stage uses N={limit} but the panel used "
                            f"N={panel_limit}", meta)
    return CheckVerdict(True, ERROR, f"max n {largest} <= {limit}", meta)


def output_parity(current: Sequence[Mapping[str, Any]],
                  history: Sequence[Mapping[str, Any]]) -> CheckVerdict:
    """Every earlier snapshot with the same strict_key must have the same output hashes."""
    by_key: dict[str, Mapping[str, Any]] = {}
    for entry in history:
        by_key.setdefault(entry["strict_key"], entry)
    compared, diverged = 0, []
    for entry in current:
        earlier = by_key.get(entry["strict_key"])
        if earlier is None or earlier.get("run_id") == entry.get("run_id"):
            continue
        compared += 1
        fields = [f for f in OUTPUT_FINGERPRINTS if earlier.get(f) != entry.get(f)]
        if fields:
            diverged.append({"unit": _unit_name(entry), "fields": fields,
                             "earlier_run_id": earlier.get("run_id")})
    meta = {"observed": len(diverged), "expected": 0, "compared_units": compared,
            "diverged": diverged[:20]}
    summary = (f"{len(diverged)} of {compared} units differ under the same strict_key"
               if diverged else f"{compared} units identical to earlier runs with the same "
               "strict_key")
    return CheckVerdict(not diverged, ERROR, summary, meta)


def _unit_name(entry: Mapping[str, Any]) -> str:
    parts = [entry.get("stage"), entry.get("target"), entry.get("view"), entry.get("symbol"),
             entry.get("model_family")]
    return "/".join(str(p) for p in parts if p)



MAX_LISTED = 10  # blocked views named in a summary; the metadata lists them all


def models_trained(n_models: int, ranking_rows: Sequence[Mapping[str, Any]]) -> CheckVerdict:
    """At least one model was trained (WARN: a run can rightly route no target, e.g. on noise,
    but people must hear it and why, not find an empty trained_models.csv). ``ranking_rows``:
    the ranking table's rows (target, view, route, reasons), to name each blocked view's first
    reason."""
    blocked = [{"target": row["target"], "view": row["view"],
                "reason": (row.get("reasons") or "").split("; ")[0] or "no reason recorded"}
               for row in ranking_rows if row["route"] == "BLOCKED"]
    meta = {"observed": n_models, "expected": "at least 1", "blocked": blocked}
    if n_models:
        return CheckVerdict(True, WARN, f"{n_models} models trained", meta)
    return CheckVerdict(False, WARN, f"no model was trained: {_why_no_model(ranking_rows, blocked)}"
                        " (ranked_targets.csv has every reason; each CSV of the run keeps its "
                        "header)", meta)


def _why_no_model(ranking_rows: Sequence[Mapping[str, Any]],
                  blocked: Sequence[Mapping[str, str]]) -> str:
    if not ranking_rows:
        return "no ranking of this run was found to say why"
    if len(blocked) < len(ranking_rows):  # routed views, yet no model: selection kept none
        return f"ranking routed {len(ranking_rows) - len(blocked)} target x view units"
    named = "; ".join(f"{b['target']} {b['view']}: {b['reason']}" for b in blocked[:MAX_LISTED])
    more = f"; and {len(blocked) - MAX_LISTED} more" if len(blocked) > MAX_LISTED else ""
    return f"ranking blocked every target ({named}{more})"
