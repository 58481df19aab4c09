"""Issue 13 at the command line: what a file holds never reaches the terminal raw, and every input or
output the user cannot use is one line on stderr with exit status 2, before any work is done."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import sys
from pathlib import Path

import pytest
import torch
from faultgen import CLEAR, OSC_TITLE  # tests/ is on sys.path (conftest)
from faultgen import NET_PY as NET  # Src: modules named with terminal escapes; Dst: the same, plain

from spp_gui.cli import main
from spp_gui.cli.common import os_error_message, printable
from spp_gui.core import atomic


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *says):
    assert code == 2, err
    assert err.startswith("spp-gui: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for text in says:
        assert text in err, (text, err)


def assert_no_control_characters(text):
    bad = sorted({c for c in text if not c.isprintable() and c != "\n"})
    assert not bad, (bad, text)


@pytest.fixture
def hostile(tmp_path):
    """A checkpoint whose tensor names carry terminal escapes, the model files that read it, and a mapping."""
    net = tmp_path / "net.py"
    net.write_text(NET)
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib

        module = importlib.import_module("net")
        torch.manual_seed(0)
        state = module.Src().state_dict()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("net", None)
    assert any(OSC_TITLE in k for k in state) and any(CLEAR in k for k in state)
    ckpt = tmp_path / "sent.pth"
    torch.save(state, ckpt)
    return tmp_path, net, ckpt


def test_tensor_names_with_escapes_are_shown_escaped_everywhere(capsys, hostile):
    tmp, net, ckpt = hostile
    mapping = tmp / "m.json"
    outputs = []

    def command(*argv, expect=0):
        code, out, err = run(capsys, *argv)
        assert code == expect, (argv, out, err)
        assert "Traceback" not in err
        assert_no_control_characters(out + err)
        outputs.append(out + err)
        return out, err

    out, _ = command("inspect", ckpt)
    assert r"\x1b]0;pwned\x07fc (" not in out  # a module line: the name, escaped, then its class
    assert r"\x1b]0;pwned\x07fc" in out and r"\x1b[2Jhead" in out and "total: 4 tensors" in out
    out, _ = command("map", ckpt, f"{net}:Dst", "--rename", r"^.*?(fc|head)\.=\1.", "-o", mapping)
    assert r"<- \x1b]0;pwned\x07fc.weight" in out and r"<- \x1b[2Jhead.bias" in out
    out, _ = command("apply", mapping, "--target", f"{net}:Dst", "-o", tmp / "w.safetensors")
    assert "4 of 4 target tensors loaded" in out
    out, _ = command("verify", mapping, "--source-model", f"{net}:Src", "--target", f"{net}:Dst",
                     "--input-shape", "2,4")
    assert r"<- \x1b]0;pwned\x07fc" in out and "2 layers agree" in out
    out, _ = command("export", mapping)
    assert r"\x1b]0;pwned\x07fc.weight" in out  # in the snippet as a Python escape
    torch.save({"other": torch.ones(1)}, tmp / "other.pth")
    _, err = command("apply", mapping, "--source", tmp / "other.pth", "--target", f"{net}:Dst",
                     "-o", tmp / "w2.safetensors", expect=2)
    assert err.startswith("spp-gui: error: ") and err.count("\n") == 1
    _, err = command("inspect", tmp / f"missing{CLEAR}.pth", expect=2)
    assert r"missing\x1b[2J.pth" in err
    assert all(OSC_TITLE not in text and CLEAR not in text for text in outputs)


def test_printable_keeps_normal_text_and_escapes_controls():
    assert printable("features.0.weight — Gewichte, 重み") == "features.0.weight — Gewichte, 重み"
    assert printable("a\x1b[2Jb\nc\td\u202ee\x00") == r"a\x1b[2Jb\nc\td\u202ee\x00"


# -- item 9: specs, paths and outputs that cannot work, each one line --------------------------------


@pytest.mark.parametrize(("argv", "says"), [
    (["inspect", "spp_gui:alexnet_spp?num_classes=-5"], ["num_classes=-5", "from 1 to 1,000,000"]),
    (["inspect", "torchvision:resnet18?num_classes=-5"], ["num_classes=-5", "from 1 to 1,000,000"]),
    (["inspect", "torchvision:resnet18?num_classes=0"], ["num_classes=0"]),
    (["inspect", "torchvision:resnet18?num_classes=2.5"], ["num_classes=2.5"]),
    (["inspect", "spp_gui:alexnet_spp?num_classes=1e400"], ["num_classes=inf", "finite"]),
    (["inspect", "spp_gui:alexnet_spp?levels=1,nan"], ["levels=(1, nan)", "finite"]),
    (["inspect", "torchvision:resnet18?groups=0"], ["cannot build 'torchvision:resnet18?groups=0'"]),
    (["inspect", "torchvision:resnet18?norm_layer=x"], ["cannot build"]),
    (["inspect", "x" * 300 + ".pth"], ["304 bytes", "at most 255"]),
    (["inspect", "spp_gui:alexnet_spp?" + "a" * 300 + "=1"], ["at most 255"]),
    (["inspect", "d/" * 2100 + "x.pth"], ["at most 4,096"]),
    (["map", "torchvision:alexnet", "torchvision:alexnet", "-o", "y" * 256 + ".json"], ["-o", "at most 255"]),
    (["apply", "z" * 300 + ".json", "-o", "w.safetensors"], ["mapping", "at most 255"]),
    (["verify", "z" * 300 + ".json"], ["mapping", "at most 255"]),
    (["export", "z" * 300 + ".json"], ["mapping", "at most 255"]),
])
def test_inputs_that_cannot_work_are_one_line(capsys, tmp_path, monkeypatch, argv, says):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, *says)


@pytest.fixture
def small_mapping(tmp_path, capsys):
    net = tmp_path / "net.py"
    net.write_text(NET)
    torch.save({"fc.weight": torch.randn(2, 4), "fc.bias": torch.randn(2)}, tmp_path / "s.pth")
    assert main(["map", str(tmp_path / "s.pth"), f"{net}:Dst", "-o", str(tmp_path / "m.json")]) == 0
    capsys.readouterr()
    return tmp_path / "m.json", f"{net}:Dst"


def _commands(mapping, spec, out):
    return {"map": ["map", mapping.parent / "s.pth", spec, "-o", out],
            "apply": ["apply", mapping, "--target", spec, "-o", out]}


@pytest.mark.parametrize("command", ["map", "apply"])
@pytest.mark.parametrize("kind", ["folder", "under a file", "device", "fifo"])
def test_unwritable_outputs_are_refused_before_any_work(capsys, tmp_path, small_mapping, command, kind):
    mapping, spec = small_mapping
    suffix = ".json" if command == "map" else ".safetensors"
    if kind == "folder":
        out, says = tmp_path / f"folder{suffix}", "is a folder"
        out.mkdir()
    elif kind == "under a file":
        out, says = mapping / f"w{suffix}", f"{mapping} is a file, not a folder"
    elif kind == "device":
        out, says = Path("/dev/full"), "is not a regular file"
    else:
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        out, says = tmp_path / f"pipe{suffix}", "is not a regular file"
        os.mkfifo(out)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, stdout, err = run(capsys, *_commands(mapping, spec, out)[command])
    assert_one_line_error(code, err, f"-o {out}", says)
    assert stdout == ""  # refused before the source was read or the model built
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if kind == "device":
        assert Path("/dev/full").is_char_device()  # never replaced by a regular file


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_before_any_work(capsys, tmp_path, small_mapping):
    mapping, spec = small_mapping
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, _, err = run(capsys, "apply", mapping, "--target", spec, "-o", folder / "w.safetensors")
    finally:
        folder.chmod(0o755)
    assert_one_line_error(code, err, "is not writable")


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs, where nobody may create files")
def test_a_folder_the_kernel_refuses_is_one_line(capsys, small_mapping):
    mapping, spec = small_mapping
    code, _, err = run(capsys, "apply", mapping, "--target", spec, "-o", "/sys/kernel/spp-gui-w.safetensors")
    assert_one_line_error(code, err, "/sys/kernel/")
    assert ".tmp" not in err  # the file asked for is named, not its temporary


@contextlib.contextmanager
def file_size_limit(limit: int):
    """Writes past ``limit`` bytes fail with EFBIG, as a full disk fails them with ENOSPC."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".json"])
@pytest.mark.parametrize("how", ["file size limit", "ENOSPC at fsync"])
def test_a_full_disk_is_one_line_and_keeps_the_old_file(capsys, tmp_path, small_mapping, monkeypatch, suffix, how):
    mapping, spec = small_mapping
    out = tmp_path / f"out{suffix}"
    argv = _commands(mapping, spec, out)["map" if suffix == ".json" else "apply"]
    assert main([str(a) for a in argv]) == 0
    capsys.readouterr()
    old = out.read_bytes()
    if how == "file size limit":
        with file_size_limit(64):
            code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, str(out), "File too large")
    else:
        def full(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(atomic.os, "fsync", full)
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, f"writing {out}: No space left on device", "free some space")
    assert out.read_bytes() == old
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_os_error_message_names_the_file_not_its_temporary():
    exc = OSError(errno.ENOSPC, "No space left on device", "/data/run/.w.safetensors.1234.0a1b2c3d.tmp")
    assert os_error_message(exc) == "/data/run/w.safetensors: No space left on device; free some space or write elsewhere"
    assert re.search(r"\\x1b", os_error_message(OSError(errno.EACCES, "Permission denied", "a\x1bb")))
