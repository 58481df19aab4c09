"""A mapping, run config or autosave someone sent is data: a ``file.py:Class`` spec in it never runs unasked.

Every test uses a real module that leaves a marker file when it is imported.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from faultgen import EVIL_PY as EVIL  # a model file that leaves a marker when imported

from spp_gui import build_model
from spp_gui.cli import main
from spp_gui.core.mapping import Entry, Mapping
from spp_gui.core.trust import UntrustedCodeError, forget_trust, is_trusted, trust_file


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.py"
    path.write_text(EVIL.format(marker=str(marker)))
    return path, marker


def _mapping(tmp_path, source_spec: str, target_spec: str) -> str:
    mapping = Mapping(source_spec, target_spec)
    mapping.set(Entry("fc.weight", "fc.weight"))
    path = tmp_path / "sent.json"
    mapping.save(path)
    return str(path)


@pytest.fixture
def source_pth(tmp_path):
    path = tmp_path / "src.pth"
    torch.save({"fc.weight": torch.randn(2, 4), "fc.bias": torch.randn(2)}, path)
    return str(path)


def test_build_model_refuses_a_file_nobody_trusted(evil):
    path, marker = evil
    with pytest.raises(UntrustedCodeError) as info:
        build_model(f"{path}:Net")
    assert not marker.exists()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert str(path) in str(info.value) and digest[:16] in str(info.value) and "--trust-code" in str(info.value)
    model = build_model(f"{path}:Net", trust_code=True)  # the caller names the file themselves
    assert marker.exists() and model.fc.weight.shape == (2, 4)


@pytest.mark.parametrize("command", ["export", "apply", "verify"])
@pytest.mark.parametrize("side", ["target", "source"])
def test_a_mapping_naming_code_runs_nothing(capsys, tmp_path, evil, source_pth, command, side):
    path, marker = evil
    spec = f"{path}:Net"
    sent = _mapping(tmp_path, spec if side == "source" else source_pth, spec if side == "target" else "torchvision:alexnet")
    good = tmp_path / "good.py"  # a runnable source the user names, so verify gets as far as the target
    good.write_text(EVIL.format(marker=str(tmp_path / "GOOD")))
    verify_source = ["--source", f"{good}:Net"] if side == "target" else []
    argv = {"export": ["export", sent], "apply": ["apply", sent, "-o", str(tmp_path / "w.safetensors")],
            "verify": ["verify", sent, *verify_source, "--input-shape", "1,4"]}[command]
    code = main(argv)
    err = capsys.readouterr().err
    assert not marker.exists(), f"{command} ran code named by the mapping's {side}"
    if command != "export":  # export only prints: it notes the side it could not read and goes on
        assert code == 2 and "--trust-code" in err and str(path) in err
    assert not (tmp_path / "w.safetensors").exists()


def test_trust_code_flag_runs_it_and_names_the_file(capsys, tmp_path, evil, source_pth):
    path, marker = evil
    sent = _mapping(tmp_path, source_pth, f"{path}:Net")
    code = main(["apply", sent, "-o", str(tmp_path / "w.safetensors"), "--trust-code"])
    err = capsys.readouterr().err
    assert code == 0 and marker.exists()
    assert f"running model code from {path}" in err


def test_a_spec_typed_on_the_command_line_is_the_users(capsys, tmp_path, evil, source_pth):
    path, marker = evil
    sent = _mapping(tmp_path, source_pth, "torchvision:alexnet")
    code = main(["apply", sent, "--target", f"{path}:Net", "-o", str(tmp_path / "w.safetensors")])
    assert code == 0 and marker.exists(), capsys.readouterr().err


def test_trust_is_for_the_bytes_the_user_saw(tmp_path, evil):
    path, marker = evil
    trust_file(path)
    assert is_trusted(path)
    path.write_text(path.read_text() + "\n# changed after it was trusted\n")
    assert not is_trusted(path)
    with pytest.raises(UntrustedCodeError):
        build_model(f"{path}:Net")
    assert not marker.exists()


def test_any_python_file_is_refused_stdlib_included(capsys):
    import sysconfig
    from pathlib import Path

    zen = Path(sysconfig.get_paths()["stdlib"]) / "this.py"  # prints the Zen of Python when imported
    assert zen.is_file()
    with pytest.raises(UntrustedCodeError):
        build_model(f"{zen}:Net")
    assert "Beautiful is better" not in capsys.readouterr().out


def test_a_run_config_naming_code_runs_nothing(capsys, tmp_path, evil, source_pth):
    from spp_gui.training.config import RunConfig
    from spp_gui.training.demo_data import write_split

    path, marker = evil
    classes = ("circle", "square")
    write_split(tmp_path / "train", classes, 2, 32, seed=0, cluttered=False)
    write_split(tmp_path / "val", classes, 2, 32, seed=1, cluttered=False)
    for how in ("spec", "mapping"):
        cfg = RunConfig()
        cfg.data.train, cfg.data.val, cfg.data.image_size = str(tmp_path / "train"), str(tmp_path / "val"), 32
        cfg.run.out, cfg.run.epochs = str(tmp_path / "runs"), 1
        if how == "spec":
            cfg.model.spec = f"{path}:Net"
        else:
            cfg.model.mapping = _mapping(tmp_path, f"{path}:Net", "torchvision:alexnet")
        cfg.save(tmp_path / "run.toml")
        code = main(["train", str(tmp_path / "run.toml")])
        err = capsys.readouterr().err
        assert not marker.exists(), f"train ran code named by model.{how}"
        assert code == 2 and "--trust-code" in err and str(path) in err, err


def test_mapping_file_data_stays_data(tmp_path, evil):
    """Reading the mapping itself (what the GUI does first) never touches the code it names."""
    path, marker = evil
    sent = _mapping(tmp_path, f"{path}:Net", f"{path}:Net")
    mapping = Mapping.load(sent)
    assert mapping.target_spec == f"{path}:Net" and not marker.exists()
    assert json.loads((tmp_path / "sent.json").read_text())["target"]["spec"] == f"{path}:Net"


@pytest.fixture(autouse=True)
def _clean_trust():
    forget_trust()
    yield
    forget_trust()


def test_two_threads_building_one_trusted_file_both_get_the_class(tmp_path):
    """The GUI loads source and target at once: neither may see the other's half-run module."""
    import threading

    path = tmp_path / "slow.py"
    path.write_text("import time\nimport torch.nn as nn\ntime.sleep(0.3)\n\n"
                    "class Net(nn.Module):\n    def __init__(self, width=2):\n        super().__init__()\n"
                    "        self.fc = nn.Linear(4, width)\n")
    trust_file(path)
    results, errors = [], []

    def build(width):
        try:
            results.append(build_model(f"{path}:Net?width={width}", device="meta").fc.out_features)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=build, args=(w,)) for w in (2, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(results) == [2, 4]


def test_a_file_that_exits_is_an_error_and_not_cached(tmp_path):
    from spp_gui.core.errors import SpecError

    path = tmp_path / "quits.py"
    path.write_text("raise SystemExit(3)\n")
    trust_file(path)
    for _ in range(2):  # the second attempt imports again instead of finding a broken module
        with pytest.raises(SpecError, match="SystemExit"):
            build_model(f"{path}:Net")


def test_trust_code_file_pins_the_bytes(capsys, tmp_path, evil, source_pth):
    """What the editor hands the torchrun processes it starts: this file, with this digest, only."""
    path, marker = evil
    sent = _mapping(tmp_path, source_pth, f"{path}:Net")
    wrong = "0" * 64
    assert main(["apply", sent, "-o", str(tmp_path / "w.safetensors"), "--trust-code-file", f"{path}={wrong}"]) == 2
    assert not marker.exists() and "--trust-code" in capsys.readouterr().err
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert main(["apply", sent, "-o", str(tmp_path / "w.safetensors"), "--trust-code-file", f"{path}={digest}"]) == 0
    assert marker.exists()
