from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spp_gui import Entry, Mapping, apply_mapping, build_model, suggest_mapping
from spp_gui.core.errors import Cancelled, MappingError
from spp_gui.core.mapping import ADAPTED, EXACT, INVALID, RENAMED, UNMAPPED
from spp_gui.core.tensors import TensorInfo


def _table(**shapes):
    return {k: TensorInfo(k, s, "float32") for k, s in shapes.items()}


def test_round_trip_is_lossless_and_diffable(tmp_path):
    mapping = Mapping("a.pth", "spp_gui:alexnet_spp?num_classes=20", "ab" * 32)
    mapping.set(Entry("features.0.weight", "features.0.weight", None, "auto:exact", 1.0))
    mapping.set(Entry("head.w", "fc.w", {"op": "slice"}, "manual", None, "picked by hand"))
    path = tmp_path / "m.json"
    mapping.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == "spp-gui-mapping" and data["version"] == 1
    assert data["source"] == {"spec": "a.pth", "sha256": "ab" * 32}
    assert data["entries"][0] == {"target": "features.0.weight", "source": "features.0.weight",
                                  "transform": None, "origin": "auto:exact", "confidence": 1.0}
    assert path.read_text().count("\n") > 10  # one field a line: diffs stay readable
    assert Mapping.load(path) == mapping


def test_status_per_key():
    source = _table(a=(2, 3), b=(4,), c=(5,), unused=(1,))
    target = _table(a=(2, 3), x=(4,), y=(9,), z=(7,), w=(5,))
    mapping = Mapping.from_pairs({"a": "a", "x": "b", "y": "c"})
    status = mapping.status(source, target)
    assert status.target == {"a": EXACT, "x": RENAMED, "y": INVALID, "z": UNMAPPED, "w": UNMAPPED}
    assert "'c' (5) -> 'y' (9)" in status.problems["y"]
    assert status.unused_sources == ["unused"]
    with pytest.raises(MappingError, match=r"'c' \(5\) -> 'y' \(9\)"):
        mapping.validate(source, target)


def test_validation_names_missing_keys():
    source, target = _table(a=(1,)), _table(a=(1,))
    with pytest.raises(MappingError, match="source has no key 'ghost'"):
        Mapping.from_pairs({"a": "ghost"}).validate(source, target)
    with pytest.raises(MappingError, match="target has no key 'nowhere'"):
        Mapping.from_pairs({"nowhere": "a"}).validate(source, target)


def test_adapted_status_needs_a_fitting_transform():
    from spp_gui.core.transforms import TRANSFORMS

    source, target = _table(a=(4,)), _table(a=(4,))
    mapping = Mapping(entries={"a": Entry("a", "a", {"op": "no-such-op"})})
    assert mapping.status(source, target).target["a"] == INVALID
    if "slice" in TRANSFORMS:
        ok = Mapping(entries={"a": Entry("a", "a", {"op": "slice"})})
        assert ok.status(source, target).target["a"] == ADAPTED


@pytest.mark.parametrize("text,match", [
    ("not json", "not valid JSON"),
    ('{"format": "other"}', "not an spp-gui mapping"),
    ('{"format": "spp-gui-mapping", "version": 99, "entries": []}', "newer than this spp_gui"),
    ('{"format": "spp-gui-mapping", "version": 1, "entries": [{"target": 1}]}', "string 'target' and 'source'"),
    ('{"format": "spp-gui-mapping", "version": 1, "entries": [{"target": "a", "source": "b", "confidence": 7}]}',
     "confidence must be"),
    ('{"format": "spp-gui-mapping", "version": 1, "entries": [{"target": "a", "source": "b"}, '
     '{"target": "a", "source": "c"}]}', "listed twice"),
])
def test_bad_mapping_files(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(MappingError, match=match):
        Mapping.load(path)


def test_missing_mapping_file(tmp_path):
    with pytest.raises(MappingError, match="mapping file not found"):
        Mapping.load(tmp_path / "nope.json")


def test_sha256_mismatch_warns(tmp_path, small_state):
    path = tmp_path / "src.pth"
    torch.save(small_state, path)
    mapping = suggest_mapping(path, "torchvision:squeezenet1_0", strategy="exact")
    model = build_model("torchvision:squeezenet1_0")
    assert apply_mapping(model, path, mapping).warnings == []
    changed = dict(small_state)
    changed["features.0.bias"] = changed["features.0.bias"] + 1
    torch.save(changed, path)
    report = apply_mapping(model, path, mapping)
    assert len(report.warnings) == 1 and "differs from the file the mapping was made from" in report.warnings[0]
    assert torch.equal(model.features[0].bias, changed["features.0.bias"])


def test_apply_refuses_a_bad_mapping_before_touching_the_model(small_state):
    model = build_model("torchvision:squeezenet1_0", seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mapping = Mapping.from_pairs({"features.0.weight": "features.0.weight", "classifier.1.weight": "features.0.weight"})
    with pytest.raises(MappingError, match="classifier.1.weight"):
        apply_mapping(model, small_state, mapping)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_apply_progress_and_cancel(small_state):
    model = build_model("torchvision:squeezenet1_0")
    mapping = Mapping.from_pairs({k: k for k in small_state})
    seen = []
    apply_mapping(model, small_state, mapping, progress=lambda d, t, k: seen.append(d))
    assert seen[0] == 0 and seen[-1] == len(small_state)
    calls = iter(range(10**6))
    with pytest.raises(Cancelled, match="stopped after 5 of"):
        apply_mapping(model, small_state, mapping, cancelled=lambda: next(calls) >= 5)


def test_apply_to_meta_model_is_refused(small_state):
    model = build_model("torchvision:squeezenet1_0", device="meta")
    with pytest.raises(MappingError, match="meta device"):
        apply_mapping(model, small_state, Mapping.from_pairs({"features.0.bias": "features.0.bias"}))


def test_a_refused_lossy_cast_leaves_the_model_untouched(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    model[1].num_batches_tracked.fill_(7)  # int64: a float source would be cast lossily
    source = {k: torch.randn(v.shape) if v.is_floating_point() else torch.tensor(2.5) for k, v in model.state_dict().items()}
    path = tmp_path / "float_counts.pth"
    torch.save(source, path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mapping = Mapping.from_pairs({k: k for k in source})  # the int entry comes last: all others before it
    assert list(mapping.entries)[-1] == "1.num_batches_tracked"
    with pytest.raises(MappingError, match=r"'1.num_batches_tracked' is int64: refusing a lossy cast"):
        apply_mapping(model, path, mapping)
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v) and after[k].dtype == v.dtype, k


def test_a_file_source_is_stored_relative_to_the_mapping_and_found_from_anywhere(tmp_path, monkeypatch):
    """`map` in one folder, `apply` from another: the source is found beside the mapping file."""
    from spp_gui.cli import main

    project = tmp_path / "project"
    (project / "weights").mkdir(parents=True)
    torch.save({"classifier.6.bias": torch.randn(1000)}, project / "weights" / "src.pth")
    (project / "maps").mkdir()
    monkeypatch.chdir(project)
    mapping = Mapping("weights/src.pth", "torchvision:alexnet")
    mapping.save(project / "maps" / "m.json")
    raw = json.loads((project / "maps" / "m.json").read_text())
    assert raw["source"]["spec"] == "../weights/src.pth"
    assert raw["source"]["path"] == str((project / "weights" / "src.pth").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = Mapping.load(project / "maps" / "m.json")
    assert Path(loaded.source_spec) == (project / "weights" / "src.pth").resolve()
    # the pair moves together: copied to a new place, the relative path still finds the source
    moved = tmp_path / "moved"
    (moved / "maps").mkdir(parents=True)
    (moved / "weights").mkdir()
    (moved / "weights" / "src.pth").write_bytes((project / "weights" / "src.pth").read_bytes())
    (moved / "maps" / "m.json").write_text((project / "maps" / "m.json").read_text())
    assert Path(Mapping.load(moved / "maps" / "m.json").source_spec) == (moved / "weights" / "src.pth").resolve()
    monkeypatch.chdir(project)
    good = Mapping("weights/src.pth", "torchvision:alexnet")
    good.set(Entry("classifier.6.bias", "classifier.6.bias"))
    good.save(project / "maps" / "apply.json")
    monkeypatch.chdir(elsewhere)
    assert main(["apply", str(project / "maps" / "apply.json"), "-o", str(elsewhere / "w.safetensors")]) == 0


def test_a_chosen_weight_container_moves_with_the_mapping(tmp_path, monkeypatch):
    """`ckpt.pth#state_dict` (one of several containers) is stored relative too, the key kept."""
    from spp_gui.core.sources import load_source

    project = tmp_path / "project"
    (project / "maps").mkdir(parents=True)
    ckpt = project / "ckpt.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 3)},
                "state_dict_ema": {"fc.weight": torch.ones(2, 3)}}, ckpt)
    Mapping(f"{ckpt}#state_dict", "torchvision:alexnet").save(project / "maps" / "m.json")
    raw = json.loads((project / "maps" / "m.json").read_text())
    assert raw["source"]["spec"] == "../ckpt.pth#state_dict"
    assert raw["source"]["path"] == str(ckpt.resolve())
    moved = tmp_path / "moved"
    (moved / "maps").mkdir(parents=True)
    (moved / "ckpt.pth").write_bytes(ckpt.read_bytes())
    (moved / "maps" / "m.json").write_text((project / "maps" / "m.json").read_text())
    ckpt.unlink()  # only the moved copy exists now: the relative path must find it
    monkeypatch.chdir(tmp_path)
    spec = Mapping.load(moved / "maps" / "m.json").source_spec
    assert spec == f"{(moved / 'ckpt.pth').resolve()}#state_dict"
    with load_source(spec) as src:  # the plain weights, not the EMA ones timm would prefer
        assert torch.equal(src.read("fc.weight"), torch.zeros(2, 3))


def test_one_summary_counts_what_the_status_says():
    source = {"a.weight": TensorInfo("a.weight", (4, 3), "float32"), "b.weight": TensorInfo("b.weight", (2, 2), "float32"),
              "spare": TensorInfo("spare", (7,), "float32")}
    target = {"a.weight": TensorInfo("a.weight", (4, 3), "float32"), "c.weight": TensorInfo("c.weight", (2, 2), "float32"),
              "d.weight": TensorInfo("d.weight", (5,), "float32"), "e.weight": TensorInfo("e.weight", (9,), "float32")}
    mapping = Mapping("src", "tgt")
    mapping.set(Entry("a.weight", "a.weight"))
    mapping.set(Entry("c.weight", "b.weight"))
    mapping.set(Entry("d.weight", "spare"))  # 7 elements into 5: invalid
    summary = mapping.summary(source, target)
    assert summary.counts == {EXACT: 1, RENAMED: 1, ADAPTED: 0, INVALID: 1, UNMAPPED: 1}
    assert (summary.mapped, summary.targets, summary.invalid, summary.unused) == (2, 4, 1, 0)
    assert summary.share == pytest.approx((12 + 4) / (12 + 4 + 5 + 9))
    assert summary.text() == ("2 of 4 target tensors mapped (1 exact, 1 renamed, 0 adapted, 1 invalid); "
                              "53.3% of target parameters from the source; 0 source tensors unused")
    assert json.loads(json.dumps(summary.counts)) == {"exact": 1, "renamed": 1, "adapted": 0, "invalid": 1, "unmapped": 1}
    assert mapping.status(source, target).target["d.weight"] == "invalid"  # a Status is its plain word
