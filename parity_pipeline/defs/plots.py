"""Small charts for the UI: SVG images embedded as data URIs in markdown metadata (the Dagster UI
renders ``![..](data:image/svg+xml;base64,..)``; its markdown allows ``data:`` image sources).
Presentation only: nothing here is hashed or read back.

The charts are written as SVG text rather than drawn with a plotting library. matplotlib cost a
default run about 1.0 s of CPU (0.3 s importing pyplot, 0.7 s drawing the seven charts, most of
it rasterising glyphs), some 2.5 % of the run, for seven small charts; writing them as SVG takes
0.02 s. An SVG is a few kB of text the browser
draws, and its bytes depend only on the numbers shown (never on a font rasteriser's version).
What the charts need is small: axes with round ticks, lines with markers, horizontal bars.
"""

import base64
import math
from collections.abc import Sequence
from xml.sax.saxutils import escape

import dagster as dg
import pandas as pd

from parity_pipeline.core.data.registry import FeatureRegistry

WIDTH, HEIGHT = 500, 260
LEGEND_PX = 175  # right of the line chart's plot area
FONT_PX = 10
CHAR_PX = 0.62 * FONT_PX  # a generous average glyph width (sans-serif), for label room
# colour-blind-safe (Paul Tol's "bright"), in series order
COLOURS = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb")
BAR_COLOUR = COLOURS[0]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2 or 5 x 10^k apart) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"cannot place ticks on [{low}, {high}]")
    if high <= low:
        low, high = low - 0.5, high + 0.5  # one value: a unit-wide range around it
    raw = (high - low) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    # the tolerance keeps a bound that is a multiple of the step (0.1 / 0.05) from adding a tick
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(i * step, 12) + 0.0 for i in range(first, last + 1)]  # + 0.0: no "-0"


def _number(value: float) -> str:
    """Coordinates to 0.1 px: short text, the same bytes for the same numbers."""
    return f"{value:.1f}"


def _tick_label(value: float, ticks: Sequence[float]) -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{value:.{decimals}f}"


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = FONT_PX,
          extra: str = "") -> str:
    return (f'<text x="{_number(x)}" y="{_number(y)}" font-size="{size}" '
            f'text-anchor="{anchor}"{extra}>{escape(text)}</text>')


def _svg(width: float, height: float, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_number(width)}" '
            f'height="{_number(height)}" viewBox="0 0 {_number(width)} {_number(height)}" '
            f'font-family="sans-serif"><rect width="100%" height="100%" fill="#ffffff"/>'
            + "".join(body) + "</svg>")


def _markdown_image(svg: str, title: str) -> str:
    encoded = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f"**{title}**\n\n![{title}](data:image/svg+xml;base64,{encoded})"


class _Axes:
    """A plot area inside ``_svg`` with linear x and y scales and round ticks on both."""

    def __init__(self, xs: Sequence[float], ys: Sequence[float], left: float,
                 bottom: float = 34.0, top: float = 10.0, right: float = 12.0) -> None:
        self.x_ticks = nice_ticks(min(xs), max(xs))
        self.y_ticks = nice_ticks(min(ys), max(ys))
        self.left, self.right = left, WIDTH - right
        self.top, self.bottom = top, HEIGHT - bottom

    def x(self, value: float) -> float:
        low, high = self.x_ticks[0], self.x_ticks[-1]
        return self.left + (value - low) / (high - low) * (self.right - self.left)

    def y(self, value: float) -> float:
        low, high = self.y_ticks[0], self.y_ticks[-1]
        return self.bottom - (value - low) / (high - low) * (self.bottom - self.top)

    def frame(self, x_label: str, y_label: str) -> list[str]:
        parts = [f'<rect x="{_number(self.left)}" y="{_number(self.top)}" '
                 f'width="{_number(self.right - self.left)}" '
                 f'height="{_number(self.bottom - self.top)}" fill="none" stroke="#333333"/>']
        for tick in self.x_ticks:
            parts.append(_text(self.x(tick), self.bottom + 12, _tick_label(tick, self.x_ticks),
                               "middle"))
        for tick in self.y_ticks:
            parts.append(_text(self.left - 4, self.y(tick) + 3, _tick_label(tick, self.y_ticks),
                               "end"))
        parts.append(_text((self.left + self.right) / 2, HEIGHT - 6, x_label, "middle"))
        middle = _number((self.top + self.bottom) / 2)
        parts.append(_text(12, (self.top + self.bottom) / 2, y_label, "middle",
                           extra=f' transform="rotate(-90 12 {middle})"'))
        return parts


def ranking_by_horizon(table: pd.DataFrame, registry: FeatureRegistry
                       ) -> dg.MarkdownMetadataValue:
    """Skill of each target by horizon, one line per task x view: where the signal lives."""
    horizons = {spec.name: spec.horizon_minutes for spec in registry.targets}
    tasks = {spec.name: spec.task for spec in registry.targets}
    frame = table.assign(horizon=table["target"].map(horizons), task=table["target"].map(tasks))
    series = []
    for (task, view), group in sorted(frame.groupby(["task", "view"]), key=lambda kv: kv[0]):
        best = group.sort_values(["horizon", "skill"], ascending=[True, False])
        best = best.drop_duplicates("horizon")  # the best target per horizon
        points = [(float(h), float(s)) for h, s in zip(best["horizon"], best["skill"],
                                                              strict=True)
                  if math.isfinite(float(s))]
        if points:
            series.append((f"{task} {view.lower()}", points))
    title = "Best ranking skill by horizon"
    if not series:
        return dg.MetadataValue.md(f"**{title}**\n\nno target was scored")
    xs = [x for _, points in series for x, _ in points]
    ys = [0.0] + [y for _, points in series for _, y in points]  # keep the zero line in view
    axes = _Axes(xs, ys, left=48.0, right=LEGEND_PX)
    body = axes.frame("horizon (minutes)", "skill (IC or 2·AUC−1)")
    body.append(f'<line x1="{_number(axes.left)}" x2="{_number(axes.right)}" '
                f'y1="{_number(axes.y(0.0))}" y2="{_number(axes.y(0.0))}" stroke="#888888"/>')
    for number, (label, points) in enumerate(series):
        colour = COLOURS[number % len(COLOURS)]
        coordinates = " ".join(f"{_number(axes.x(x))},{_number(axes.y(y))}" for x, y in points)
        body.append(f'<polyline class="series" points="{coordinates}" fill="none" '
                    f'stroke="{colour}" stroke-width="1.5"><title>{escape(label)}</title>'
                    f"</polyline>")
        body.extend(f'<circle cx="{_number(axes.x(x))}" cy="{_number(axes.y(y))}" r="2.5" '
                    f'fill="{colour}"/>' for x, y in points)
        # the legend, right of the plot area
        legend_y = axes.top + 8 + 14 * number
        body.append(f'<line x1="{_number(axes.right + 8)}" x2="{_number(axes.right + 22)}" '
                    f'y1="{_number(legend_y - 3)}" y2="{_number(legend_y - 3)}" '
                    f'stroke="{colour}" stroke-width="2"/>')
        body.append(_text(axes.right + 26, legend_y, label, size=9))
    return dg.MetadataValue.md(_markdown_image(_svg(WIDTH, HEIGHT, body), title))


def bar_chart(labels: Sequence[str], values: Sequence[float], x_label: str) -> str:
    """Horizontal bars, the first label on top; the left margin fits the longest label."""
    left = 10.0 + CHAR_PX * max((len(label) for label in labels), default=1)
    width = left + 260.0
    row, top, bottom = 16.0, 8.0, 30.0
    height = top + row * max(len(labels), 1) + bottom
    axis_end = max([0.0, *(float(v) for v in values)]) or 1.0
    ticks = nice_ticks(0.0, axis_end, count=4)
    scale = (width - 14.0 - left) / ticks[-1]
    body = []
    for number, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + row * number
        body.append(_text(left - 4, y + row * 0.7, label, "end"))
        body.append(f'<rect class="bar" x="{_number(left)}" y="{_number(y + 2)}" '
                    f'width="{_number(max(float(value), 0.0) * scale)}" '
                    f'height="{_number(row - 4)}" fill="{BAR_COLOUR}">'
                    f"<title>{escape(f'{label}: {float(value):.4f}')}</title></rect>")
    axis_y = top + row * len(labels)
    body.append(f'<line x1="{_number(left)}" x2="{_number(width - 14)}" y1="{_number(axis_y)}" '
                f'y2="{_number(axis_y)}" stroke="#333333"/>')
    body.extend(_text(left + tick * scale, axis_y + 12, _tick_label(tick, ticks), "middle")
                for tick in ticks)
    body.append(_text((left + width - 14) / 2, height - 4, x_label, "middle"))
    return _svg(width, height, body)


def importance_bars(selection_table: pd.DataFrame, top: int = 10) -> dg.MarkdownMetadataValue:
    """Consensus importance of the top features, one small chart per target (cross-sectional
    view when routed there, else the symbol-specific one)."""
    sections = []
    for target, rows in sorted(selection_table.groupby("target"), key=lambda kv: kv[0]):
        view = "CROSS_SECTIONAL" if (rows["view"] == "CROSS_SECTIONAL").any() \
            else str(rows["view"].iloc[0])
        chosen = rows[rows["view"] == view].sort_values("rank").head(top)
        svg = bar_chart([str(name) for name in chosen["feature"]],
                        [float(value) for value in chosen["consensus"]], "consensus importance")
        sections.append(_markdown_image(svg, f"{target} ({view.lower()})"))
    return dg.MetadataValue.md("\n\n".join(sections) if sections else "no routed targets")

