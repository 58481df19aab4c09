"""Loss and accuracy curves drawn with PIL: a PNG without a display, Qt or matplotlib.

Two panels like the seed's figure (loss left, accuracy right); each run one colour, validation
solid and training thin, so several runs compare in one image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from ..core.atomic import atomic_write

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75)]
PANEL_W, PANEL_H, MARGIN = 520, 360, 48


def _nice_range(values: Sequence[float], floor_zero: bool) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if floor_zero:
        lo = min(0.0, lo)
    if hi - lo < 1e-9:
        hi = lo + 1.0
    pad = (hi - lo) * 0.05
    return lo - (0 if floor_zero else pad), hi + pad


def _panel(draw: ImageDraw.ImageDraw, x0: int, title: str, series: list[tuple[str, tuple, list[float], list[float], int]],
           floor_zero: bool, font) -> None:
    left, top, right, bottom = x0 + MARGIN, MARGIN, x0 + PANEL_W - 12, PANEL_H - 36
    draw.rectangle([left, top, right, bottom], outline=(90, 90, 90))
    draw.text((left, 14), title, fill=(0, 0, 0), font=font)
    xs_all = [x for _, _, xs, _, _ in series for x in xs] or [1.0]
    ys_all = [y for _, _, _, ys, _ in series for y in ys]
    xlo, xhi = min(xs_all), max(xs_all)
    if xhi - xlo < 1e-9:
        xhi = xlo + 1
    ylo, yhi = _nice_range(ys_all, floor_zero)
    for i in range(5):  # y grid and labels
        value = ylo + (yhi - ylo) * i / 4
        y = bottom - (bottom - top) * i / 4
        draw.line([left, y, right, y], fill=(225, 225, 225))
        draw.text((x0 + 4, y - 6), f"{value:.3g}", fill=(60, 60, 60), font=font)
    draw.text((left, bottom + 8), f"epoch {xlo:g}", fill=(60, 60, 60), font=font)
    draw.text((right - 60, bottom + 8), f"{xhi:g}", fill=(60, 60, 60), font=font)

    def px(x: float, y: float) -> tuple[float, float]:
        y = min(max(y, ylo), yhi)
        return left + (right - left) * (x - xlo) / (xhi - xlo), bottom - (bottom - top) * (y - ylo) / (yhi - ylo)

    legend_y = top + 6
    for label, colour, xs, ys, width in series:
        points = [px(x, y) for x, y in zip(xs, ys, strict=False) if math.isfinite(y)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=width)
        for p in points:
            draw.ellipse([p[0] - width, p[1] - width, p[0] + width, p[1] + width], fill=colour)
        draw.line([right - 150, legend_y + 6, right - 130, legend_y + 6], fill=colour, width=width)
        draw.text((right - 126, legend_y), label, fill=(0, 0, 0), font=font)
        legend_y += 14


def render_curves(runs: dict[str, list[dict[str, float]]], path: str | os.PathLike) -> None:
    """Write one PNG with the loss and accuracy curves of every run (name -> epoch rows)."""
    image = Image.new("RGB", (PANEL_W * 2, PANEL_H), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    loss, acc = [], []
    for i, (name, rows) in enumerate(runs.items()):
        colour = COLOURS[i % len(COLOURS)]
        light = tuple(int(c + (255 - c) * 0.45) for c in colour)
        xs = [r["epoch"] for r in rows]
        loss.append((f"{name} train", light, xs, [r["train_loss"] for r in rows], 1))
        loss.append((f"{name} val", colour, xs, [r["val_loss"] for r in rows], 2))
        acc.append((f"{name} train", light, xs, [r["train_acc"] for r in rows], 1))
        acc.append((f"{name} val", colour, xs, [r["val_acc"] for r in rows], 2))
    _panel(draw, 0, "loss", loss, floor_zero=True, font=font)
    _panel(draw, PANEL_W, "accuracy", acc, floor_zero=True, font=font)
    with atomic_write(path, "wb") as fh:
        image.save(fh, format="PNG")
