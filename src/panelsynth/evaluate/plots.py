"""Per-variable real-vs-synthetic plots, drawn directly with Pillow (no display, no browser).

One PNG per (model dir, wave): a panel per column with the shares of each code (or bin) in the
real and the synthetic data, NA as its own bar. The panels were matplotlib axes; with 30+
variables matplotlib's axis and tick machinery took 2.5-3.5 s per plot (most of an evaluation at
scale), so the same bar charts are now drawn as rectangles and text on one image (~0.1 s).
"""

from __future__ import annotations

import io
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from panelsynth.evaluate.columns import EvalColumns
from panelsynth.evaluate.encoding import column_shares
from panelsynth.io import atomic_write_bytes

REAL_COLOUR = "#4C72B0"
SYNTH_COLOUR = "#DD8452"
NCOLS = 3
BAR_WIDTH = 0.4
#: Panel size in pixels and the plot area's margins inside it (left, top, right, bottom).
PANEL_W, PANEL_H = 352, 232
MARGINS = (44, 30, 10, 44)
HEADER_H = 48
GRID_COLOUR = "#DDDDDD"
TEXT_COLOUR = "#222222"


def plot_wave(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    columns: EvalColumns,
    path: Path,
    *,
    title: str,
    shapes: dict[str, float] | None = None,
    footer: bytes | None = None,
) -> Path:
    """Write one PNG with a panel per column: shares of each code (or bin), NA as its own bar.

    Bars are shares of *all* rows, so a variable's bars including NA sum to 1 on each side.
    ``footer`` (a PNG, e.g. :func:`collapse_chart`) is drawn below the panels.
    """
    from PIL import Image, ImageDraw

    cols = list(columns)
    ncols = min(NCOLS, max(len(cols), 1))
    nrows = max(math.ceil(len(cols) / ncols), 1)
    img = Image.new("RGB", (ncols * PANEL_W, HEADER_H + nrows * PANEL_H), "white")
    draw = ImageDraw.Draw(img)
    draw.text((8, 8), title, fill=TEXT_COLOUR, font=_font(13))
    draw.text((8, 28), "bars: share of all rows, NA = missing", fill="#666666", font=_font(10))
    _legend(draw, img.width)
    for i, col in enumerate(cols):
        origin = ((i % ncols) * PANEL_W, HEADER_H + (i // ncols) * PANEL_H)
        shares = column_shares(col, real, synthetic)
        shape = (shapes or {}).get(col.name)
        sub = f" — shape {shape:.2f}" if shape is not None and shape == shape else ""
        _panel(img, draw, origin, f"{col.name} ({col.var_type or col.role}){sub}", *shares)
    if footer:
        img = _stack(img, Image.open(io.BytesIO(footer)).convert("RGB"))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _panel(
    img: Any,
    draw: Any,
    origin: tuple[int, int],
    title: str,
    pr: np.ndarray,
    ps: np.ndarray,
    labels: list[str],
) -> None:
    ox, oy = origin
    left, top = ox + MARGINS[0], oy + MARGINS[1]
    right, bottom = ox + PANEL_W - MARGINS[2], oy + PANEL_H - MARGINS[3]
    draw.text((ox + 6, oy + 8), _fit(title, 52), fill=TEXT_COLOUR, font=_font(11))
    ymax = _nice_max(max(float(pr.max(initial=0)), float(ps.max(initial=0))))
    for frac in (0.0, 0.5, 1.0):
        y = bottom - frac * (bottom - top)
        draw.line([(left, y), (right, y)], fill=GRID_COLOUR)
        draw.text((left - 4, y), f"{frac * ymax:.2f}", fill=TEXT_COLOUR, font=_font(9), anchor="rm")
    n = max(len(labels), 1)
    step = (right - left) / n
    width = BAR_WIDTH * step
    for j, (a, b) in enumerate(zip(pr, ps, strict=True)):
        centre = left + (j + 0.5) * step
        for value, x0, colour in ((a, centre - width, REAL_COLOUR), (b, centre, SYNTH_COLOUR)):
            if value > 0:
                y0 = bottom - (value / ymax) * (bottom - top)
                draw.rectangle([x0, y0, x0 + width, bottom], fill=colour)
    if labels and labels[-1] == "NA":
        x = left + (n - 1) * step
        for y in range(int(top), int(bottom), 6):
            draw.line([(x, y), (x, y + 2)], fill="#999999")
    _x_labels(img, labels, left, step, bottom)


def _x_labels(img: Any, labels: list[str], left: float, step: float, bottom: float) -> None:
    """Tick labels under the bars; rotated by 45 degrees when they would not fit flat."""
    from PIL import Image, ImageDraw

    font = _font(9)
    rotate = len(labels) > 6 or max((len(s) for s in labels), default=0) > 4
    for j, text in enumerate(labels):
        centre = left + (j + 0.5) * step
        text = _fit(text, 11)
        if not rotate:
            ImageDraw.Draw(img).text(
                (centre, bottom + 4), text, fill=TEXT_COLOUR, font=font, anchor="ma"
            )
            continue
        w = int(font.getlength(text)) + 2
        tile = Image.new("L", (w, 12), 0)
        ImageDraw.Draw(tile).text((0, 0), text, fill=255, font=font)
        tile = tile.rotate(45, expand=True)
        img.paste(TEXT_COLOUR, (int(centre - tile.width), int(bottom + 3)), tile)


def _legend(draw: Any, width: int) -> None:
    x = width - 190
    for colour, name in ((REAL_COLOUR, "real"), (SYNTH_COLOUR, "synthetic")):
        draw.rectangle([x, 14, x + 14, 26], fill=colour)
        draw.text((x + 19, 13), name, fill=TEXT_COLOUR, font=_font(11))
        x += 70


def _nice_max(value: float) -> float:
    """The y-axis top: the largest share rounded up to a step of 0.05 (at least 0.05)."""
    return max(math.ceil(value * 1.05 / 0.05) * 0.05, 0.05)


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


@lru_cache(maxsize=8)
def _font(size: int) -> Any:
    """DejaVu Sans (shipped with matplotlib), else Pillow's built-in font."""
    from PIL import ImageFont

    try:
        import matplotlib

        return ImageFont.truetype(
            str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size
        )
    except Exception:  # noqa: BLE001 - any font is better than no plot
        return ImageFont.load_default(size)


def _stack(top: Any, bottom: Any) -> Any:
    """``bottom`` pasted under ``top`` on a white canvas."""
    from PIL import Image

    out = Image.new("RGB", (max(top.width, bottom.width), top.height + bottom.height), "white")
    out.paste(top, (0, 0))
    out.paste(bottom, (0, top.height))
    return out


def collapse_chart(details: list[dict[str, Any]], *, title: str) -> bytes:
    """A small PNG: per item, the real and synthetic answer entropy (all clusters together).

    Items whose synthetic entropy is below half the real one (collapsed) are named in red; the
    dashed tick on each real bar marks half the real entropy.
    """
    from PIL import Image, ImageDraw

    rows = [d for d in details if d.get("cluster") == "all"]
    bar_h, gap, left, top = 9, 7, 150, 40
    width = 520
    height = top + max(len(rows), 1) * (2 * bar_h + gap) + 14
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((8, 6), _fit(title, 80), fill=TEXT_COLOUR, font=_font(12))
    draw.text(
        (8, 22),
        "answer entropy (bits); red: collapsed (synthetic < half the real)",
        fill="#666666",
        font=_font(10),
    )
    _legend(draw, width)
    emax = max(
        [float(d.get(k) or 0.0) for d in rows for k in ("entropy_real", "entropy_candidate")]
        + [0.1]
    )
    scale = (width - left - 16) / emax
    for i, d in enumerate(rows):
        y = top + i * (2 * bar_h + gap)
        colour = "#C0392B" if d.get("collapsed") else TEXT_COLOUR
        draw.text(
            (left - 6, y + bar_h),
            _fit(str(d["column"]), 24),
            fill=colour,
            font=_font(10),
            anchor="rm",
        )
        real = float(d.get("entropy_real") or 0.0)
        syn = float(d.get("entropy_candidate") or 0.0)
        draw.rectangle([left, y, left + real * scale, y + bar_h - 1], fill=REAL_COLOUR)
        draw.rectangle([left, y + bar_h, left + syn * scale, y + 2 * bar_h - 1], fill=SYNTH_COLOUR)
        half = left + 0.5 * real * scale
        draw.line([(half, y - 2), (half, y + 2 * bar_h + 1)], fill="#888888")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
