"""The UI charts (defs/plots.py): round ticks that cover the data, and SVG that parses whatever
the feature names hold."""

import math
from xml.etree import ElementTree

import pytest

from parity_pipeline.defs.plots import bar_chart, nice_ticks


@pytest.mark.parametrize(("low", "high"), [(15, 120), (0, 0.1), (-0.02, 0.24), (0.3, 0.3),
                                           (0, 1e-6), (-5, -1)])
def test_ticks_are_round_evenly_spaced_and_cover_the_data(low, high):
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high
    steps = {round(b - a, 12) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1, ticks
    step = steps.pop()
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 9) in (1, 2, 5), step
    assert 2 <= len(ticks) <= 8, ticks


def test_ticks_refuse_non_finite_bounds():
    with pytest.raises(ValueError, match="cannot place ticks"):
        nice_ticks(0.0, float("nan"))


def test_bar_chart_escapes_names_and_makes_room_for_long_ones():
    names = ["a<b & c>", "ret_1h"]
    svg = bar_chart(names, [0.5, 0.25], "consensus importance")
    root = ElementTree.fromstring(svg)  # well-formed although a name holds <, & and >
    texts = [element.text for element in root.iter("{http://www.w3.org/2000/svg}text")]
    assert names[0] in texts and names[1] in texts
    bars = root.findall("{http://www.w3.org/2000/svg}rect[@class='bar']")
    assert [float(bar.get("width")) for bar in bars] == pytest.approx(
        [2 * float(bars[1].get("width")), float(bars[1].get("width"))])
    wide = ElementTree.fromstring(bar_chart(["x" * 60], [1.0], "importance"))
    narrow = ElementTree.fromstring(bar_chart(["x"], [1.0], "importance"))
    assert float(wide.get("width")) > float(narrow.get("width")) + 300
    assert float(wide.find("{http://www.w3.org/2000/svg}rect[@class='bar']").get("x")) > 300


def test_the_same_numbers_give_the_same_bytes_and_others_do_not():
    first = bar_chart(["a", "b"], [0.3, 0.1], "x")
    assert first == bar_chart(["a", "b"], [0.3, 0.1], "x")
    assert first != bar_chart(["a", "b"], [0.3, 0.2], "x")
