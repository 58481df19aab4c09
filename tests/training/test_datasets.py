from __future__ import annotations

import shutil

import pytest

from spp_gui.training.data import DatasetError, scan_dataset, scan_split, split_info_text
from spp_gui.training.engine import Epoch, run


def test_scan_counts_classes(tiny_data):
    train, val = scan_dataset(tiny_data / "train", tiny_data / "val")
    assert train.classes == ["circle", "square", "star"] and len(train) == 24 and len(val) == 12
    assert train.counts == {"circle": 8, "square": 8, "star": 8}
    assert split_info_text(train).startswith("3 classes, 24 images: circle 8")


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DatasetError, match="train folder not found: .*nowhere"):
        scan_split(tmp_path / "nowhere", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class subfolders"):
        scan_split(tmp_path / "empty")
    (tmp_path / "empty" / "cat").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        scan_split(tmp_path / "empty")
    (tmp_path / "empty" / "dog").mkdir()
    (tmp_path / "empty" / "dog" / "a.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match="without images: cat"):
        scan_split(tmp_path / "empty")


def test_class_mismatch_names_both_sides(tiny_data, tmp_path):
    val = tmp_path / "val"
    shutil.copytree(tiny_data / "val", val)
    (val / "star").rename(val / "hexagon")
    with pytest.raises(DatasetError) as info:
        scan_dataset(tiny_data / "train", val)
    assert "only in train: star" in str(info.value) and "only in val: hexagon" in str(info.value)


def test_unreadable_images_are_skipped_and_counted(tiny_data, tmp_path, make_config):
    train = tmp_path / "train"
    shutil.copytree(tiny_data / "train", train)
    (train / "circle" / "broken.png").write_bytes(b"\x89PNG not really")
    (train / "square" / "truncated.png").write_bytes((train / "square" / "0000.png").read_bytes()[:60])
    epochs = []
    result = run(make_config(data__train=str(train)), lambda e: epochs.append(e) if isinstance(e, Epoch) else None)
    assert result.status == "finished"
    assert [e.skipped for e in epochs] == [2, 2]
