"""Server-rendered SVG charts for the console: pure geometry, no I/O, no script.

A chart is a frozen ``Chart`` of rectangles, texts and grid lines in SVG user units, each rectangle with a
``kind`` (its CSS class in ``static/console.css``: the colours live in the stylesheet, so the strict CSP holds —
no ``style`` attribute anywhere) and a ``title`` (the tooltip and what a screen reader says). The template
(``templates/charts.html``) writes it as inline ``<svg role="img">`` with ``<title>`` and ``<desc>``; every chart
has a table beside it with the same numbers.

* ``columns`` — vertical stacked columns (one per hour), a y axis with round gridlines;
* ``bars`` — horizontal bars (one or more segments each, stacked, or side by side with ``grouped``), a label on
  the left and the total on the right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    kind: str
    title: str


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    anchor: str = "middle"  # start, middle, end
    kind: str = "label"


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class Chart:
    id: str
    width: int
    height: int
    title: str
    desc: str
    rects: tuple[Rect, ...] = ()
    texts: tuple[Text, ...] = ()
    lines: tuple[Line, ...] = ()


@dataclass(frozen=True)
class Segment:
    kind: str
    value: float
    title: str


def nice_max(value: float) -> float:
    """Four round steps (1, 2 or 5 × 10^k each) reaching at least ``value``: the top of a y axis."""
    if value <= 0:
        return 4.0
    wanted = value / 4
    power = 10 ** math.floor(math.log10(wanted))
    step = next(s * power for s in (1, 2, 5, 10) if s * power >= wanted)
    return float(4 * step)


def _number(value: float) -> str:
    return f"{value:,.0f}".replace(",", "\u202f") if value >= 10 or value == int(value) else f"{value:.1f}"


def columns(chart_id: str, title: str, desc: str, labels: Sequence[str], stacks: Sequence[Sequence[Segment]],
            *, width: int = 720, height: int = 240, label_every: int = 3) -> Chart:
    """One stacked column per label (oldest first), with a y axis of four round steps."""
    left, right, top, bottom = 48, 8, 10, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = nice_max(max(4.0, max((sum(s.value for s in stack) for stack in stacks), default=0)))  # whole steps
    slot = plot_w / max(len(labels), 1)
    rects: list[Rect] = []
    texts: list[Text] = []
    lines: list[Line] = []
    for step in range(5):
        value = top_value * step / 4
        y = top + plot_h - plot_h * step / 4
        lines.append(Line(left, y, width - right, y))
        texts.append(Text(left - 6, y + 4, _number(value), "end", "axis"))
    for i, (label, stack) in enumerate(zip(labels, stacks, strict=True)):
        x = left + i * slot + slot * 0.15
        y = top + plot_h
        for segment in stack:
            if segment.value <= 0:
                continue
            h = plot_h * segment.value / top_value
            y -= h
            rects.append(Rect(round(x, 2), round(y, 2), round(slot * 0.7, 2), round(h, 2), segment.kind,
                              segment.title))
        if i % label_every == 0:
            texts.append(Text(round(left + i * slot + slot / 2, 2), height - 8, label, "middle", "axis"))
    return Chart(chart_id, width, height, title, desc, tuple(rects), tuple(texts), tuple(lines))


def bars(chart_id: str, title: str, desc: str, labels: Sequence[str], rows: Sequence[Sequence[Segment]],
         totals: Sequence[str], *, width: int = 720, row_height: int = 26, grouped: bool = False,
         label_width: int = 170) -> Chart:
    """One horizontal bar per label: its segments stacked (or, ``grouped``, one under the other), the label on
    the left and ``totals`` (already written) on the right."""
    right = 190
    plot_w = width - label_width - right
    per_row = max((len(r) for r in rows), default=1) if grouped else 1
    bar_h = (row_height - 8) / per_row
    top_value = nice_max(max(((max((s.value for s in r), default=0) if grouped else sum(s.value for s in r))
                              for r in rows), default=0))
    height = max(len(labels), 1) * row_height + 8
    rects: list[Rect] = []
    texts: list[Text] = []
    for i, (label, row, total) in enumerate(zip(labels, rows, totals, strict=True)):
        y = 4 + i * row_height
        x = float(label_width)
        texts.append(Text(label_width - 8, y + row_height / 2 + 1, label, "end"))
        for j, segment in enumerate(row):
            w = plot_w * segment.value / top_value if segment.value > 0 else 0.0
            if grouped:
                rects.append(Rect(label_width, round(y + 4 + j * bar_h, 2), round(w, 2), round(bar_h - 1, 2),
                                  segment.kind, segment.title))
            elif w > 0:
                rects.append(Rect(round(x, 2), y + 4, round(w, 2), row_height - 8, segment.kind, segment.title))
                x += w
        texts.append(Text(width - right + 6, y + row_height / 2 + 1, total, "start", "value"))
    return Chart(chart_id, width, height, title, desc, tuple(rects), tuple(texts))
