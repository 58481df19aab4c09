"""A procedurally drawn image dataset (shapes on textured backgrounds), deterministic by seed.

It stands in for ImageNet -> VOC offline: the source task (many images of ten shape classes,
plain backgrounds) shares visual primitives and some classes with the target task (few images,
six classes, two of them new, on cluttered backgrounds), as ImageNet shares them with VOC. So
features learned on the source help the target, which is what the seed's experiment shows.
"""

from __future__ import annotations

import math
import os
import random
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "hexagon", "diamond", "arrow", "crescent",
          "lshape", "bars")
SOURCE_CLASSES = SHAPES[:10]
TARGET_CLASSES = ("circle", "triangle", "star", "cross", "lshape", "bars")


def _polygon(cx: float, cy: float, r: float, n: int, rot: float, inner: float | None = None) -> list[tuple[float, float]]:
    points = []
    steps = n * 2 if inner else n
    for k in range(steps):
        radius = r if (inner is None or k % 2 == 0) else r * inner
        a = rot + 2 * math.pi * k / steps
        points.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    return points


def _rotated(points: list[tuple[float, float]], cx: float, cy: float, rot: float) -> list[tuple[float, float]]:
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, rot: float, colour) -> None:
    """Draw one shape of radius ~r centred at (cx, cy)."""
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "ring":
        w = max(2.0, r * 0.35)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=int(w))
    elif shape == "square":
        draw.polygon(_polygon(cx, cy, r * 1.2, 4, rot), fill=colour)
    elif shape == "diamond":
        pts = [(cx, cy - r * 1.2), (cx + r * 0.7, cy), (cx, cy + r * 1.2), (cx - r * 0.7, cy)]
        draw.polygon(_rotated(pts, cx, cy, rot * 0.3), fill=colour)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, r * 1.2, 3, rot), fill=colour)
    elif shape == "hexagon":
        draw.polygon(_polygon(cx, cy, r * 1.1, 6, rot), fill=colour)
    elif shape == "star":
        draw.polygon(_polygon(cx, cy, r * 1.3, 5, rot, inner=0.45), fill=colour)
    elif shape == "cross":
        w = r * 0.35
        pts = [(cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w), (cx + r, cy + w), (cx + w, cy + w),
               (cx + w, cy + r), (cx - w, cy + r), (cx - w, cy + w), (cx - r, cy + w), (cx - r, cy - w), (cx - w, cy - w)]
        draw.polygon(_rotated(pts, cx, cy, rot), fill=colour)
    elif shape == "arrow":
        pts = [(cx - r, cy - r * 0.25), (cx + r * 0.2, cy - r * 0.25), (cx + r * 0.2, cy - r * 0.7), (cx + r, cy),
               (cx + r * 0.2, cy + r * 0.7), (cx + r * 0.2, cy + r * 0.25), (cx - r, cy + r * 0.25)]
        draw.polygon(_rotated(pts, cx, cy, rot), fill=colour)
    elif shape == "crescent":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)  # render() bites it with the background
    elif shape == "lshape":
        w = r * 0.45
        pts = [(cx - r, cy - r), (cx - r + w, cy - r), (cx - r + w, cy + r - w), (cx + r, cy + r - w), (cx + r, cy + r),
               (cx - r, cy + r)]
        draw.polygon(_rotated(pts, cx, cy, rot), fill=colour)
    elif shape == "bars":
        w = r * 0.3
        for off in (-r * 0.55, r * 0.55):
            pts = [(cx + off - w / 2, cy - r), (cx + off + w / 2, cy - r), (cx + off + w / 2, cy + r), (cx + off - w / 2, cy + r)]
            draw.polygon(_rotated(pts, cx, cy, rot), fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def render(shape: str, rng: random.Random, size: int, cluttered: bool) -> Image.Image:
    """One image of ``shape``: random placement, size, rotation, colours; clutter for the target domain."""
    def colour(lo: int, hi: int) -> tuple[int, int, int]:
        return (rng.randint(lo, hi), rng.randint(lo, hi), rng.randint(lo, hi))

    bg = colour(0, 90) if rng.random() < 0.5 else colour(150, 255)
    im = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(im)
    if cluttered:  # stripes and specks unrelated to the class
        for _ in range(rng.randint(2, 5)):
            x0, y0 = rng.uniform(0, size), rng.uniform(0, size)
            draw.line([x0, y0, x0 + rng.uniform(-size, size), y0 + rng.uniform(-size, size)],
                      fill=colour(0, 255), width=rng.randint(1, 3))
        for _ in range(rng.randint(3, 8)):
            x0, y0, s = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(1, 3)
            draw.ellipse([x0 - s, y0 - s, x0 + s, y0 + s], fill=colour(0, 255))
    # a foreground colour far from the background
    fg = tuple(255 - c + rng.randint(-40, 40) for c in bg)
    fg = tuple(max(0, min(255, c)) for c in fg)
    r = rng.uniform(0.22, 0.34) * size
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    rot = rng.uniform(0, 2 * math.pi)
    draw_shape(draw, shape, cx, cy, r, rot, fg)
    if shape == "crescent":
        ox, oy = cx + r * 0.5 * math.cos(rot), cy + r * 0.5 * math.sin(rot)
        draw.ellipse([ox - r * 0.85, oy - r * 0.85, ox + r * 0.85, oy + r * 0.85], fill=bg)
    if rng.random() < 0.3:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return im


def write_split(root: str | os.PathLike, classes: tuple[str, ...], per_class: int, size: int, seed: int,
                cluttered: bool) -> Path:
    """Write ``root/<class>/<i>.png``; the same seed always gives the same pixels."""
    root = Path(root)
    for index, shape in enumerate(classes):
        folder = root / shape
        folder.mkdir(parents=True, exist_ok=True)
        rng = random.Random(seed * 1_000_003 + index * 7919)
        for i in range(per_class):
            render(shape, rng, size, cluttered).save(folder / f"{i:04d}.png", compress_level=1)
    return root


def write_demo_datasets(out: str | os.PathLike, *, source_per_class: int, target_train: int, target_val: int,
                        size: int = 64, seed: int = 0) -> dict[str, Path]:
    """The source task (train/val) and the target task (train/val) under ``out``."""
    out = Path(out)
    return {
        "source_train": write_split(out / "source" / "train", SOURCE_CLASSES, source_per_class, size, seed, False),
        "source_val": write_split(out / "source" / "val", SOURCE_CLASSES, max(4, source_per_class // 5), size,
                                  seed + 1, False),
        "target_train": write_split(out / "target" / "train", TARGET_CLASSES, target_train, size, seed + 2, True),
        "target_val": write_split(out / "target" / "val", TARGET_CLASSES, target_val, size, seed + 3, True),
    }


#: Width x height of PASCAL VOC 2007 photos (most are 500 on the long side).
VOC_SIZES = ((500, 375), (375, 500), (500, 333), (500, 400), (333, 500), (500, 281))


def render_photo(shape: str, rng: random.Random, width: int, height: int, noise: int = 24) -> Image.Image:
    """A VOC-sized stand-in for a photo: ``shape`` on clutter with sensor-like noise, so that it costs
    what a photo costs to decode (about 100 KB at JPEG quality 90, where a flat drawing is a few KB)."""
    im = render(shape, rng, max(width, height), cluttered=True).resize((width, height), Image.Resampling.BILINEAR)
    grain = np.random.default_rng(rng.getrandbits(32)).integers(-noise, noise + 1, (height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(np.asarray(im, dtype=np.int16) + grain, 0, 255).astype(np.uint8))


def write_jpeg_split(root: str | os.PathLike, classes: tuple[str, ...], per_class: int, seed: int,
                     quality: int = 90) -> Path:
    """Write ``root/<class>/<i>.jpg`` at VOC sizes; each class draws ``SHAPES`` in turn."""
    root = Path(root)
    for index, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        rng = random.Random(seed * 1_000_003 + index * 7919)
        for i in range(per_class):
            width, height = rng.choice(VOC_SIZES)
            render_photo(SHAPES[index % len(SHAPES)], rng, width, height).save(folder / f"{i:04d}.jpg", quality=quality)
    return root


def write_voc_tree(root: str | os.PathLike, classes: tuple[str, ...], train_per_class: int, val_per_class: int,
                   seed: int = 0) -> Path:
    """A PASCAL VOC year folder (``JPEGImages/``, ``Annotations/`` XML, ``ImageSets/Main/{train,val}.txt``):
    each photo holds one object of its class (a drawn shape in its box) and, every third, a second one
    marked difficult, which prepare-voc leaves out as VOC's own evaluation does."""
    root = Path(root)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    number = 0
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        ids = []
        for index, name in enumerate(classes):
            for _ in range(per_class):
                number += 1
                image_id = f"{number:06d}"
                width, height = rng.choice(VOC_SIZES)
                photo = render_photo("bars", rng, width, height)
                objects = [(name, 0, _paste_object(photo, SHAPES[index % len(SHAPES)], rng))]
                if number % 3 == 0:
                    objects.append((classes[(index + 1) % len(classes)], 1, _paste_object(photo, "ring", rng)))
                photo.save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
                _write_annotation(root / "Annotations" / f"{image_id}.xml", image_id, width, height, objects)
                ids.append(image_id)
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    return root


def _paste_object(photo: Image.Image, shape: str, rng: random.Random) -> tuple[int, int, int, int]:
    """Draw ``shape`` into a random box of ``photo``; the box in VOC's 1-based inclusive pixels."""
    side = rng.randint(min(photo.size) // 3, min(photo.size) * 2 // 3)
    x0, y0 = rng.randint(0, photo.width - side), rng.randint(0, photo.height - side)
    photo.paste(render(shape, rng, side, cluttered=False), (x0, y0))
    return x0 + 1, y0 + 1, x0 + side, y0 + side


def _write_annotation(path: Path, image_id: str, width: int, height: int,
                      objects: list[tuple[str, int, tuple[int, int, int, int]]]) -> None:
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = "VOC2007"
    ET.SubElement(ann, "filename").text = f"{image_id}.jpg"
    size = ET.SubElement(ann, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for name, difficult, box in objects:
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(difficult)
        bndbox = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
            ET.SubElement(bndbox, key).text = str(value)
    ET.ElementTree(ann).write(path, encoding="utf-8")
