"""The SVG plots stay readable for degenerate series: one point, equal scores, one instant."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

from challenge.plots import (
    BOTTOM,
    LEFT,
    RIGHT,
    TOP,
    H,
    W,
    padded_range,
    shakeup_svg,
    tick_labels,
    time_range_label,
    time_series_svg,
)

SVG = "{http://www.w3.org/2000/svg}"
T0 = dt.datetime(2026, 11, 10, 4, 4, tzinfo=dt.UTC)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output


def texts(svg: str) -> list[str]:
    return [t.text or "" for t in parse(svg).iter(f"{SVG}text")]


def y_ticks(svg: str) -> list[str]:
    """The y-axis end labels (right-aligned at the axis)."""
    return [
        t.text or ""
        for t in parse(svg).iter(f"{SVG}text")
        if t.get("text-anchor") == "end" and t.get("x") == str(LEFT - 4)
    ]


def circles(svg: str) -> list[tuple[float, float]]:
    return [(float(c.get("cx", 0)), float(c.get("cy", 0))) for c in parse(svg).iter(f"{SVG}circle")]


def note(svg: str) -> str:
    found = [t.text or "" for t in parse(svg).iter(f"{SVG}text") if t.get("data-note")]
    return found[0] if found else ""


def test_one_point_gets_a_padded_axis_a_single_time_and_a_note() -> None:
    svg = time_series_svg([(T0, 0.8785)], title="Best public score", step=True)
    low, high = y_ticks(svg)
    assert low != high
    assert float(low) < 0.8785 < float(high)
    assert "2026-11-10 04:04 UTC" in texts(svg)  # not "04:04 … 04:04"
    assert not any("…" in t for t in texts(svg))
    assert "not beaten" in note(svg)
    assert "0.8785" in note(svg)
    ((x, y),) = circles(svg)
    assert LEFT < x < W - RIGHT  # inside the plot, not on an edge
    assert TOP < y < H - BOTTOM
    assert abs(y - (TOP + H - BOTTOM) / 2) < 1  # in the middle of the padded range
    history = time_series_svg([(T0, 0.8785)], title="My scores")
    assert note(history).startswith("One submission: 0.8785")
    assert "<path" not in history  # one point: no line to draw


def test_constant_series_and_near_constant_ticks() -> None:
    points = [(T0 + dt.timedelta(hours=h), 2.5) for h in range(3)]
    svg = time_series_svg(points, title="Flat")
    low, high = y_ticks(svg)
    assert float(low) < 2.5 < float(high)
    assert note(svg) == "All 3 scores are 2.5."
    assert len({round(y, 1) for _, y in circles(svg)}) == 1
    assert len({round(x, 1) for x, _ in circles(svg)}) == 3
    # Values that differ past the 4th digit still get two different tick labels.
    close = time_series_svg([(T0, 0.87851), (T0 + dt.timedelta(hours=1), 0.87853)], title="c")
    low, high = y_ticks(close)
    assert low != high
    assert note(close) == ""


def test_points_at_one_instant_are_spread_around_it() -> None:
    svg = time_series_svg([(T0, 1.0), (T0, 2.0)], title="Same second")
    xs = {round(x, 1) for x, _ in circles(svg)}
    assert len(xs) == 1
    (x,) = xs
    assert abs(x - (LEFT + W - RIGHT) / 2) < 1
    assert "2026-11-10 04:04 UTC" in texts(svg)


def test_time_range_labels() -> None:
    assert time_range_label(T0, T0) == "2026-11-10 04:04 UTC"
    assert (
        time_range_label(T0, T0 + dt.timedelta(seconds=20)) == "2026-11-10 04:04:00 … 04:04:20 UTC"
    )
    assert time_range_label(T0, T0 + dt.timedelta(hours=2)) == "2026-11-10 04:04 … 06:04 UTC"
    assert (
        time_range_label(T0, T0 + dt.timedelta(days=2)) == "2026-11-10 04:04 … 2026-11-12 04:04 UTC"
    )


def test_range_and_tick_helpers() -> None:
    assert padded_range(1.0, 3.0) == (1.0, 3.0)
    assert padded_range(0.0, 0.0) == (-1.0, 1.0)
    lo, hi = padded_range(-4.0, -4.0)
    assert lo < -4.0 < hi
    assert tick_labels(0.87851, 0.87853) == ("0.87851", "0.87853")
    assert tick_labels(1.0, 2.0) == ("1", "2")


def test_shakeup_notes_and_empty_plots() -> None:
    flat = shakeup_svg([(1, 1, "a"), (2, 2, "b")], title="Shake-up")
    assert "No shake-up" in note(flat)
    moved = shakeup_svg([(1, 2, "a"), (2, 1, "b")], title="Shake-up")
    assert note(moved) == ""
    assert re.search(r'fill="#2e7d32"', moved)
    assert re.search(r'fill="#c62828"', moved)
    assert "One ranked team" in note(shakeup_svg([(1, 1, "a")], title="s"))
    assert "No ranked teams." in texts(shakeup_svg([], title="s"))
    assert "No scores yet." in texts(time_series_svg([], title="t"))
    # Labels are escaped.
    parse(time_series_svg([(T0, 1.0)], title='<b>"x"</b>'))
    parse(shakeup_svg([(1, 2, "<script>")], title="s"))
