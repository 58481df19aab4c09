"""Issue 13 on the training side: a run config, a dataset or a VOC tree someone sent is untrusted input.

Real files throughout (drawn image folders, TOML written as text), no mocks.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from spp_gui.cli import main
from spp_gui.training.config import ConfigError, RunConfig
from spp_gui.training.demo_data import write_split
from spp_gui.training.engine import run

REPO = Path(__file__).resolve().parents[2]
TINY_SPEC = "spp_gui:alexnet_spp?num_classes=3&width=0.0625&dropout=0.0"  # as conftest's
CLASSES = ("circle", "square", "star")


def _toml_run(tmp_path: Path, data: Path, **extra: str) -> Path:
    """A run config written as text, the way a person (or an attacker) would send one."""
    sections = {"model": {"spec": json.dumps(TINY_SPEC)},
                "data": {"train": json.dumps(str(data / "train")), "val": json.dumps(str(data / "val")),
                         "image_size": "32"},
                "run": {"out": json.dumps(str(tmp_path / "runs")), "name": '"tiny"', "epochs": "2",
                        "batch_size": "8", "log_every": "1"}}
    for dotted, value in extra.items():
        section, _, key = dotted.partition("__")
        sections.setdefault(section, {})[key] = value
    text = "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) for name, keys in sections.items())
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- 4 and 6: a stop, by SIGTERM to the whole process group, also while loader workers run -----------


def _stop_group_in_epoch(command: list[str], epoch: int) -> tuple[int, str, str]:
    """Start ``command`` in a process group of its own, SIGTERM the whole group at its third step of
    ``epoch``; its exit code, the stdout after the signal, and all of stderr."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        steps = 0
        for line in proc.stdout:
            event = json.loads(line) if line.startswith('{"event":') else {}
            if event.get("event") == "Step" and event["epoch"] == epoch:
                steps += 1
                if steps == 3:  # in epoch 2 the train and val loaders' workers are both running
                    break
        else:
            raise AssertionError(f"the run ended before epoch {epoch}: {''.join(stderr)}")
        os.killpg(proc.pid, signal.SIGTERM)
        rest = proc.stdout.read()
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    proc.stdout.close()
    proc.stderr.close()
    return code, rest, "".join(stderr)


def _long_run(tmp_path: Path, workers: int) -> Path:
    data = tmp_path / "data"
    write_split(data / "train", CLASSES, 40, 32, seed=0, cluttered=False)
    write_split(data / "val", CLASSES, 8, 32, seed=1, cluttered=False)
    return _toml_run(tmp_path, data, data__workers=str(workers), data__cache='"no"', run__epochs="1000")


@pytest.mark.parametrize(("workers", "epoch"), [(2, 2), (0, 1)])
def test_sigterm_to_the_process_group_stops_the_run(tmp_path, workers, epoch):
    """The GUI's Stop, torchrun or a scheduler signal the whole group: loader workers die with the trainer's
    SIGTERM; the run must end as a stop (cancelled, checkpoints kept), not crash on the dead workers.
    Stopped in epoch 1, nothing was evaluated, and the summary says so rather than "best val acc nan"."""
    config = _long_run(tmp_path, workers)
    code, rest, err = _stop_group_in_epoch([sys.executable, "-m", "spp_gui", "train", str(config), "--events-jsonl"],
                                           epoch)
    assert "Traceback" not in err and "exited unexpectedly" not in err, err
    assert '"event":"Cancelled"' in rest, (rest, err)
    assert code == 1, err  # as for any run that did not finish: the code a Stop has always given
    assert "[tiny] cancelled" in err and "tiny: cancelled" in err, err
    run_dir = tmp_path / "runs" / "tiny"
    assert (run_dir / "config.toml").is_file() and (run_dir / "metrics.jsonl").is_file()
    if epoch == 1:
        assert "no epoch was evaluated" in err and "acc nan" not in err, err
    else:
        assert (run_dir / "last.safetensors").is_file() and re.search(r"tiny: cancelled, best val acc [01]\.", err)


# -- 1: a run config or a VOC list never makes the app write (or read) outside the folders chosen ----


@pytest.mark.parametrize("name", ["../../x", "../escape", "/etc/passwd", "a/b", "a\\b", "..", ".", "x\x00y", "  "])
def test_run_name_must_be_one_path_component(tiny_data, tmp_path, name):
    config = _toml_run(tmp_path, tiny_data, run__name=json.dumps(name))
    with pytest.raises(ConfigError) as info:
        RunConfig.load(config)
    assert "run.name" in str(info.value) and repr(name) in str(info.value) and "run.toml" in str(info.value)


def test_a_bad_run_name_set_in_code_writes_nothing(make_config, tmp_path):
    """The engine checks too: a config built in a script, or by the GUI, never went through load()."""
    with pytest.raises(ConfigError, match="run.name"):
        run(make_config(run__name="../escape"))
    assert not (tmp_path / "escape").exists() and not (tmp_path / "runs").exists()


def test_run_out_that_is_a_file_is_one_line_before_any_run(tiny_data, tmp_path, capsys):
    good = _toml_run(tmp_path, tiny_data)
    (tmp_path / "taken").write_text("a file, not a folder\n")
    bad_dir = tmp_path / "second"
    bad_dir.mkdir()
    bad = _toml_run(bad_dir, tiny_data, run__out=json.dumps(str(tmp_path / "taken")))
    assert main(["train", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.out" in err and str(tmp_path / "taken") in err and "is a file" in err
    assert not (tmp_path / "runs").exists()  # checked before the first run started


def _voc_tree(root: Path, train_ids: list[str]) -> None:
    """A VOC2007-layout tree with one image and annotation, and a train list as given."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    _voc_image(root / "Annotations", root / "JPEGImages", "000001")
    (root / "ImageSets" / "Main" / "train.txt").write_text("".join(f"{i}\n" for i in train_ids))
    (root / "ImageSets" / "Main" / "val.txt").write_text("000001\n")


def _voc_image(annotations: Path, images: Path, image_id: str) -> None:
    Image.new("RGB", (120, 80), (90, 60, 30)).save(images / f"{image_id}.jpg")
    ann = ET.Element("annotation")
    obj = ET.SubElement(ann, "object")
    ET.SubElement(obj, "name").text = "dog"
    ET.SubElement(obj, "difficult").text = "0"
    box = ET.SubElement(obj, "bndbox")
    for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (10, 10, 90, 70), strict=True):
        ET.SubElement(box, key).text = str(value)
    ET.ElementTree(ann).write(annotations / f"{image_id}.xml")


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_prepare_voc_refuses_list_lines_that_leave_the_voc_folder(tmp_path, capsys, kind):
    # an annotation and image outside the VOC folder that a crafted line would read, and crop into
    # a path outside OUT
    outside = tmp_path / "outside"
    outside.mkdir()
    _voc_image(outside, outside, "victim")
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    line = "../../../outside/victim" if kind == "relative" else str(outside / "victim")
    _voc_tree(voc, ["000001", line])
    out = tmp_path / "voc_folder"
    assert main(["prepare-voc", str(voc), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.txt" in err and "line 2" in err and repr(line) in err
    assert not out.exists()  # refused before anything was written
    assert sorted(p.name for p in outside.iterdir()) == ["victim.jpg", "victim.xml"]


def test_prepare_voc_out_that_is_a_file_is_one_line(tmp_path, capsys):
    voc = tmp_path / "VOC2007"
    _voc_tree(voc, ["000001"])
    (tmp_path / "out").write_text("not a folder\n")
    assert main(["prepare-voc", str(voc), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "out") in err and "is a file" in err


def test_prepare_voc_still_writes_inside_out(tmp_path, capsys):
    voc = tmp_path / "VOC2007"
    _voc_tree(voc, ["000001", "2008_000001"])
    _voc_image(voc / "Annotations", voc / "JPEGImages", "2008_000001")
    assert main(["prepare-voc", str(voc), str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out" / "train" / "dog").iterdir()) == ["000001_0.jpg",
                                                                                      "2008_000001_0.jpg"]


# -- 2: values that would exhaust the machine, or make no sense, are refused with the key named --------


@pytest.mark.parametrize(("key", "value"), [
    ("data__workers", "1000000"), ("data__image_size", "1000000"), ("run__batch_size", "1000000000"),
    ("run__log_every", "1000000000000"), ("run__epochs", "1000000000"), ("optim__weight_decay", "nan"),
    ("optim__weight_decay", "-0.1"), ("optim__lr", "-0.001"), ("optim__lr", "inf"), ("optim__loaded_lr", "nan"),
    ("optim__momentum", "nan"), ("optim__gamma", "inf"), ("optim__step_size", "1000000000000"),
    ("data__mean", "[nan, 0.5, 0.5]"), ("data__std", "[inf, 0.5, 0.5]"), ("run__seed", "-1"),
    ("data__max_unreadable", "1.5"),
])
def test_out_of_range_values_name_the_key_and_value(tiny_data, tmp_path, key, value):
    config = _toml_run(tmp_path, tiny_data, **{key: value})
    with pytest.raises(ConfigError) as info:
        RunConfig.load(config)
    message = str(info.value)
    assert key.replace("__", ".") in message and "run.toml" in message and "\n" not in message
    if key == "data__workers":
        assert f"{os.cpu_count()} CPU" in message


@pytest.mark.parametrize("option", ["num_classes=-5", "num_classes=0", "num_classes=1e400", "width=nan",
                                    "width=-1", "dropout=2"])
def test_bad_model_spec_options_name_the_option(tiny_data, tmp_path, capsys, option):
    spec = TINY_SPEC.replace("num_classes=3", option) if "num_classes" in option else f"{TINY_SPEC}&{option}"
    config = _toml_run(tmp_path, tiny_data, model__spec=json.dumps(spec))
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.spec" in err and option.split("=")[0] in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("kind", ["fifo", "device", "deep", "big"])
def test_a_run_config_is_read_as_untrusted_data(tmp_path, kind):
    """A FIFO never blocks, /dev/zero is never read to the end, deep nesting is one ConfigError."""
    import os

    from spp_gui.training.config import ConfigError, RunConfig

    path = tmp_path / "run.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = "/dev/zero"
    elif kind == "deep":
        path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    else:
        path.write_bytes(b"# " + b"a" * (2 << 20) + b"\n")
    with pytest.raises(ConfigError) as info:
        RunConfig.load(path)
    assert str(path) in str(info.value)
