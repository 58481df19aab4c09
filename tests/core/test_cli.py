from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from spp_gui.cli import main
from spp_gui.core.sources import load_source


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_tree_and_json(capsys, small_pth):
    code, out, _ = run(capsys, "inspect", str(small_pth))
    assert code == 0
    assert "total: 52 tensors, 1,248,424 parameters" in out
    code, out, _ = run(capsys, "inspect", "spp_gui:alexnet_spp?num_classes=20", "--json")
    tree = json.loads(out)
    assert tree["spec"] == "spp_gui:alexnet_spp?num_classes=20"
    features = tree["children"][0]
    assert features["name"] == "features" and features["module"] == "Sequential"
    assert features["children"][0]["module"] == "Conv2d"
    assert features["children"][0]["children"][0] == {"name": "features.0.weight", "numel": 23232, "tensors": 1,
                                                       "shape": [64, 3, 11, 11], "dtype": "float32"}


def test_map_then_apply_seed_case(capsys, tmp_path):
    mapping = tmp_path / "m.json"
    code, out, _ = run(capsys, "map", "torchvision:alexnet", "spp_gui:alexnet_spp?num_classes=20",
                       "--strategy", "order", "-o", str(mapping))
    assert code == 0
    assert "13 of 16 target tensors mapped" in out and "26.8%" in out
    assert "\033[" not in out  # no colour codes when not on a terminal
    weights = tmp_path / "out.safetensors"
    code, out, _ = run(capsys, "apply", str(mapping), "-o", str(weights), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["loaded_tensors"] == 13 and abs(report["share"] - 0.2683) < 5e-4
    with load_source(weights) as src:
        assert src.tensors["classifier.1.weight"].shape == (4096, 12800)
        fresh = load_source("torchvision:alexnet")
        assert torch.equal(src.read("features.3.weight"), fresh.read("features.3.weight"))


def test_map_with_rename_rules(capsys, tmp_path):
    state = torch.nn.DataParallel(torch.nn.Linear(3, 2)).state_dict()
    torch.save(state, tmp_path / "dp.pth")
    code, out, _ = run(capsys, "map", str(tmp_path / "dp.pth"), "torchvision:alexnet", "--rename", r"^module\.=",
                       "-o", str(tmp_path / "m.json"))
    assert code == 0 and "0 of 16 target tensors mapped" in out


@pytest.mark.parametrize("argv,message", [
    (["inspect", "missing.pth"], "file not found: missing.pth"),
    (["inspect", "torchvision:resnet5O"], "unknown torchvision model 'resnet5O' (did you mean"),
    (["inspect", "spp_gui:alexnet_spp?levels=1,3"], "perfect square, got 3"),
    (["inspect", "torchvision:alexnet:NOPE"], "unknown weights 'NOPE'"),
    (["map", "torchvision:alexnet", "torchvision:alexnet", "--rename", "(=", "-o", "x.json"], "bad regular expression"),
    (["apply", "missing.json", "-o", "x.safetensors"], "mapping file not found"),
])
def test_user_errors_are_one_line_and_exit_2(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("spp-gui: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_refused_pickle_via_cli(capsys, tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")
    code, _, err = run(capsys, "inspect", str(tmp_path / "module.pth"))
    assert code == 2 and "--trust-pickle" in err
    code, out, _ = run(capsys, "inspect", str(tmp_path / "module.pth"), "--trust-pickle")
    assert code == 0 and "total: 2 tensors" in out


def test_apply_writes_pth_too(capsys, tmp_path, small_state):
    torch.save(small_state, tmp_path / "s.pth")
    run(capsys, "map", str(tmp_path / "s.pth"), "torchvision:squeezenet1_0?num_classes=3", "-o", str(tmp_path / "m.json"))
    code, out, _ = run(capsys, "apply", str(tmp_path / "m.json"), "-o", str(tmp_path / "w.pth"))
    assert code == 0 and "50 of 52 target tensors loaded" in out
    loaded = torch.load(tmp_path / "w.pth", weights_only=True)
    assert torch.equal(loaded["features.0.weight"], small_state["features.0.weight"])


def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "spp_gui", "inspect", "nope.safetensors"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "spp-gui: error: file not found: nope.safetensors"
