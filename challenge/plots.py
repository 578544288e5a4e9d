"""Server-side SVG plots: a team's score history, the board's best score over time, the shake-up.

Plain SVG text (no plotting library in the web process, no JavaScript); every label is escaped.
A series of one point, of equal scores or of one instant still gets readable axes: its range is
padded around the value and a note says what the plot shows ("One submission: ...").
"""

from __future__ import annotations

import datetime as dt
from xml.sax.saxutils import escape, quoteattr

W, H = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 32, 40
# Half the time span shown around a single instant (one point, or points made in the same second).
TIME_PAD = dt.timedelta(hours=1)


def _svg(body: list[str], title: str, width: int = W, height: int = H) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label={quoteattr(title)}>'
        f"<title>{escape(title)}</title>"
        f'<rect width="{width}" height="{height}" fill="#fff"/>'
        f'<text x="{width / 2:.0f}" y="18" text-anchor="middle" font-size="14" '
        f'font-family="sans-serif">{escape(title)}</text>' + "".join(body) + "</svg>"
    )


def _scale(lo: float, hi: float, a: float, b: float) -> tuple[float, float]:
    """Coefficients mapping [lo, hi] onto [a, b] (a degenerate range maps to the middle)."""
    if hi - lo <= 0:
        return 0.0, (a + b) / 2
    k = (b - a) / (hi - lo)
    return k, a - k * lo


def padded_range(lo: float, hi: float) -> tuple[float, float]:
    """``[lo, hi]`` widened when it is empty (one value, or equal values): 5% of the value on
    each side, or ±1 around zero, so that the axis has two distinct ends and the point sits in
    the middle."""
    if hi > lo:
        return lo, hi
    pad = abs(lo) * 0.05 or 1.0
    return lo - pad, hi + pad


def tick_labels(lo: float, hi: float, digits: int = 4) -> tuple[str, str]:
    """The two ends of an axis, with as many significant digits as it takes to tell them apart."""
    for n in range(digits, 13):
        a, b = f"{lo:.{n}g}", f"{hi:.{n}g}"
        if a != b or lo == hi:
            return a, b
    return f"{lo!r}", f"{hi!r}"


def time_range_label(first: dt.datetime, last: dt.datetime) -> str:
    """``2026-11-10 04:04 … 2026-11-12 18:00 UTC``, shortened when both ends share a day, and
    with seconds when they share a minute; a single instant is written once."""
    if first == last:
        return f"{first:%Y-%m-%d %H:%M} UTC"
    if f"{first:%Y-%m-%d %H:%M}" == f"{last:%Y-%m-%d %H:%M}":
        return f"{first:%Y-%m-%d %H:%M:%S} … {last:%H:%M:%S} UTC"
    if first.date() == last.date():
        return f"{first:%Y-%m-%d %H:%M} … {last:%H:%M} UTC"
    return f"{first:%Y-%m-%d %H:%M} … {last:%Y-%m-%d %H:%M} UTC"


def _axes(
    xlabel: str, ylabel: str, ylo: float, yhi: float, labels: tuple[str, str] | None = None
) -> list[str]:
    x0, x1, y0, y1 = LEFT, W - RIGHT, H - BOTTOM, TOP
    out = [
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/>',
        f'<text x="{(x0 + x1) / 2:.0f}" y="{H - 8}" text-anchor="middle" font-size="12" '
        f'font-family="sans-serif">{escape(xlabel)}</text>',
        f'<text x="14" y="{(y0 + y1) / 2:.0f}" font-size="12" font-family="sans-serif" '
        f'transform="rotate(-90 14 {(y0 + y1) / 2:.0f})" text-anchor="middle">{escape(ylabel)}</text>',
    ]
    lo_text, hi_text = labels or tick_labels(ylo, yhi)
    for text, y in ((lo_text, y0), (hi_text, y1)):
        out.append(
            f'<text x="{x0 - 4}" y="{y + 4}" text-anchor="end" font-size="10" '
            f'font-family="sans-serif">{escape(text)}</text>'
        )
    return out


def _note(text: str) -> str:
    """A line under the title saying what a degenerate series means."""
    return (
        f'<text x="{W / 2:.0f}" y="{TOP + 14}" text-anchor="middle" font-size="12" '
        f'font-family="sans-serif" fill="#555" data-note="1">{escape(text)}</text>'
    )


def _message(text: str) -> str:
    return (
        f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" font-size="13" '
        f'font-family="sans-serif">{escape(text)}</text>'
    )


def time_series_svg(
    points: list[tuple[dt.datetime, float]],
    *,
    title: str,
    ylabel: str = "score",
    step: bool = False,
    marks: list[bool] | None = None,
) -> str:
    """Scores over time as a line (or a step line for a running best); ``marks`` flags late ones."""
    if not points:
        return _svg([_message("No scores yet.")], title)
    first, last = points[0][0], points[-1][0]
    ts = [p[0].timestamp() for p in points]
    ys = [p[1] for p in points]
    tlo, thi = min(ts), max(ts)
    if thi - tlo < 1:  # one instant: show an hour either side, the points in the middle
        tlo, thi = tlo - TIME_PAD.total_seconds(), thi + TIME_PAD.total_seconds()
    ylo, yhi = padded_range(min(ys), max(ys))
    kx, bx = _scale(tlo, thi, LEFT, W - RIGHT)
    ky, by = _scale(ylo, yhi, H - BOTTOM, TOP)
    xy = [(kx * t + bx, ky * y + by) for t, y in zip(ts, ys, strict=True)]
    path: list[str] = []
    for i, (x, y) in enumerate(xy):
        if i and step:
            path.append(f"L{x:.1f},{xy[i - 1][1]:.1f}")
        path.append(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}")
    if step:
        path.append(f"L{W - RIGHT:.1f},{xy[-1][1]:.1f}")
    body = _axes(time_range_label(first, last), ylabel, ylo, yhi)
    when = time_range_label(first, first)
    if len(points) == 1:
        note = (
            f"Best score {ys[0]:.5g} since {when}: not beaten since."
            if step
            else f"One submission: {ys[0]:.5g} on {when}."
        )
        body.append(_note(note))
    elif min(ys) == max(ys):
        body.append(_note(f"All {len(points)} scores are {ys[0]:.5g}."))
    if len(xy) > 1 or step:
        body.append(f'<path d="{" ".join(path)}" fill="none" stroke="#1565c0" stroke-width="2"/>')
    for i, (x, y) in enumerate(xy):
        late = bool(marks and marks[i])
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{"#c62828" if late else "#1565c0"}">'
            f"<title>{escape(f'{points[i][0]:%Y-%m-%d %H:%M} UTC: {points[i][1]:.5g}')}"
            f"{' (late)' if late else ''}</title></circle>"
        )
    return _svg(body, title)


def shakeup_svg(pairs: list[tuple[int, int, str]], *, title: str) -> str:
    """Public rank (x) against private rank (y) per team; the diagonal means no change."""
    if not pairs:
        return _svg([_message("No ranked teams.")], title)
    n = max(max(p, q) for p, q, _ in pairs)
    kx, bx = _scale(1, max(n, 2), LEFT, W - RIGHT)
    ky, by = _scale(1, max(n, 2), TOP, H - BOTTOM)  # rank 1 at the top
    body = _axes("public rank", "private rank", float(max(n, 2)), 1.0, (str(max(n, 2)), "1"))
    body.append(
        f'<line x1="{kx + bx:.1f}" y1="{ky + by:.1f}" x2="{kx * max(n, 2) + bx:.1f}" '
        f'y2="{ky * max(n, 2) + by:.1f}" stroke="#999" stroke-dasharray="4 3"/>'
    )
    moved = sum(1 for public, private, _ in pairs if public != private)
    if len(pairs) == 1:
        body.append(_note("One ranked team: nothing to compare."))
    elif moved == 0:
        body.append(_note(f"No shake-up: all {len(pairs)} teams kept their public rank."))
    for public, private, name in pairs:
        colour = "#2e7d32" if private < public else "#c62828" if private > public else "#555"
        body.append(
            f'<circle cx="{kx * public + bx:.1f}" cy="{ky * private + by:.1f}" r="3.5" '
            f'fill="{colour}"><title>{escape(f"{name}: public {public} → private {private}")}'
            "</title></circle>"
        )
    return _svg(body, title)
