"""Small charts for the UI, embedded as PNG data in markdown metadata (the Dagster UI renders
``![..](data:image/png;base64,..)``). Presentation only: nothing here is hashed or read back."""

import base64
import io

import dagster as dg
import pandas as pd

from parity_pipeline.core.data.registry import FeatureRegistry

DPI = 72
FIGSIZE = (4.2, 2.6)


def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display on servers), imported when a chart is
    drawn: a run whose charts are all reused (an unchanged nightly) never pays its ~0.4 s
    import. The multiprocess executor's fork server preloads it (defs/jobs.py)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _markdown_image(fig, title: str) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    # no "Software" tag: the same chart gives the same bytes across matplotlib builds
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    _pyplot().close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"**{title}**\n\n![{title}](data:image/png;base64,{encoded})"


def ranking_by_horizon(table: pd.DataFrame, registry: FeatureRegistry
                       ) -> dg.MarkdownMetadataValue:
    """Skill of each target by horizon, one line per task x view: where the signal lives."""
    horizons = {spec.name: spec.horizon_minutes for spec in registry.targets}
    tasks = {spec.name: spec.task for spec in registry.targets}
    frame = table.assign(horizon=table["target"].map(horizons), task=table["target"].map(tasks))
    fig, ax = _pyplot().subplots(figsize=FIGSIZE)
    for (task, view), group in sorted(frame.groupby(["task", "view"]), key=lambda kv: kv[0]):
        best = group.sort_values(["horizon", "skill"], ascending=[True, False])
        best = best.drop_duplicates("horizon")  # the best target per horizon
        ax.plot(best["horizon"], best["skill"], marker="o", label=f"{task} {view.lower()}")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("horizon (minutes)")
    ax.set_ylabel("skill (IC or 2·AUC−1)")
    ax.legend(fontsize=6)
    return dg.MetadataValue.md(_markdown_image(fig, "Best ranking skill by horizon"))


def importance_bars(selection_table: pd.DataFrame, top: int = 10) -> dg.MarkdownMetadataValue:
    """Consensus importance of the top features, one small chart per target (cross-sectional
    view when routed there, else the symbol-specific one)."""
    sections = []
    for target, rows in sorted(selection_table.groupby("target"), key=lambda kv: kv[0]):
        view = "CROSS_SECTIONAL" if (rows["view"] == "CROSS_SECTIONAL").any() \
            else str(rows["view"].iloc[0])
        chosen = rows[rows["view"] == view].sort_values("rank").head(top)
        fig, ax = _pyplot().subplots(figsize=FIGSIZE)
        ax.barh(chosen["feature"][::-1], chosen["consensus"][::-1], color="#4477aa")
        ax.set_xlabel("consensus importance")
        ax.tick_params(axis="y", labelsize=6)
        sections.append(_markdown_image(fig, f"{target} ({view.lower()})"))
    return dg.MetadataValue.md("\n\n".join(sections) if sections else "no routed targets")
