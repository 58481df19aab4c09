"""Damaged and malicious inputs: always a clean SourceError, never code execution; and a fast subset of
benchmarks/faults.py's classes through the CLI (exit 2 and one line, or exactly the right weights)."""

from __future__ import annotations

import random

import pytest
import torch
from faultgen import (
    base_files,
    bit_flips,
    code_mapping,
    crafted_safetensors,
    evil_module,
    hf_cache_snapshot,
    hostile_indexes,
    malformed_mappings,
    malicious,
    pickle_bombs,
    rezipped,
    strict_safetensors,
    tiny_net,
    truncations,
    zip_damage,
)
from safetensors.torch import load_file

from spp_gui import load_source, suggest_mapping
from spp_gui.cli import main
from spp_gui.core.errors import SourceError, UnsafePickleError


def _open_and_read_all(path):
    with load_source(path) as src:
        for key in src.tensors:
            src.read(key)


def test_crafted_and_zip_damage_cases(tmp_path):
    files = base_files(tmp_path)
    cases = [*crafted_safetensors(), *zip_damage(files["pth"])]
    assert len(cases) == 11
    for i, (name, blob) in enumerate(cases):
        path = tmp_path / f"case{i}{'.safetensors' if name.startswith('safetensors') else '.pth'}"
        path.write_bytes(blob)
        with pytest.raises(SourceError):
            _open_and_read_all(path)


def test_random_truncations_are_clean_errors(tmp_path):
    files = base_files(tmp_path)
    rng = random.Random(1)
    for kind, path in files.items():
        for i, (_name, blob) in enumerate(truncations(path, 15, rng)):
            cut = tmp_path / f"cut{i}.{kind}"
            cut.write_bytes(blob)
            with pytest.raises(SourceError):
                _open_and_read_all(cut)


def test_random_bit_flips_in_pth_never_pass_silently(tmp_path):
    files = base_files(tmp_path)
    rng = random.Random(2)
    with load_source(files["pth"]) as original:
        expected = {k: original.read(k) for k in original.tensors}
    for i, (name, blob) in enumerate(bit_flips(files["pth"], 25, rng)):
        path = tmp_path / f"flip{i}.pth"
        path.write_bytes(blob)
        try:
            with load_source(path) as src:
                got = {k: src.read(k) for k in src.tensors}
        except SourceError:
            continue
        # a flip that lands in zip padding or unused metadata may load: then the data must be intact
        assert set(got) == set(expected), name
        assert all((got[k] == expected[k]).all() for k in got), name


def test_malicious_pickles_never_run(tmp_path):
    marker = tmp_path / "PWNED"
    cases = list(malicious(tmp_path / "evil", marker))
    assert len(cases) == 9
    for name, path in cases:
        with pytest.raises(UnsafePickleError):
            load_source(path)
        assert not marker.exists(), name


# -- a fast subset of benchmarks/faults.py's classes, through the CLI as a user runs it ----------------


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and not any(c in out + err for c in "\x1b\x07"), err
    return code, out, err


def _refused(code, err):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("spp-gui: error: ") and sum(line.startswith("spp-gui: error:") for line in lines) == 1


@pytest.fixture
def bench(tmp_path):
    """base_files, net.py (their Base model) and a mapping of one onto the other, as the benchmark sets up."""
    from spp_gui.core.trust import trust_file

    files = base_files(tmp_path / "base")
    net = tiny_net(tmp_path / "net")
    trust_file(net)
    suggest_mapping(files["pth"], f"{net}:Base").save(tmp_path / "base_map.json")
    return files, net, tmp_path / "base_map.json"


def _bytes(t):
    return t.contiguous().reshape(-1).view(torch.uint8)


def test_rezipped_checkpoints_apply_exactly_as_torch_load_reads_them(capsys, tmp_path, bench):
    files, net, mapping = bench
    for name, path, readable in rezipped(files["pth"], tmp_path / "rezip"):
        if name.startswith("views"):
            continue  # keys of their own: the benchmark maps them into a model made for them
        out = tmp_path / f"{path.stem}.safetensors"
        code, _, err = _cli(capsys, "apply", mapping, "--source", path, "--target", f"{net}:Base", "-o", out)
        if not readable:
            _refused(code, err)
            assert not out.exists(), name
            continue
        assert code == 0, (name, err)
        expected, got = torch.load(path, weights_only=True), load_file(out)
        assert set(got) == set(expected) and all(torch.equal(_bytes(got[k]), _bytes(v)) for k, v in expected.items())


def test_pickle_bombs_headers_indexes_and_malformed_mappings_are_one_line(capsys, tmp_path, bench):
    files, net, mapping = bench
    inputs = [path for name, path in pickle_bombs(tmp_path / "bombs") if "tensor" not in name]  # read on open
    for i, (_name, blob) in enumerate(strict_safetensors()):
        (tmp_path / f"h{i}.safetensors").write_bytes(blob)
        inputs.append(tmp_path / f"h{i}.safetensors")
    inputs += [path for _, path in hostile_indexes(tmp_path / "indexes")]
    assert len(inputs) == 18
    for path in inputs:
        _refused(*_cli(capsys, "inspect", path)[::2])
    bad = list(malformed_mappings(tmp_path / "mappings"))
    assert len(bad) == 15
    for _name, path in bad:
        code, _, err = _cli(capsys, "apply", path, "--source", files["pth"], "--target", f"{net}:Base",
                            "-o", tmp_path / "w.safetensors")
        _refused(code, err)
        assert str(path) in err
    assert not (tmp_path / "w.safetensors").exists()


@pytest.mark.parametrize("side", ["source", "target"])
def test_code_named_by_a_sent_mapping_never_runs(capsys, tmp_path, side):
    marker = tmp_path / "CODE_RAN"
    evil = evil_module(tmp_path / "evil", marker)
    mapping = code_mapping(tmp_path, f"{evil}:Net", side, "sent.json", "torchvision:alexnet")
    for argv in (["apply", mapping, "-o", tmp_path / "w.safetensors"], ["verify", mapping]):
        code, _, err = _cli(capsys, *argv)
        _refused(code, err)
        assert "--trust-code" in err
    assert _cli(capsys, "export", mapping)[0] == 0  # the snippet needs no model: a note, no import
    assert not marker.exists()


def test_hub_cache_snapshot_applies_the_original_weights(capsys, tmp_path, bench):
    files, net, mapping = bench
    state = torch.load(files["pth"], weights_only=True)
    snapshot = hf_cache_snapshot(tmp_path / "hub", state)
    code, _, err = _cli(capsys, "apply", mapping, "--source", snapshot, "--target", f"{net}:Base",
                        "-o", tmp_path / "w.safetensors")
    assert code == 0, err
    got = load_file(tmp_path / "w.safetensors")
    assert all(torch.equal(got[k], v) for k, v in state.items())
