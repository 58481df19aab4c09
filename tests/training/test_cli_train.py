from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import Image

import spp_gui
from spp_gui.cli import main


def test_train_two_configs_and_compare(make_config, tmp_path, capsys):
    a, b = make_config(run__name="scratch"), make_config(run__name="other", optim__optimizer="adamw")
    a.save(tmp_path / "a.toml")
    b.save(tmp_path / "b.toml")
    assert main(["train", str(tmp_path / "a.toml"), str(tmp_path / "b.toml"), "--compare"]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"scratch: finished, best val acc [0-9.]+", out) and "other: finished" in out
    assert "[scratch] epoch 2/2: train loss" in err
    figure = tmp_path / "runs" / "compare.png"
    assert f"comparison figure: {figure}" in out
    with Image.open(figure) as im:
        assert im.size == (1040, 360)


def test_train_in_process_leaves_the_callers_sigterm_handler(make_config, tmp_path, capsys):
    """A script (or a test) calling ``main`` keeps its own SIGTERM: not a stop request for a run that ended."""
    make_config(run__epochs=1).save(tmp_path / "run.toml")
    before = signal.getsignal(signal.SIGTERM)
    assert main(["train", str(tmp_path / "run.toml")]) == 0
    assert signal.getsignal(signal.SIGTERM) == before


def test_loader_workers_of_a_later_run_survive_the_package_changing_on_disk(make_config, tmp_path):
    """A long session (the GUI, a script) whose package is upgraded or edited under it: the loader
    workers of its next run still run the code the session runs, not what is on disk now (they died
    at start, "DataLoader worker exited unexpectedly")."""
    package = tmp_path / "site" / "spp_gui"
    shutil.copytree(Path(spp_gui.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    make_config(data__workers=1, data__cache="no", run__epochs=1).save(tmp_path / "run.toml")
    script = textwrap.dedent(f"""
        import sys
        import spp_gui
        from spp_gui.cli import main
        assert spp_gui.__file__.startswith({str(package)!r}), spp_gui.__file__
        assert main(["train", {str(tmp_path / "run.toml")!r}]) == 0
        for name in ("__init__.py", "training/data.py"):
            with open({str(package)!r} + "/" + name, "a") as fh:
                fh.write("\\nraise ImportError('changed on disk')\\n")
        sys.exit(main(["train", {str(tmp_path / "run.toml")!r}]))
    """)
    env = {**os.environ, "PYTHONPATH": str(package.parent), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("tiny: finished") == 2


def test_train_bad_config_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "bad.toml").write_text("[optim]\noptimizer = 'lion'\n")
    assert main(["train", str(tmp_path / "bad.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "optim.optimizer = 'lion'" in err


def test_train_missing_dataset_is_one_line_and_exit_2(make_config, tmp_path, capsys):
    make_config(data__val=str(tmp_path / "no_val")).save(tmp_path / "run.toml")
    assert main(["train", str(tmp_path / "run.toml")]) == 2
    assert "val folder not found" in capsys.readouterr().err


def _voc_tree(root):
    """A two-image VOC2007-layout tree: normal, difficult and too-small objects."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    objects = {
        "000001": [("dog", 0, (10, 10, 90, 70)), ("person", 1, (5, 5, 60, 60)), ("cat", 0, (1, 1, 10, 10))],
        "000002": [("cat", 0, (20, 5, 100, 75))],
        "000003": [("dog", 0, (3, 3, 50, 50)), ("car", 0, (40, 10, 110, 70))],
    }
    for image_id, objs in objects.items():
        Image.new("RGB", (120, 80), (image_id.count("2") * 90, 60, 30)).save(root / "JPEGImages" / f"{image_id}.jpg")
        ann = ET.Element("annotation")
        ET.SubElement(ann, "filename").text = f"{image_id}.jpg"
        for name, difficult, box in objs:
            obj = ET.SubElement(ann, "object")
            ET.SubElement(obj, "name").text = name
            ET.SubElement(obj, "difficult").text = str(difficult)
            bnd = ET.SubElement(obj, "bndbox")
            for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
                ET.SubElement(bnd, key).text = str(value)
        ET.ElementTree(ann).write(root / "Annotations" / f"{image_id}.xml")
    (root / "ImageSets" / "Main" / "train.txt").write_text("000001\n000002\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("000003\n")


def test_prepare_voc_crops_objects_per_split(tmp_path, capsys):
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    _voc_tree(voc)
    out = tmp_path / "voc_folder"
    assert main(["prepare-voc", str(voc), str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"dog\s+1\s+1", printed) and re.search(r"cat\s+1\s+0", printed)
    assert re.search(r"person\s+0\s+0", printed) and re.search(r"total\s+2\s+2", printed)
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(
        ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
         "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"])
    with Image.open(out / "train" / "dog" / "000001_0.jpg") as crop:
        assert crop.size == (81, 61)
    assert not any((out / "train" / "person").iterdir())


def test_prepare_voc_wrong_folder(tmp_path, capsys):
    assert main(["prepare-voc", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "Annotations/ is missing" in capsys.readouterr().err


def _events(lines):
    from spp_gui.training.event_stream import event_from_json

    return [e for e in (event_from_json(line) for line in lines) if e is not None]


def test_control_stdin_is_for_one_process(make_config, tmp_path, capsys):
    make_config().save(tmp_path / "run.toml")
    assert main(["train", str(tmp_path / "run.toml"), "--nproc", "2", "--control-stdin"]) == 2
    assert "--control-stdin drives one process" in capsys.readouterr().err


def test_control_stdin_pauses_resumes_and_stops_after_the_step(make_config, tmp_path):
    """``--control-stdin``, as the Train panel drives a run in its own process: words on stdin."""
    from spp_gui.training.events import Step, Stopped

    cfg = make_config(run__epochs=500)
    cfg.save(tmp_path / "long.toml")
    command = [sys.executable, "-m", "spp_gui", "train", str(tmp_path / "long.toml"), "--events-jsonl",
               "--control-stdin"]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True, cwd=tmp_path) as proc:
        try:
            lines = []
            while not any(isinstance(e, Step) for e in _events(lines)):
                lines.append(proc.stdout.readline())
            proc.stdin.write("pause\n")
            proc.stdin.flush()
            time.sleep(2.0)  # one step in flight may still end; then nothing comes while paused
            while select.select([proc.stdout], [], [], 0.5)[0]:
                lines.append(proc.stdout.readline())
            paused_at = len(lines)
            assert not select.select([proc.stdout], [], [], 2.0)[0], "a paused run went on printing steps"
            proc.stdin.write("resume\n")
            proc.stdin.flush()
            lines.append(proc.stdout.readline())  # the next step comes once resumed
            assert isinstance(_events(lines[paused_at:])[0], Step)
            proc.stdin.close()  # the app went away: the run stops after its step by itself
            lines += proc.stdout.readlines()
            assert proc.wait(60) == 1  # a stopped run is not a finished one
        finally:
            if proc.poll() is None:
                proc.kill()
    events = _events(lines)
    assert isinstance(events[-1], Stopped) and events[-1].epoch < 500
    assert Path(events[-1].run_dir) == tmp_path / "runs" / "tiny"
