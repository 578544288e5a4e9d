"""Server-side SVG plots: a team's score history, the board's best score over time, the shake-up.

Plain SVG text (no plotting library in the web process, no JavaScript); every label is escaped.
"""

from __future__ import annotations

import datetime as dt
from xml.sax.saxutils import escape, quoteattr

W, H = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 32, 40


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


def _axes(xlabel: str, ylabel: str, ylo: float, yhi: float, fmt: str = "{:.4g}") -> list[str]:
    x0, x1, y0, y1 = LEFT, W - RIGHT, H - BOTTOM, TOP
    out = [
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/>',
        f'<text x="{(x0 + x1) / 2:.0f}" y="{H - 8}" text-anchor="middle" font-size="12" '
        f'font-family="sans-serif">{escape(xlabel)}</text>',
        f'<text x="14" y="{(y0 + y1) / 2:.0f}" font-size="12" font-family="sans-serif" '
        f'transform="rotate(-90 14 {(y0 + y1) / 2:.0f})" text-anchor="middle">{escape(ylabel)}</text>',
    ]
    for value, y in ((ylo, y0), (yhi, y1)):
        out.append(
            f'<text x="{x0 - 4}" y="{y + 4}" text-anchor="end" font-size="10" '
            f'font-family="sans-serif">{escape(fmt.format(value))}</text>'
        )
    return out


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
        return _svg(
            [f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" font-size="13" '
             'font-family="sans-serif">No scores yet.</text>'],
            title,
        )
    ts = [p[0].timestamp() for p in points]
    ys = [p[1] for p in points]
    kx, bx = _scale(min(ts), max(ts), LEFT, W - RIGHT)
    ky, by = _scale(min(ys), max(ys), H - BOTTOM, TOP)
    xy = [(kx * t + bx, ky * y + by) for t, y in zip(ts, ys, strict=True)]
    path: list[str] = []
    for i, (x, y) in enumerate(xy):
        if i and step:
            path.append(f"L{x:.1f},{xy[i - 1][1]:.1f}")
        path.append(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}")
    if step:
        path.append(f"L{W - RIGHT:.1f},{xy[-1][1]:.1f}")
    body = _axes(
        f"{points[0][0]:%Y-%m-%d %H:%M} … {points[-1][0]:%Y-%m-%d %H:%M} UTC",
        ylabel,
        min(ys),
        max(ys),
    )
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
        return _svg(
            [f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" font-size="13" '
             'font-family="sans-serif">No ranked teams.</text>'],
            title,
        )
    n = max(max(p, q) for p, q, _ in pairs)
    kx, bx = _scale(1, max(n, 2), LEFT, W - RIGHT)
    ky, by = _scale(1, max(n, 2), TOP, H - BOTTOM)  # rank 1 at the top
    body = _axes("public rank", "private rank", float(max(n, 2)), 1.0, "{:.0f}")
    body.append(
        f'<line x1="{kx + bx:.1f}" y1="{ky + by:.1f}" x2="{kx * max(n, 2) + bx:.1f}" '
        f'y2="{ky * max(n, 2) + by:.1f}" stroke="#999" stroke-dasharray="4 3"/>'
    )
    for public, private, name in pairs:
        colour = "#2e7d32" if private < public else "#c62828" if private > public else "#555"
        body.append(
            f'<circle cx="{kx * public + bx:.1f}" cy="{ky * private + by:.1f}" r="3.5" '
            f'fill="{colour}"><title>{escape(f"{name}: public {public} → private {private}")}'
            "</title></circle>"
        )
    return _svg(body, title)
