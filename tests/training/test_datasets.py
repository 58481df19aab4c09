from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from spp_gui.training.data import DatasetError, scan_dataset, scan_split, split_info_text
from spp_gui.training.engine import Epoch, Failed, Finished, run
from spp_gui.training.engine import train as train_run


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


def _broken_copy(tiny_data, tmp_path, broken_per_class: int, replace: bool = False):
    """A copy of the tiny train split with unreadable files added (or, ``replace``: every image unreadable)."""
    train = tmp_path / "train"
    shutil.copytree(tiny_data / "train", train)
    for folder in sorted(p for p in train.iterdir() if p.is_dir()):
        if replace:
            for image in folder.iterdir():
                image.write_bytes(b"not an image")
        for k in range(broken_per_class):
            (folder / f"broken{k}.png").write_bytes(b"\x89PNG not really")
    return train


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_split_with_no_readable_image_fails_and_saves_nothing(tiny_data, tmp_path, make_config, split):
    broken = _broken_copy(tiny_data, tmp_path, 0, replace=True)
    cfg = make_config(**{f"data__{split}": str(broken), "data__max_unreadable": 1.0})
    events = []
    result = run(cfg, events.append)
    assert result.status == "failed" and result.failure == "data"
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.kind == "data"
    assert f"no image in the {split} folder {broken} could be read" in failed.message
    assert not any(isinstance(e, (Epoch, Finished)) for e in events)
    assert not (Path(result.run_dir) / "best.safetensors").exists()


def test_cli_does_not_report_success_on_unreadable_images(tiny_data, tmp_path, make_config, capsys):
    from spp_gui.cli import main

    make_config(data__train=str(_broken_copy(tiny_data, tmp_path, 0, replace=True))).save(tmp_path / "run.toml")
    assert main(["train", str(tmp_path / "run.toml")]) == 1
    captured = capsys.readouterr()
    assert "done" not in captured.err and "tiny: failed, no epoch was evaluated" in captured.out
    assert "could not be read" in captured.err


def test_too_many_unreadable_images_stop_the_run(tiny_data, tmp_path, make_config):
    broken = _broken_copy(tiny_data, tmp_path, 2)  # 6 of 30 images: 20 %
    events = []
    result = run(make_config(data__train=str(broken), data__cache="no"), events.append)
    assert result.status == "failed" and result.failure == "data"
    message = events[-1].message
    assert re.search(rf"[4-6] of the 30 images in the train folder {re.escape(str(broken))} could not be read", message)
    assert "more than data.max_unreadable = 0.1 allows" in message
    assert not (Path(result.run_dir) / "best.safetensors").exists()
    # a share the config allows
    result = run(make_config(data__train=str(broken), data__max_unreadable=0.25, run__name="allowed"))
    assert result.status == "finished" and result.epochs[-1]["skipped"] == 6


def test_a_class_folder_that_vanishes_mid_run_is_an_error(tiny_data, tmp_path, make_config):
    train = tmp_path / "train"
    shutil.copytree(tiny_data / "train", train)
    events = []
    for event in train_run(make_config(data__train=str(train), data__cache="no", run__epochs=3,
                                       data__max_unreadable=1.0)):
        events.append(event)
        if isinstance(event, Epoch) and event.epoch == 1:
            shutil.rmtree(train / "star")
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.kind == "data", failed
    assert f"class folder {train / 'star'} vanished" in failed.message
    assert [e.epoch for e in events if isinstance(e, Epoch)] == [1]
