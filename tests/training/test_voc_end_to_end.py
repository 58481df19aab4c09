"""The README's VOC 2007 commands, run as written on a generated VOC-format tree.

The block under ``<!-- voc-reproduction -->`` in README.md is parsed (``spp-gui`` lines and
``cat > FILE <<'EOF'`` run files) and run in order through ``spp_gui.cli.main``, so the commands a
reader copies are the ones tested. Three things differ, for a test without network and in seconds:
the ImageNet weights (the spec's random init instead of a download), and the run files' size keys
(a few images at 64 px for one epoch instead of 50 epochs at 227 px).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from spp_gui.cli import main
from spp_gui.training.config import RunConfig
from spp_gui.training.demo_data import write_voc_tree
from spp_gui.training.voc import VOC_CLASSES

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_steps() -> list[tuple[str, object]]:
    """("cmd", argv) and ("file", (name, text)) in the order the README's VOC block gives them."""
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- voc-reproduction -->")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block, "README: no ```sh block after <!-- voc-reproduction -->"
    steps: list[tuple[str, object]] = []
    lines = iter(block.group(1).splitlines())
    for line in lines:
        line = line.split(" # ")[0].strip()
        if heredoc := re.fullmatch(r"cat > (\S+) <<'EOF'", line):
            body = []
            for inner in lines:
                if inner == "EOF":
                    break
                body.append(inner)
            steps.append(("file", (heredoc.group(1), "\n".join(body) + "\n")))
        elif line.startswith("spp-gui "):
            steps.append(("cmd", shlex.split(line)[1:]))
        elif line:
            pytest.fail(f"README VOC block: a line this test cannot run: {line!r}")
    return steps


def test_readme_voc_commands_run_end_to_end(tmp_path, monkeypatch, capsys):
    write_voc_tree(tmp_path / "VOCdevkit" / "VOC2007", VOC_CLASSES, train_per_class=1, val_per_class=1, seed=0)
    monkeypatch.chdir(tmp_path)
    steps = readme_steps()
    commands = [argv[0] for kind, argv in steps if kind == "cmd"]
    assert commands == ["prepare-voc", "map", "train"], commands
    runs = []
    for kind, step in steps:
        if kind == "file":
            name, text = step
            Path(name).write_text(text, encoding="utf-8")
            cfg = RunConfig.load(name)  # the README's file as written is a valid run config...
            assert cfg.run.epochs == 50 and cfg.data.image_size == 227 and cfg.run.batch_size == 128
            assert cfg.optim.scheduler == "step" and (cfg.optim.step_size, cfg.optim.gamma) == (15, 0.1)
            runs.append(cfg)
            cfg.run.epochs, cfg.data.image_size, cfg.run.batch_size = 1, 64, 20  # ...then made small
            cfg.save(name)
            continue
        argv = [a.replace("torchvision:alexnet:IMAGENET1K_V1", "torchvision:alexnet") for a in step]
        assert main(argv) == 0, capsys.readouterr()
    assert [(c.run.name, c.optim.lr, bool(c.model.mapping)) for c in runs] == [("scratch", 1e-3, False),
                                                                               ("mapped", 1e-4, True)]
    out, err = capsys.readouterr()
    assert re.search(r"total\s+20\s+20", out), out  # prepare-voc: one object per class and split, no difficult ones
    assert "13 of 16 target tensors mapped" in out and "26.8%" in out  # the seed's recipe
    assert re.search(r"^scratch: finished, best val acc [0-9.]+", out, re.M), out
    assert re.search(r"^mapped: finished, best val acc [0-9.]+", out, re.M), out
    assert "13 of 16 target tensors loaded" in err, err
    assert (tmp_path / "runs" / "compare.png").is_file()
