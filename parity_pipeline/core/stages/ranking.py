"""TARGET_RANKING: score every declared target in both views out of fold, then route it.

Inputs: the panel (``symbol``, ``ts`` UTC, declared columns as float64) and the feature registry.
Only registry *features* are model inputs; targets and ``label_side`` columns never are.

1. **Leak scan, before any model.** A candidate feature is a near copy of a target (or of a
   ``label_side`` column) when ``|Pearson corr| >= leak_corr`` (0.99) on the rows where both are
   present, or, for a binary target, when the feature rounded to 0/1 equals the label (or its
   complement) on ``>= leak_label_agreement`` (99.9%) of those rows. Such a feature is dropped
   from every model and reported as a ``LeakFinding``. Pairs with fewer than ``min_rows``
   overlapping rows are not judged. Data read from files has passed the stricter pre-launch
   gate (``core/data/leak_gate``, 0.95 per symbol), so this scan is the second line.
2. **Out-of-fold scores.** Per target, rows with a null target are dropped; walk-forward folds
   purged by time (``horizon_minutes + purge_buffer_minutes``, ``cv.purged_walk_forward``) feed
   LightGBM models with a fixed number of trees and ``seed = train_seed = base_seed``.
   CROSS_SECTIONAL fits one model per fold on the pooled panel; regression is scored by the
   Spearman IC across symbols at each timestamp (at least ``min_symbols_per_timestamp``
   symbols, no constant side), averaged per session (whole UTC days, at least the horizon long,
   so overlapping labels do not fake independent draws); mean, stderr and ``t = mean/stderr``
   are over the session means, each session weighing equally. Binary: ROC AUC per fold.
   SYMBOL_SPECIFIC fits one model per symbol per fold (``ss_n_folds``, ``ss_n_estimators``);
   one value per (symbol, fold): time-series Spearman IC or AUC. Binary ``t = (AUC-0.5)/stderr``.
3. **One skill scale.** ``skill = IC`` for regression and ``skill = 2*AUC - 1`` (Somers' D, the
   rank correlation of score and label) for binary, so both tasks meet the same thresholds.
4. **Eligibility** (``ViewScore.reasons``; any of these blocks the view): ``target not in
   panel``; ``too few symbols for a cross-section`` (CROSS_SECTIONAL with fewer than
   ``min_cs_symbols`` = 2 symbols: it would duplicate SYMBOL_SPECIFIC); ``too few rows``
   (< ``min_rows`` non-null rows pooled; a symbol with fewer is skipped in SYMBOL_SPECIFIC);
   ``degenerate target`` (constant; binary with values other than 0/1 or a class below
   ``min_class_fraction`` = 1%); ``too few values`` for a standard error
   (< 2); ``suspected leak`` when ``|skill| >= leak_skill`` (0.5: real market signals are far
   weaker) and ``|t| >= min_t_stat`` (an implausible value that is also significant).
   Skipped symbols are listed too but do not block the view on their own.
5. **Routing.** A view qualifies when eligible, ``skill >= min_skill`` (0.02) and
   ``t_stat >= min_t_stat`` (2.0). Both qualify -> BOTH; one -> that view; none -> BLOCKED.

Iteration is sorted everywhere (targets, symbols, features); no randomness besides the seed.
"""

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from parity_pipeline.core.data.registry import FeatureRegistry, TargetSpec
from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.hashing import sha256_json
from parity_pipeline.core.stages import binned, scoring
from parity_pipeline.core.stages.cv import Fold, purged_walk_forward, split_signature
from parity_pipeline.core.stages.panel import fit_columns, require_each_symbol_once, symbols_of
from parity_pipeline.core.stages.progress import Report, UnitProgress
from parity_pipeline.core.store import reuse

logger = logging.getLogger(__name__)
STAGE = "TARGET_RANKING"

CROSS_SECTIONAL, SYMBOL_SPECIFIC, BOTH, BLOCKED = ("CROSS_SECTIONAL", "SYMBOL_SPECIFIC", "BOTH",
                                                   "BLOCKED")
VIEWS = (CROSS_SECTIONAL, SYMBOL_SPECIFIC)  # the order a target's two scores are kept in
REASON_MISSING = "target not in panel"
REASON_FEW_SYMBOLS = "too few symbols for a cross-section"
TABLE_COLUMNS = ("target", "task", "view", "metric", "score", "stderr", "t_stat", "skill",
                 "route", "n_effective", "reasons")


@dataclass(frozen=True)
class RankingConfig:
    n_folds: int = 5  # CROSS_SECTIONAL walk-forward folds
    purge_buffer_minutes: int = 30  # purge = target horizon_minutes + this
    min_rows: int = 300  # non-null target rows needed pooled, and per symbol
    min_skill: float = 0.02  # routing: skill (IC or 2*AUC-1) needed for a view to qualify
    min_t_stat: float = 2.0  # routing: t-stat needed for a view to qualify
    # leak scan: |Pearson corr| of feature vs target on the pooled panel. Files read for a run
    # already passed core/data/leak_gate (0.95 per symbol, before launch), so this is the second
    # line, for what slips past the gate (a copy showing on the pooled panel alone, a panel
    # built in code). Kept at 0.99: the config is part of every ranking's identity, so
    # aligning it would start new comparison groups and catch nothing the gate lets through.
    leak_corr: float = 0.99
    leak_label_agreement: float = 0.999  # leak scan: rounded feature == binary label share
    # CROSS_SECTIONAL trees (fixed; no early stopping): 50 at learning rate 0.1, not 100 at
    # 0.05, for 20% less ranking CPU with the same routes on the default sample (README)
    n_estimators: int = 50
    learning_rate: float = 0.1
    num_leaves: int = 15
    min_child_samples: int = 50
    # feature histograms of 63 bins, not LightGBM's 255: ranking CPU -39% on the default
    # sample, same routes, skills within +-0.015 (README, Performance); as in selection
    max_bin: int = 63
    ss_n_folds: int = 3  # SYMBOL_SPECIFIC folds per symbol
    ss_n_estimators: int = 50  # SYMBOL_SPECIFIC trees per model
    ss_learning_rate: float = 0.05
    min_train_rows: int = 100  # folds with fewer purged training rows are dropped (cv module)
    min_symbols_per_timestamp: int = 3  # cross-sections smaller than this have no IC
    min_cs_symbols: int = 2  # fewer symbols in the panel: no CROSS_SECTIONAL view at all
    min_class_fraction: float = 0.01  # binary: rarer class below this share is degenerate
    leak_skill: float = 0.5  # |skill| at or above this is a suspected leak, never a signal


@dataclass(frozen=True)
class ViewScore:
    target: str
    task: str
    view: str
    metric: str
    mean: float
    stderr: float
    t_stat: float
    skill: float
    n_values: int  # sessions (CS regression), folds (CS binary), (symbol, fold) pairs (SS)
    n_effective: int  # non-null-target rows this view modelled and scored out of fold
    eligible: bool
    reasons: tuple[str, ...]
    split_signature: str  # "" when no split was made


@dataclass(frozen=True)
class TargetRoute:
    target: str
    task: str
    route: str
    cs_skill: float
    ss_skill: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class LeakFinding:
    feature: str
    target: str
    kind: str  # "near_copy_corr" | "label_agreement"
    value: float


@dataclass(frozen=True)
class RankingResult:
    scores: tuple[ViewScore, ...]
    routes: tuple[TargetRoute, ...]
    leaks: tuple[LeakFinding, ...]
    candidate_features: tuple[str, ...]
    excluded_features: tuple[str, ...]
    n_effective: int
    per_symbol_counts: dict[str, int]
    train_seed: int
    config: dict[str, Any]
    # rows per target (present in the panel) dropped before modelling for a null target
    null_target_rows: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class RankingPlan:
    """What every per-target ranking step shares: the targets to score and the leak scan."""

    targets: tuple[str, ...]  # registry order (sorted by name); all targets or a chosen subset
    candidate_features: tuple[str, ...]
    excluded_features: tuple[str, ...]
    leaks: tuple[LeakFinding, ...]
    config: RankingConfig


def rank_targets(panel: pd.DataFrame, registry: FeatureRegistry, config: RankingConfig,
                 base_seed: int, report: Report | None = None,
                 targets: Sequence[str] | None = None) -> RankingResult:
    """Rank every registry target (or ``targets``) in both views and route it (module doc).

    The Dagster wiring runs the same three parts as separate steps (the targets in parts in the
    middle); this function is their composition, for one process."""
    frame = prepared_panel(panel)
    plan = plan_ranking(frame, registry, config, targets)
    progress = UnitProgress("TARGET_RANKING", len(plan.targets), "targets", report)
    view_pairs = {}
    # every fit's reuse key reads the same column digests; equal matrices are binned once
    with reuse.panel_digests(frame), binned.shared():
        for name in plan.targets:
            view_pairs[name] = (
                score_planned_view(frame, registry, plan, name, CROSS_SECTIONAL, base_seed),
                score_planned_view(frame, registry, plan, name, SYMBOL_SPECIFIC, base_seed))
            progress.done(name)
    return assemble_ranking(frame, registry, plan, view_pairs, base_seed)


def plan_ranking(frame: pd.DataFrame, registry: FeatureRegistry, config: RankingConfig,
                 targets: Sequence[str] | None = None) -> RankingPlan:
    """Step 1 on a ``prepared_panel``: the leak scan (against every declared target, so a
    one-target run excludes the same features as a full run) and the targets to score."""
    chosen = registry.target_names if not targets else tuple(
        registry.target(name).name for name in sorted(set(targets)))
    features = declared_features(frame, registry)
    leaks = scan_leaks(frame, registry, features, config)
    excluded = tuple(sorted({finding.feature for finding in leaks}))
    candidates = tuple(name for name in features if name not in excluded)
    if not candidates:
        raise ParityInputError(f"every feature in {registry.source} failed the leak scan "
                               f"({list(excluded)}); no feature is left to rank targets with")
    return RankingPlan(targets=chosen, candidate_features=candidates,
                       excluded_features=excluded, leaks=leaks, config=config)


def score_planned_view(frame: pd.DataFrame, registry: FeatureRegistry, plan: RankingPlan,
                       target: str, view: str, base_seed: int) -> ViewScore:
    """Steps 2-4 for one target of the plan in one view (independent of every other target and
    view: the Dagster wiring computes them as separate pieces)."""
    spec = registry.target(target)
    return score_view(frame, spec, plan.candidate_features,
                      _leak_rule(plan.config, spec, registry), base_seed, view)


def assemble_ranking(frame: pd.DataFrame, registry: FeatureRegistry, plan: RankingPlan,
                     view_pairs: Mapping[str, tuple[ViewScore, ViewScore]],
                     base_seed: int) -> RankingResult:
    """Step 5 and the result, in the plan's target order whatever order the scores came in."""
    missing = sorted(set(plan.targets) - set(view_pairs))
    if missing:
        raise ValueError(f"ranking scores missing for planned targets {missing}")
    specs = [registry.target(name) for name in plan.targets]
    pairs = [view_pairs[spec.name] for spec in specs]
    routes = tuple(route_target(spec, cs, ss, plan.config)
                   for spec, (cs, ss) in zip(specs, pairs, strict=True))
    counts = frame.groupby("symbol", sort=True).size()
    return RankingResult(scores=tuple(score for pair in pairs for score in pair),
                         routes=routes, leaks=plan.leaks,
                         candidate_features=plan.candidate_features,
                         excluded_features=plan.excluded_features,
                         n_effective=len(frame), train_seed=int(base_seed),
                         per_symbol_counts={str(k): int(v) for k, v in counts.items()},
                         config=dataclasses.asdict(plan.config),
                         null_target_rows={spec.name: int(frame[spec.name].isna().sum())
                                           for spec in specs if spec.name in frame.columns})


def _leak_rule(config: RankingConfig, spec: TargetSpec,
               registry: FeatureRegistry) -> RankingConfig:
    """The dataset knows its asset class: an IC above ``max_plausible_ic`` on a return target
    (0.1 on daily equities) is a suspected leak. Labels keep ``leak_skill``: a volatility-scaled
    barrier is legitimately easier to predict (volatility clusters)."""
    limit = registry.max_plausible_ic
    if spec.task == "regression" and limit is not None and limit < config.leak_skill:
        return dataclasses.replace(config, leak_skill=limit)
    return config


def prepared_panel(panel: pd.DataFrame) -> pd.DataFrame:
    """A new frame sorted by (ts, symbol) after checking the panel contract."""
    missing = [name for name in ("symbol", "ts") if name not in panel.columns]
    if missing or panel.empty:
        raise ParityInputError(f"ranking panel needs rows and columns symbol, ts; missing "
                               f"{missing or 'rows'}: build it with the sampled_data stage")
    if not isinstance(panel["ts"].dtype, pd.DatetimeTZDtype):
        raise ParityInputError("ranking panel column ts must be tz-aware UTC datetimes, got "
                               f"{panel['ts'].dtype}; localize it to UTC when loading")
    if panel.duplicated(["symbol", "ts"]).any():
        raise ParityInputError("ranking panel has duplicate (symbol, ts) rows; de-duplicate "
                               "the input bars before sampling")
    # cv compares nanosecond integers; pandas 3 readers may hand over microsecond stamps.
    frame = panel.assign(ts=panel["ts"].dt.tz_convert("UTC").dt.as_unit("ns"))
    return frame.sort_values(["ts", "symbol"], kind="mergesort", ignore_index=True)


def declared_features(frame: pd.DataFrame, registry: FeatureRegistry) -> tuple[str, ...]:
    """Registry features, sorted; targets and label_side columns are never candidates."""
    never = set(registry.target_names) | set(registry.label_side)
    features = sorted(name for name in registry.feature_names if name not in never)
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise ParityInputError(f"features declared in {registry.source} are missing from the "
                               f"panel: {missing}; regenerate the data or fix the registry")
    return tuple(features)


def scan_leaks(frame: pd.DataFrame, registry: FeatureRegistry, features: tuple[str, ...],
               config: RankingConfig) -> tuple[LeakFinding, ...]:
    """Near-copy features of targets and label_side columns (module docstring, step 1)."""
    tasks = {spec.name: spec.task for spec in registry.targets}
    tasks.update({name: "label_side" for name in registry.label_side})
    labels = {name: task for name, task in sorted(tasks.items()) if name in frame.columns}
    findings = [LeakFinding(*found) for found in scoring.leak_scan(
        frame, labels, features, config.min_rows, config.leak_corr, config.leak_label_agreement)]
    for finding in findings:
        logger.warning("leak scan: feature %s vs %s: %s = %.6f (excluded)", finding.feature,
                       finding.target, finding.kind, finding.value)
    return tuple(findings)


def score_target(frame: pd.DataFrame, spec: TargetSpec, features: tuple[str, ...],
                 config: RankingConfig, train_seed: int) -> tuple[ViewScore, ViewScore]:
    """The CROSS_SECTIONAL and SYMBOL_SPECIFIC scores of one target."""
    cross, specific = (score_view(frame, spec, features, config, train_seed, view)
                       for view in VIEWS)
    return cross, specific


def score_view(frame: pd.DataFrame, spec: TargetSpec, features: tuple[str, ...],
               config: RankingConfig, train_seed: int, view: str) -> ViewScore:
    """One target's score in one view (``CROSS_SECTIONAL`` or ``SYMBOL_SPECIFIC``)."""
    blockers = view_blockers(frame, spec, config, view)
    if blockers:
        return _blocked(spec, view, blockers)
    with reuse.current().unit(reuse.unit_label(STAGE, spec.name, view)):
        if view == CROSS_SECTIONAL:
            return cross_sectional_score(frame, spec, features, config, train_seed)
        share = symbol_specific_share(frame, spec, features, config, train_seed, None)
        return symbol_specific_from_shares(spec, [share], share.symbols, config)


def view_blockers(frame: pd.DataFrame, spec: TargetSpec, config: RankingConfig,
                  view: str) -> list[str]:
    """Why ``view`` of the target cannot be scored on this panel at all (empty: it can)."""
    if view not in VIEWS:
        raise ValueError(f"unknown ranking view {view!r}; expected one of {list(VIEWS)}")
    if spec.name not in frame.columns:
        return [REASON_MISSING]
    problems = scoring.target_problems(frame[spec.name], spec.task, config.min_rows,
                                        config.min_class_fraction)
    if problems:
        return problems
    n_symbols = frame["symbol"].nunique()
    if view == CROSS_SECTIONAL and n_symbols < config.min_cs_symbols:
        # one pooled model over one symbol is the symbol-specific model again, scored with an
        # inflated sample: the view is skipped, never a duplicate of SYMBOL_SPECIFIC
        return [f"{REASON_FEW_SYMBOLS}: {n_symbols} < {config.min_cs_symbols} (min_cs_symbols)"]
    return []


def check_history(windows: Mapping[str, pd.DatetimeIndex], registry: FeatureRegistry,
                  config: RankingConfig, max_rows_per_symbol: int) -> None:
    """Before launch: every symbol's window must allow the purged walk-forward of every target
    (the same ``purged_walk_forward`` ranking calls), so a short history is refused with advice
    that works instead of failing mid-run."""
    pooled = pd.DatetimeIndex(sorted(set().union(*windows.values()))) if windows else None
    checked: set[tuple[pd.Timedelta, int]] = set()
    for spec in registry.targets:
        purge = purge_for(spec, config)
        if (purge, spec.horizon_bars) in checked:
            continue  # the folds depend on the target only through these two (4 of 8 targets)
        checked.add((purge, spec.horizon_bars))
        for symbol, stamps in sorted(windows.items()):
            try:
                purged_walk_forward(pd.Series(stamps), config.ss_n_folds, purge,
                                    config.min_train_rows, spec.horizon_bars)
            except ParityInputError as exc:
                short = len(stamps) < max_rows_per_symbol
                advice = (f"the file holds only {len(stamps)} rows, so raising "
                          "--max-rows-per-symbol cannot help: add history to the file, leave "
                          "the symbol out (--symbols), or leave out long-horizon targets "
                          "(--targets)" if short else
                          "raise --max-rows-per-symbol (the file has more history)")
                raise ParityInputError(
                    f"symbol {symbol}: {len(stamps)} rows ({stamps[0]} .. {stamps[-1]}) are too "
                    f"little history for target {spec.name} (purge {purge} and "
                    f"{spec.horizon_bars} bars, "
                    f"{config.ss_n_folds} walk-forward folds of >= {config.min_train_rows} "
                    f"training rows): {exc}. {advice}; nothing was run") from exc
        if pooled is not None:
            purged_walk_forward(pd.Series(pooled), config.n_folds, purge, config.min_train_rows,
                                spec.horizon_bars)


def purge_for(spec: TargetSpec, config: RankingConfig) -> pd.Timedelta:
    return pd.Timedelta(minutes=spec.horizon_minutes + config.purge_buffer_minutes)


def cross_sectional_oof(frame: pd.DataFrame, spec: TargetSpec, features: tuple[str, ...],
                        config: RankingConfig, train_seed: int) -> tuple[pd.DataFrame, list[Fold]]:
    """Out-of-fold predictions of the pooled model: columns symbol, ts, target, pred, fold
    (rows with a null target dropped; pred NaN and fold -1 on rows never tested)."""
    rows = frame.loc[frame[spec.name].notna()].reset_index(drop=True)
    folds = purged_walk_forward(rows["ts"], config.n_folds, purge_for(spec, config),
                                config.min_train_rows, spec.horizon_bars)
    params = scoring.lgbm_params(config.n_estimators, config.learning_rate, config.num_leaves,
                                 config.min_child_samples, config.max_bin, train_seed)
    target = rows[spec.name].to_numpy(dtype=float)
    pred, fold_id = scoring.oof_predictions(spec.task, params, rows[list(features)].to_numpy(
        dtype=float), target, folds, fit_columns(frame, spec, features))
    oof = pd.DataFrame({"symbol": rows["symbol"], "ts": rows["ts"], "target": target,
                        "pred": pred, "fold": fold_id})
    return oof, folds


def cross_sectional_score(frame: pd.DataFrame, spec: TargetSpec, features: tuple[str, ...],
                          config: RankingConfig, train_seed: int) -> ViewScore:
    oof, folds = cross_sectional_oof(frame, spec, features, config, train_seed)
    tested = oof.loc[oof["fold"] >= 0]
    if spec.task == "binary":
        values = scoring.fold_values("binary", tested["pred"].to_numpy(),
                                     tested["target"].to_numpy(), tested["fold"].to_numpy())
    else:
        ic = scoring.per_timestamp_ic(tested["ts"], tested["pred"].to_numpy(),
                                      tested["target"].to_numpy(),
                                      config.min_symbols_per_timestamp)
        block_days = max(1, math.ceil(spec.horizon_minutes / 1440))
        values = scoring.session_means(ic, block_days).tolist()
    signature = split_signature(folds, purge_for(spec, config), spec.horizon_bars)
    return _view_score(spec, CROSS_SECTIONAL, values, len(tested), signature, [], config)


@dataclass(frozen=True)
class SymbolShare:
    """Some symbols' share of one target's SYMBOL_SPECIFIC score, in symbol order: the values
    of their (symbol, fold) pairs, the rows they scored, their split signatures and why any was
    skipped. Shares of consecutive symbol groups, joined in order, are the whole view's."""

    target: str
    symbols: tuple[str, ...]
    values: tuple[float, ...]
    n_scored: int
    signatures: tuple[tuple[str, str], ...]  # (symbol, split signature) of each scored symbol
    notes: tuple[str, ...]


def symbol_specific_share(frame: pd.DataFrame, spec: TargetSpec, features: tuple[str, ...],
                          config: RankingConfig, train_seed: int,
                          symbols: Sequence[str] | None) -> SymbolShare:
    """One model per fold for each of ``symbols`` (None: every symbol of the panel), symbols
    without labels too."""
    params = scoring.lgbm_params(config.ss_n_estimators, config.ss_learning_rate,
                                 config.num_leaves, config.min_child_samples, config.max_bin,
                                 train_seed)
    values: list[float] = []
    notes: list[str] = []
    signatures: list[tuple[str, str]] = []
    n_scored = 0
    rows = frame if symbols is None else frame.loc[frame["symbol"].isin(symbols)]
    for symbol, all_rows in rows.groupby("symbol", sort=True):
        problems = scoring.target_problems(all_rows[spec.name], spec.task, config.min_rows,
                                            config.min_class_fraction, where=str(symbol))
        if problems:
            notes += [f"{problem} (symbol skipped)" for problem in problems]
            continue
        part = all_rows.loc[all_rows[spec.name].notna()]
        folds = purged_walk_forward(part["ts"], config.ss_n_folds, purge_for(spec, config),
                                    config.min_train_rows, spec.horizon_bars)
        symbol_values, symbol_scored = scoring.scored_folds(
            spec.task, params, part[list(features)].to_numpy(dtype=float),
            part[spec.name].to_numpy(dtype=float), folds,
            fit_columns(frame, spec, features, [str(symbol)]))
        values, n_scored = values + symbol_values, n_scored + symbol_scored
        signatures.append((str(symbol), split_signature(folds, purge_for(spec, config),
                                                        spec.horizon_bars)))
    given = symbols_of(frame) if symbols is None else tuple(sorted(symbols))
    return SymbolShare(spec.name, given, tuple(values), n_scored, tuple(signatures),
                       tuple(notes))


def symbol_specific_from_shares(spec: TargetSpec, shares: Sequence[SymbolShare],
                                symbols: Sequence[str], config: RankingConfig) -> ViewScore:
    """The SYMBOL_SPECIFIC score from shares covering ``symbols`` (the panel's, sorted), in
    any order: the values join in symbol order, so the score is the one a single share of all
    symbols gives, to the bit."""
    ordered = sorted(shares, key=lambda share: share.symbols)
    if any(share.target != spec.name for share in ordered):
        raise ValueError(f"SYMBOL_SPECIFIC shares of {spec.name} include another target's")
    require_each_symbol_once((share.symbols for share in ordered), symbols,
                             f"SYMBOL_SPECIFIC shares of {spec.name}")
    values = [value for share in ordered for value in share.values]
    n_scored = sum(share.n_scored for share in ordered)
    signatures = {symbol: sig for share in ordered for symbol, sig in share.signatures}
    signature = sha256_json(signatures) if signatures else ""
    # a dozen (symbol, fold) values can agree by chance: the stderr is never below the one
    # that the effective number of scored rows allows (scoring.null_stderr)
    floor = scoring.null_stderr(spec.task, n_scored, spec.horizon_bars) if n_scored else 0.0
    return _view_score(spec, SYMBOL_SPECIFIC, values, n_scored, signature,
                       [note for share in ordered for note in share.notes], config,
                       stderr_floor=floor)


def score_planned_share(frame: pd.DataFrame, registry: FeatureRegistry, plan: RankingPlan,
                        target: str, symbols: Sequence[str], base_seed: int) -> SymbolShare:
    """One group of symbols' share of a target's SYMBOL_SPECIFIC score (a piece of the
    Dagster wiring when the panel has more than ``fanout.SS_SYMBOLS_PER_PIECE`` symbols); empty
    when the view is blocked on the whole panel (``assemble_symbol_specific`` says why)."""
    spec = registry.target(target)
    config = _leak_rule(plan.config, spec, registry)
    if view_blockers(frame, spec, config, SYMBOL_SPECIFIC):
        return SymbolShare(spec.name, tuple(sorted(symbols)), (), 0, (), ())
    with reuse.current().unit(reuse.unit_label(STAGE, spec.name, SYMBOL_SPECIFIC)):
        return symbol_specific_share(frame, spec, plan.candidate_features, config, base_seed,
                                     symbols)


def assemble_symbol_specific(frame: pd.DataFrame, registry: FeatureRegistry,
                             plan: RankingPlan, target: str,
                             shares: Sequence[SymbolShare]) -> ViewScore:
    """The target's SYMBOL_SPECIFIC score from its shares (``score_planned_share``), the
    same as ``score_planned_view`` gives."""
    spec = registry.target(target)
    config = _leak_rule(plan.config, spec, registry)
    blockers = view_blockers(frame, spec, config, SYMBOL_SPECIFIC)
    if blockers:
        return _blocked(spec, SYMBOL_SPECIFIC, blockers)
    return symbol_specific_from_shares(spec, shares, symbols_of(frame), config)


def _view_score(spec: TargetSpec, view: str, values: list[float], n_scored: int,
                signature: str, notes: list[str], config: RankingConfig,
                stderr_floor: float = 0.0) -> ViewScore:
    mean, stderr, t_stat, skill, n_values = scoring.skill_stats(spec.task, values, stderr_floor)
    blockers = []
    if n_values < 2:
        blockers.append(f"too few values for a standard error: {n_values} < 2")
    # implausible skill *and* significant: a large IC on few noisy values is not a leak
    if abs(skill) >= config.leak_skill and abs(t_stat) >= config.min_t_stat:
        blockers.append(f"suspected leak: |skill| {abs(skill):.3f} >= {config.leak_skill} "
                        f"with |t| {abs(t_stat):.2f} >= {config.min_t_stat}")
    return ViewScore(spec.name, spec.task, view, _metric(spec), mean,
                     stderr, t_stat, skill, n_values, n_scored, not blockers,
                     tuple(notes + blockers), signature)


def suspected_leaks(result: RankingResult) -> list[str]:
    """"target VIEW" for every view blocked as a suspected leak (for the console summary)."""
    return [f"{score.target} {score.view}" for score in result.scores
            if any(reason.startswith("suspected leak") for reason in score.reasons)]


def _metric(spec: TargetSpec) -> str:
    return "auc" if spec.task == "binary" else "spearman_ic"


def _blocked(spec: TargetSpec, view: str, reasons: list[str]) -> ViewScore:
    nan = float("nan")
    return ViewScore(spec.name, spec.task, view, _metric(spec), nan, nan, nan, nan, 0, 0,
                     False, tuple(reasons), "")


def qualification(score: ViewScore, config: RankingConfig) -> list[str]:
    """Why a view does not qualify for routing (empty list: it qualifies)."""
    if not score.eligible:
        return ["not eligible"]
    why = []
    if not score.skill >= config.min_skill:
        why.append(f"skill {score.skill:.4f} < min_skill {config.min_skill}")
    if not score.t_stat >= config.min_t_stat:
        why.append(f"t_stat {score.t_stat:.2f} < min_t_stat {config.min_t_stat}")
    return why


def route_target(spec: TargetSpec, cs: ViewScore, ss: ViewScore,
                 config: RankingConfig) -> TargetRoute:
    cs_why, ss_why = qualification(cs, config), qualification(ss, config)
    route = {(True, True): BOTH, (True, False): CROSS_SECTIONAL,
             (False, True): SYMBOL_SPECIFIC, (False, False): BLOCKED}[(not cs_why, not ss_why)]
    reasons = tuple([f"{CROSS_SECTIONAL}: {why}" for why in cs_why]
                    + [f"{SYMBOL_SPECIFIC}: {why}" for why in ss_why])
    logger.info("target %s: route %s (cs skill %.4f, ss skill %.4f)", spec.name, route,
                cs.skill, ss.skill)
    return TargetRoute(spec.name, spec.task, route, cs.skill, ss.skill, reasons)


def ranking_table(result: RankingResult) -> pd.DataFrame:
    """One row per target x view, sorted by view, skill (desc, NaN last), then target name."""
    routes = {route.target: route.route for route in result.routes}
    cfg = RankingConfig(**result.config)
    ordered = sorted(result.scores, key=lambda s: (
        s.view, -s.skill if not math.isnan(s.skill) else math.inf, s.target))
    rows = [{"target": s.target, "task": s.task, "view": s.view, "metric": s.metric,
             "score": s.mean, "stderr": s.stderr, "t_stat": s.t_stat, "skill": s.skill,
             "route": routes[s.target], "n_effective": s.n_effective,
             "reasons": "; ".join(s.reasons + tuple(
                 why for why in qualification(s, cfg) if why != "not eligible"))}
            for s in ordered]
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def routed_pairs(result: RankingResult) -> tuple[tuple[str, str], ...]:
    """(target, view) pairs to carry into feature selection, sorted."""
    views = {CROSS_SECTIONAL: (CROSS_SECTIONAL,), SYMBOL_SPECIFIC: (SYMBOL_SPECIFIC,),
             BOTH: (CROSS_SECTIONAL, SYMBOL_SPECIFIC), BLOCKED: ()}
    return tuple(sorted((route.target, view) for route in result.routes
                        for view in views[route.route]))
