"""The stability plot of the "Panel" section: real vs synthetic unchanged share per item."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import pandas as pd

from panelsynth.evaluate.longitudinal import HOLDOUT, SYNTHETIC

# the plots module's drawing helpers (one look for every PNG of the report)
from panelsynth.evaluate.plots import REAL_COLOUR, SYNTH_COLOUR, TEXT_COLOUR, _fit, _font, _legend


def stability_plot(section: Mapping[str, Any], *, title: str) -> bytes:
    """PNG: per item, the real and synthetic share of unchanged answers (mean over pairs), with
    a grey tick at the real-half floor's share (half A of the real respondents), drawn with
    Pillow like :mod:`panelsynth.evaluate.plots`.

    Args:
        section: :func:`panelsynth.evaluate.longitudinal.panel_section`'s dict.
        title: The plot's title (model dir, waves).
    """
    from PIL import Image, ImageDraw

    st = pd.DataFrame(section["candidates"][SYNTHETIC]["stability"])
    per = (
        st.groupby("item", sort=False)[["unchanged_real", "unchanged_synthetic"]].mean()
        if len(st)
        else pd.DataFrame(columns=["unchanged_real", "unchanged_synthetic"])
    )
    floor = pd.DataFrame(section["candidates"].get(HOLDOUT, {}).get("stability", []))
    floor_at = (
        floor.groupby("item")["unchanged_synthetic"].mean()
        if len(floor)
        else pd.Series(dtype=float)
    )
    bar_h, gap, left, top, width = 9, 7, 150, 40, 640
    height = top + max(len(per), 1) * (2 * bar_h + gap) + 24
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((8, 6), _fit(title, 80), fill=TEXT_COLOUR, font=_font(12))
    draw.text(
        (8, 22),
        "unchanged answers between consecutive waves; grey tick: real-half floor",
        fill="#666666",
        font=_font(10),
    )
    _legend(draw, width)
    scale = width - left - 16
    for i, (item, row) in enumerate(per.iterrows()):
        y = top + i * (2 * bar_h + gap)
        draw.text(
            (left - 6, y + bar_h),
            _fit(str(item), 24),
            fill=TEXT_COLOUR,
            font=_font(10),
            anchor="rm",
        )
        for j, (value, colour) in enumerate(
            ((row["unchanged_real"], REAL_COLOUR), (row["unchanged_synthetic"], SYNTH_COLOUR))
        ):
            if value == value:  # not NaN
                y0 = y + j * bar_h
                draw.rectangle([left, y0, left + float(value) * scale, y0 + bar_h - 1], fill=colour)
        tick = floor_at.get(item, float("nan"))
        if tick == tick:
            x = left + float(tick) * scale
            draw.line([(x, y - 2), (x, y + 2 * bar_h + 1)], fill="#888888", width=2)
    for frac in (0.0, 0.5, 1.0):
        x = left + frac * scale
        draw.text((x, height - 14), f"{frac:.1f}", fill=TEXT_COLOUR, font=_font(9), anchor="ma")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
