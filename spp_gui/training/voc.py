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


def read_split_ids(list_file: Path) -> list[str]:
    """The image ids of a VOC split list; each must be a bare file name (``000005``, ``2008_000123``), so
    a crafted list cannot make prepare-voc read outside the VOC folder or write outside OUT."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SppError(f"VOC split list missing: {list_file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SppError(f"cannot read VOC split list {list_file}: {exc}") from exc
    ids = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        image_id = line.split()[0]
        if not _is_bare_name(image_id):
            raise SppError(f"{list_file}, line {number}: {image_id!r} is not a VOC image id (a file name such as "
                           "000005, without folders); fix or remove that line")
        ids.append(image_id)
    return ids


def _is_bare_name(name: str) -> bool:
    return (name not in (".", "..") and not any(c in name for c in "/\\:") and name.isprintable()
            and not name.startswith("."))


def _output_folder(out: Path) -> None:
    """OUT's split folders are folders, or can be made: checked before any image is cropped."""
    for split in (out / "train", out / "val"):
        for folder in (split, *split.parents):
            if folder.is_dir():
                break
            if folder.exists() or folder.is_symlink():
                raise SppError(f"cannot write the dataset to {out}: {folder} is a file, not a folder; "
                               "pick another OUT folder")


def prepare_voc(voc_root: str | os.PathLike, out: str | os.PathLike, *, min_size: int = 32,
                progress: Callable[[str, int, int], None] | None = None) -> dict[str, dict[str, int]]:
    """Write ``out/{train,val}/<class>/<image>_<k>.jpg``; return counts per split and class.

    Reads only inside ``voc_root`` (the split lists hold bare ids) and writes only inside ``out``.
    """
    root = Path(voc_root)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        if not (root / sub).is_dir():
            raise SppError(f"{root} is not a VOC year folder: {sub}/ is missing "
                           "(pass e.g. VOCdevkit/VOC2007, the folder holding Annotations/ and JPEGImages/)")
    out = Path(out)
    splits = {split: read_split_ids(root / "ImageSets" / "Main" / f"{split}.txt") for split in ("train", "val")}
    _output_folder(out)
    try:
        return _crop_splits(root, out, splits, min_size, progress)
    except OSError as exc:  # writing: the disk is full, a folder is read-only, ...
        raise SppError(f"cannot write the dataset to {out}: {exc}") from exc


def _crop_splits(root: Path, out: Path, splits: dict[str, list[str]], min_size: int,
                 progress: Callable[[str, int, int], None] | None) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for split, ids in splits.items():
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
                    rgb = im.convert("RGB")
                    crops = [rgb.crop((max(xmin - 1, 0), max(ymin - 1, 0), xmax, ymax))  # VOC boxes are 1-based
                             for xmin, ymin, xmax, ymax in (obj["box"] for obj in wanted)]
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise SppError(f"cannot read VOC image {image_path}: {exc}") from exc
            for k, (obj, crop) in enumerate(zip(wanted, crops, strict=True)):
                crop.save(out / split / obj["name"] / f"{image_id}_{k}.jpg", quality=95)
                per_class[obj["name"]] += 1
        counts[split] = per_class
    return counts
