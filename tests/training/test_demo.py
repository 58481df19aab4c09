"""The seed's experiment offline, quick size: AlexNet -> AlexNet_SPP by the seed's recipe and by spp_grid,
each beating scratch, and scratch learning too (not stuck at chance)."""

from __future__ import annotations

import math
import re

import torch
import torchvision

from spp_gui.cli import main
from spp_gui.core.specs import build_model
from spp_gui.training.demo import QUICK, source_spec
from spp_gui.training.metrics import read_epochs

ROW = re.compile(r"^(scratch|order|spp_grid)\s+(none \(random init\)|(\d+) of (\d+) tensors, ([0-9.]+)%)\s+"
                 r"(\S+)\s+([0-9.]+)\s+(\d+)\s+([0-9.]+)\s+(\S+)$", re.M)


def test_quick_demo_table(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = {m[0]: m for m in ROW.findall(printed)}
    assert set(rows) == {"scratch", "order", "spp_grid"}, printed
    best = {name: float(row[6]) for name, row in rows.items()}
    # the seed's recipe loads 13 of AlexNet's 16 tensors; spp_grid adds classifier.1's 6x6 level
    assert rows["order"][2:5] == ("13", "16", "26.9") and rows["spp_grid"][2:5] == ("14", "16", "79.4"), printed
    assert rows["scratch"][5] == "1e-03" and rows["order"][5] == rows["spp_grid"][5] == "1e-04"
    # scratch learns: above chance (1/6) and its training loss below ln 6 at the end
    scratch = read_epochs(rows["scratch"][9])
    assert best["scratch"] >= 0.3 and scratch[-1]["train_loss"] < math.log(6) - 0.2, printed
    assert best["order"] >= best["scratch"] + 0.1 and best["spp_grid"] >= best["scratch"] + 0.1, printed
    assert len(scratch) == QUICK.epochs
    for name in ("compare.png", "mapping-order.json", "mapping-spp_grid.json", "source.toml", "scratch.toml",
                 "order.toml", "spp_grid.toml"):
        assert (out / name).is_file(), name
    assert torch.get_num_threads() >= 1  # restored after the demo


def test_source_is_torchvision_alexnet():
    """The demo's source, at full width, is torchvision's AlexNet: same keys and shapes, same outputs at 227 px."""
    spec = source_spec(QUICK).replace("width=0.25", "width=1.0").replace("num_classes=10", "num_classes=1000")
    ours, theirs = build_model(spec, seed=0), torchvision.models.alexnet(weights=None).eval()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in theirs.state_dict().items()]
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 227, 227, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
