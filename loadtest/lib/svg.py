"""A small SVG chart writer: grouped bar charts and line charts. No dependencies."""

from __future__ import annotations

import math
from html import escape

COLORS = {"outrigger": "#d9480f", "outrigger-base": "#ffa94d", "envoy": "#1c7ed6",
          "haproxy": "#2b8a3e", "direct": "#868e96"}
FALLBACK = ["#7048e8", "#e67700", "#0b7285", "#c2255c"]
W, H = 760, 380
LEFT, RIGHT, TOP, BOTTOM = 78, 150, 44, 64


def color(name: str, i: int) -> str:
    return COLORS.get(name, FALLBACK[i % len(FALLBACK)])


def nice_ticks(hi: float, n: int = 5) -> list[float]:
    if hi <= 0:
        return [0, 1]
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(math.ceil(hi / step)) + 1)]


def fmt(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.3g}M"
    if v >= 1e3:
        return f"{v / 1e3:.3g}k"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


class Doc:
    def __init__(self, title: str, ylabel: str) -> None:
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
            f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
            f'<rect width="{W}" height="{H}" fill="white"/>',
            f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="15" '
            f'font-weight="bold">{escape(title)}</text>',
            f'<text transform="translate(16 {TOP + (H - TOP - BOTTOM) / 2}) rotate(-90)" '
            f'text-anchor="middle">{escape(ylabel)}</text>',
        ]

    def add(self, s: str) -> None:
        self.parts.append(s)

    def text(self, x, y, s, anchor="middle", size=12, extra="") -> None:
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" '
                 f'font-size="{size}" {extra}>{escape(str(s))}</text>')

    def legend(self, names: list[str]) -> None:
        x = W - RIGHT + 16
        for i, name in enumerate(names):
            y = TOP + 10 + i * 22
            self.add(f'<rect x="{x}" y="{y - 10}" width="14" height="14" '
                     f'fill="{color(name, i)}"/>')
            self.text(x + 20, y + 2, name, anchor="start")

    def yaxis(self, ticks: list[float], ymap, label=fmt) -> None:
        x0, x1 = LEFT, W - RIGHT
        for t in ticks:
            y = ymap(t)
            self.add(f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#e9ecef"/>')
            self.text(x0 - 6, y + 4, label(t), anchor="end", size=11)
        self.add(f'<line x1="{x0}" x2="{x0}" y1="{TOP}" y2="{H - BOTTOM}" stroke="#495057"/>')
        self.add(f'<line x1="{x0}" x2="{x1}" y1="{H - BOTTOM}" y2="{H - BOTTOM}" '
                 f'stroke="#495057"/>')

    def save(self, path) -> None:
        path.write_text("\n".join(self.parts + ["</svg>"]) + "\n")


def bar_chart(path, title: str, ylabel: str, groups: list[str], series: list[str],
              values: dict, note: str = "") -> None:
    """values[(group, series)] -> number or None (missing / invalid)."""
    # A series with no value anywhere (e.g. no-proxy CPU) is left out altogether.
    series = [s for s in series if any(values.get((g, s)) is not None for g in groups)]
    doc = Doc(title, ylabel)
    hi = max([v for v in values.values() if v is not None] + [0])
    ticks = nice_ticks(hi * 1.1 if hi else 1)
    top = ticks[-1]
    plot_h = H - TOP - BOTTOM
    ymap = lambda v: H - BOTTOM - plot_h * v / top   # noqa: E731
    doc.yaxis(ticks, ymap)
    gw = (W - LEFT - RIGHT) / max(1, len(groups))
    bw = gw * 0.8 / max(1, len(series))
    for gi, g in enumerate(groups):
        gx = LEFT + gi * gw + gw * 0.1
        for si, s in enumerate(series):
            v = values.get((g, s))
            x = gx + si * bw
            if v is None:
                doc.text(x + bw / 2, H - BOTTOM - 4, "n/a", size=9, extra='fill="#868e96"')
                continue
            if v <= 0:   # e.g. a negative added latency: label only, no bar
                doc.text(x + bw / 2, H - BOTTOM - 4, fmt(v) if v > -1e-9 else f"{v:.2g}",
                         size=9)
                continue
            y = ymap(v)
            doc.add(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" '
                    f'height="{H - BOTTOM - y:.1f}" fill="{color(s, si)}"/>')
            doc.text(x + bw / 2, y - 3, fmt(v), size=9)
        label_x = LEFT + gi * gw + gw / 2
        if len(g) * 6.5 > gw * 0.95 and "-" in g:   # too wide: two lines
            head, tail = g.rsplit("-", 1)
            doc.text(label_x, H - BOTTOM + 16, head + "-", size=11)
            doc.text(label_x, H - BOTTOM + 30, tail, size=11)
        else:
            doc.text(label_x, H - BOTTOM + 18, g, size=11)
    if note:
        doc.text(LEFT, H - 12, note, anchor="start", size=10, extra='fill="#495057"')
    doc.legend(series)
    doc.save(path)


def line_chart(path, title: str, ylabel: str, xlabels: list[str], series: dict,
               log_scale: bool = True, note: str = "") -> None:
    """series[name] -> list of y values (one per x label; None = missing)."""
    doc = Doc(title, ylabel)
    vals = [v for ys in series.values() for v in ys if v]
    lo, hi = (min(vals), max(vals)) if vals else (1, 10)
    plot_h = H - TOP - BOTTOM
    if log_scale:
        lo_e, hi_e = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        hi_e = max(hi_e, lo_e + 1)
        ymap = lambda v: H - BOTTOM - plot_h * (math.log10(v) - lo_e) / (hi_e - lo_e)  # noqa
        ticks = [10 ** e for e in range(lo_e, hi_e + 1)]
        for e in range(lo_e, hi_e):   # faint 2x and 5x lines
            for m in (2, 5):
                y = ymap(m * 10 ** e)
                doc.add(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                        f'stroke="#f1f3f5"/>')
    else:
        ticks = nice_ticks(hi * 1.1)
        ymap = lambda v: H - BOTTOM - plot_h * v / ticks[-1]   # noqa: E731
    doc.yaxis(ticks, ymap)
    xw = (W - LEFT - RIGHT) / max(1, len(xlabels))
    xmap = lambda i: LEFT + xw * (i + 0.5)   # noqa: E731
    for i, lab in enumerate(xlabels):
        doc.text(xmap(i), H - BOTTOM + 18, lab, size=11)
    for si, (name, ys) in enumerate(series.items()):
        pts = [(xmap(i), ymap(v)) for i, v in enumerate(ys) if v]
        if not pts:
            continue
        c = color(name, si)
        doc.add(f'<polyline fill="none" stroke="{c}" stroke-width="2.5" points="'
                + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
        for x, y in pts:
            doc.add(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{c}"/>')
    if note:
        doc.text(LEFT, H - 12, note, anchor="start", size=10, extra='fill="#495057"')
    doc.legend(list(series))
    doc.save(path)
