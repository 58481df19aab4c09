"""PASCAL VOC 2007 -> a 20-class ImageFolder (train/ and val/), by cropping annotated objects.

The seed article trains AlexNet_SPP on VOC as classification; this turns each non-difficult object
of at least ``min_size`` pixels into one image under its class, with VOC's own train/val split.
Annotations are read with torchvision's own parser (``VOCDetection.parse_voc_xml``).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from torchvision.datasets import VOCDetection

from ..core.errors import SppError

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def read_annotation(path: Path) -> list[dict]:
    """The objects of one annotation file: name, difficult, box (xmin, ymin, xmax, ymax)."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise SppError(f"cannot read VOC annotation {path}: {exc}") from exc
    ann = VOCDetection.parse_voc_xml(root).get("annotation", {})
    objects = ann.get("object", [])
    if isinstance(objects, dict):
        objects = [objects]
    out = []
    for obj in objects:
        box = obj.get("bndbox", {})
        try:
            xyxy = tuple(int(float(box[k])) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (KeyError, ValueError) as exc:
            raise SppError(f"{path}: object {obj.get('name')!r} has a bad bndbox ({exc})") from exc
        out.append({"name": obj.get("name", ""), "difficult": str(obj.get("difficult", "0")) == "1", "box": xyxy})
    return out


def prepare_voc(voc_root: str | os.PathLike, out: str | os.PathLike, *, min_size: int = 32,
                progress: Callable[[str, int, int], None] | None = None) -> dict[str, dict[str, int]]:
    """Write ``out/{train,val}/<class>/<image>_<k>.jpg``; return counts per split and class."""
    root = Path(voc_root)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        if not (root / sub).is_dir():
            raise SppError(f"{root} is not a VOC year folder: {sub}/ is missing "
                           "(pass e.g. VOCdevkit/VOC2007, the folder holding Annotations/ and JPEGImages/)")
    out = Path(out)
    counts: dict[str, dict[str, int]] = {}
    for split in ("train", "val"):
        list_file = root / "ImageSets" / "Main" / f"{split}.txt"
        if not list_file.is_file():
            raise SppError(f"VOC split list missing: {list_file}")
        ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
        per_class = {c: 0 for c in VOC_CLASSES}
        for c in VOC_CLASSES:
            (out / split / c).mkdir(parents=True, exist_ok=True)
        for n, image_id in enumerate(ids):
            if progress is not None:
                progress(split, n, len(ids))
            objects = read_annotation(root / "Annotations" / f"{image_id}.xml")
            wanted = [o for o in objects if not o["difficult"] and o["name"] in per_class
                      and min(o["box"][2] - o["box"][0], o["box"][3] - o["box"][1]) >= min_size]
            if not wanted:
                continue
            image_path = root / "JPEGImages" / f"{image_id}.jpg"
            try:
                with Image.open(image_path) as im:
                    im = im.convert("RGB")
                    for k, obj in enumerate(wanted):
                        xmin, ymin, xmax, ymax = obj["box"]
                        crop = im.crop((max(xmin - 1, 0), max(ymin - 1, 0), xmax, ymax))  # VOC boxes are 1-based
                        crop.save(out / split / obj["name"] / f"{image_id}_{k}.jpg", quality=95)
                        per_class[obj["name"]] += 1
            except OSError as exc:
                raise SppError(f"cannot read VOC image {image_path}: {exc}") from exc
        counts[split] = per_class
    return counts
