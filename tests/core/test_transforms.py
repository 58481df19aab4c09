"""Transforms: each op checked against shapes and applied exactly, on small real tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
import torchvision

from spp_gui.core.apply import apply_mapping
from spp_gui.core.mapping import Entry, Mapping
from spp_gui.core.strategies import suggest
from spp_gui.core.transforms import apply_transform, carried_numel, check_transform
from spp_gui.models.spp import AlexNet_SPP, SpatialPyramidPooling

LEVELS = [1, 4, 9, 36]


def test_spp_grid_places_each_channels_grid_in_its_level():
    torch.manual_seed(0)
    c, out = 256, 32
    f64 = {"dtype": torch.float64}  # summation order differs between the two; keep rounding out of it
    w_src = torch.randn(out, c * 36, **f64)  # AlexNet's first Linear: reads flatten(C, 6, 6)
    bias = torch.randn(out, **f64)
    w_tgt = torch.randn(out, c * 50, **f64)  # AlexNet_SPP's: reads flatten(C, 1+4+9+36)
    transform = {"op": "spp_grid", "levels": LEVELS, "bins": 36}
    assert check_transform(transform, tuple(w_src.shape), tuple(w_tgt.shape)) is None
    w_new = apply_transform(transform, w_src, w_tgt)

    grid = torch.randn(1, c, 6, 6, **f64)
    spp = torch.zeros(1, c, 50, **f64)
    spp[:, :, 14:] = grid.reshape(1, c, 36)  # the 6x6 level; the others zero
    torch.testing.assert_close(F.linear(spp.flatten(1), w_new, bias), F.linear(grid.flatten(1), w_src, bias))
    # the other levels' columns keep the target's initialisation
    cols = w_new.view(out, c, 50)[:, :, :14]
    assert torch.equal(cols, w_tgt.view(out, c, 50)[:, :, :14])


def test_spp_grid_layout_is_the_models():
    # The layout assumed above is the one SpatialPyramidPooling produces.
    torch.manual_seed(1)
    x = torch.randn(2, 8, 6, 6)
    y = SpatialPyramidPooling(LEVELS)(x)
    assert torch.equal(y[:, :, 14:], x.reshape(2, 8, 36))


def test_spp_grid_refuses_what_does_not_fit():
    t = {"op": "spp_grid", "levels": LEVELS, "bins": 36}
    assert "channels" in check_transform(t, (10, 256 * 36), (10, 256 * 49))
    assert "one of the levels" in check_transform({**t, "bins": 16}, (10, 256 * 16), (10, 256 * 50))
    assert "levels" in check_transform({"op": "spp_grid", "bins": 36}, (10, 9216), (10, 12800))


def test_alexnet_to_spp_carries_794_percent_with_spp_grid():
    with torch.device("meta"):
        src, tgt = torchvision.models.alexnet(), AlexNet_SPP(num_classes=20)
    s, t = src.state_dict(), tgt.state_dict()
    total = sum(v.numel() for v in t.values())

    def share(strategy: str, **options) -> float:
        mapping = suggest(s, t, strategy, **options).to_mapping()
        return sum(carried_numel(e.transform, tuple(s[e.source].shape), tuple(t[e.target].shape))
                   for e in mapping) / total

    assert round(share("order"), 3) == 0.268
    assert round(share("auto", adapt=True), 3) == 0.794
    assert round(share("auto"), 3) == 0.268  # without --adapt the transform stays a candidate


def test_slice_and_pad_copy_the_overlap_and_keep_the_rest():
    src = torch.arange(12.0).reshape(3, 4)
    tgt = torch.full((2, 6), -1.0)
    assert "use pad" in check_transform({"op": "slice"}, (3, 4), (2, 6))
    assert check_transform({"op": "pad"}, (3, 4), (2, 6)) is None
    out = apply_transform({"op": "pad"}, src, tgt)
    assert torch.equal(out[:, :4], src[:2])
    assert torch.equal(out[:, 4:], tgt[:, 4:])
    out = apply_transform({"op": "slice"}, src, torch.zeros(2, 3))
    assert torch.equal(out, src[:2, :3])
    assert carried_numel({"op": "pad"}, (3, 4), (2, 6)) == 8


def test_select_rows_keeps_shared_classes():
    src = torch.arange(10.0).repeat_interleave(3).reshape(10, 3)
    tgt = torch.full((3, 3), -1.0)
    t = {"op": "select_rows", "rows": [7, None, 2]}
    assert check_transform(t, (10, 3), (3, 3)) is None
    out = apply_transform(t, src, tgt)
    assert out[:, 0].tolist() == [7.0, -1.0, 2.0]
    assert "not an index" in check_transform({"op": "select_rows", "rows": [7, 10, 2]}, (10, 3), (3, 3))
    assert "lists 2 rows" in check_transform({"op": "select_rows", "rows": [1, 2]}, (10, 3), (3, 3))
    bias = apply_transform(t, torch.arange(10.0), torch.zeros(3))
    assert bias.tolist() == [7.0, 0.0, 2.0]


def test_in_channels_sums_to_one_and_repeats_scaled_to_n():
    torch.manual_seed(2)
    w = torch.randn(4, 3, 3, 3)
    gray = torch.randn(1, 1, 8, 8)
    one = apply_transform({"op": "in_channels"}, w, torch.zeros(4, 1, 3, 3))
    # a gray image through the summed kernel == the RGB image with that gray in every channel
    torch.testing.assert_close(F.conv2d(gray, one), F.conv2d(gray.repeat(1, 3, 1, 1), w))
    six = apply_transform({"op": "in_channels"}, w, torch.zeros(4, 6, 3, 3))
    torch.testing.assert_close(six, torch.cat([w, w], 1) * 0.5)
    assert "dim 1" in check_transform({"op": "in_channels"}, (4, 3, 3, 3), (4, 1, 5, 5))


def test_reshape_linear_to_1x1_conv_and_transpose():
    torch.manual_seed(3)
    w = torch.randn(5, 7)
    x = torch.randn(2, 7)
    conv_w = apply_transform({"op": "reshape"}, w, torch.zeros(5, 7, 1, 1))
    torch.testing.assert_close(F.conv2d(x[:, :, None, None], conv_w).flatten(1), x @ w.T)
    assert "element counts" in check_transform({"op": "reshape"}, (5, 7), (5, 8))
    conv1d = w.T.contiguous()  # GPT-2 Conv1D stores (in, out)
    assert torch.equal(apply_transform({"op": "transpose", "dims": [1, 0]}, conv1d, torch.zeros(5, 7)), w)
    assert "permuting" in check_transform({"op": "transpose", "dims": [1, 0]}, (5, 7), (5, 7))


def test_unknown_op_is_a_clear_problem():
    assert "unknown transform 'rotate'" in check_transform({"op": "rotate"}, (2,), (2,))


def test_apply_mapping_runs_transforms_tensor_by_tensor():
    torch.manual_seed(4)
    source = {"conv.weight": torch.randn(4, 3, 3, 3), "fc.weight": torch.randn(10, 8), "fc.bias": torch.randn(10)}
    target = {"conv.weight": torch.zeros(4, 1, 3, 3), "head.weight": torch.zeros(3, 8), "head.bias": torch.zeros(3)}
    mapping = Mapping()
    mapping.set(Entry("conv.weight", "conv.weight", {"op": "in_channels"}))
    mapping.set(Entry("head.weight", "fc.weight", {"op": "select_rows", "rows": [9, 0, None]}))
    mapping.set(Entry("head.bias", "fc.bias", {"op": "select_rows", "rows": [9, 0, None]}))
    report = apply_mapping(target, source, mapping)
    assert report.counts()["adapted"] == 3
    assert torch.equal(target["conv.weight"], source["conv.weight"].sum(1, keepdim=True))
    assert torch.equal(target["head.weight"][:2], source["fc.weight"][[9, 0]])
    assert torch.equal(target["head.bias"][2], torch.tensor(0.0))


def test_a_transform_that_does_not_fit_fails_validation_naming_key_and_shapes():
    mapping = Mapping()
    mapping.set(Entry("w", "w", {"op": "reshape"}))
    from spp_gui.core.errors import MappingError

    with pytest.raises(MappingError, match=r"'w' \(2, 3\) -> 'w' \(7\).*element counts"):
        apply_mapping({"w": torch.zeros(7)}, {"w": torch.ones(2, 3)}, mapping)


@pytest.mark.parametrize("transform, match", [
    ({"op": "select_rows"}, "needs 'rows'"),
    ({"op": "select_rows", "rows": [0, True]}, "row True"),
    ({"op": "select_rows", "rows": [0, -1]}, "row -1"),
    ({"op": "spp_grid", "levels": [1, 4]}, "'bins'"),
    ({"op": "spp_grid", "levels": [True, 4], "bins": True}, "needs 'levels'"),
    ({"op": "spp_grid", "levels": [1, 4], "bins": 4.0}, "'bins'"),
    ({"op": "transpose", "dims": [True, False]}, "'dims' must be"),
    ({"op": "transpose", "dims": [0, 0]}, "'dims' must be"),
    ({"op": "transpose", "dims": "10"}, "'dims' must be"),
    ({"op": "slice", "rows": [1]}, "takes no parameter 'rows'"),
    ({"op": "reshape", "shape": [1]}, "takes no parameter 'shape'"),
    ({"op": 3}, "unknown transform 3"),
    ({"rows": []}, "'op' field"),
])
def test_params_are_checked_without_shapes(transform, match):
    from spp_gui.core.transforms import check_params

    why = check_params(transform)
    assert why is not None and match in why, why
    assert match in check_transform(transform, (3, 3), (3, 3))  # the shape check says the same


def test_well_formed_params_pass():
    from spp_gui.core.transforms import check_params

    for t in ({"op": "slice"}, {"op": "pad"}, {"op": "in_channels"}, {"op": "reshape"}, {"op": "transpose"},
              {"op": "transpose", "dims": [2, 0, 1]}, {"op": "select_rows", "rows": [3, None]},
              {"op": "spp_grid", "levels": LEVELS, "bins": 36}):
        assert check_params(t) is None, t


def test_in_channels_from_zero_channels_is_refused():
    assert "0 input channels" in check_transform({"op": "in_channels"}, (4, 0, 3, 3), (4, 3, 3, 3))
    mapping = Mapping()
    mapping.set(Entry("w", "w", {"op": "in_channels"}))
    from spp_gui.core.errors import MappingError

    target = {"w": torch.full((4, 3, 3, 3), 7.0)}
    with pytest.raises(MappingError, match="0 input channels"):
        apply_mapping(target, {"w": torch.zeros(4, 0, 3, 3)}, mapping)
    assert torch.equal(target["w"], torch.full((4, 3, 3, 3), 7.0))
