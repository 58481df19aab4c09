from __future__ import annotations

import pytest
import torch
import torchvision

from spp_gui.models import AlexNet_SPP, SpatialPyramidPooling


@pytest.mark.parametrize("levels", [(1, 4, 16), (1,), (1, 4, 9, 36)])
def test_spp_output_shape(levels):
    spp = SpatialPyramidPooling(levels)
    out = spp(torch.randn(2, 8, 13, 13))
    assert out.shape == (2, 8, sum(levels))


def test_spp_smaller_input_than_finest_level():
    out = SpatialPyramidPooling((1, 4, 36), "avg")(torch.randn(1, 3, 2, 2))
    assert out.shape == (1, 3, 41)
    assert torch.isfinite(out).all()


def test_spp_levels_are_per_level_pools():
    x = torch.randn(1, 2, 6, 6)
    out = SpatialPyramidPooling((1, 36), "max")(x)
    assert torch.equal(out[:, :, 0], x.amax(dim=(2, 3)))
    assert torch.equal(out[:, :, 1:], x.reshape(1, 2, 36))


@pytest.mark.parametrize("bad", [2, 3, 0, -4, 15])
def test_spp_rejects_non_square_levels(bad):
    with pytest.raises(ValueError, match=f"perfect square, got {bad}"):
        SpatialPyramidPooling((1, bad))


def test_spp_rejects_unknown_mode():
    with pytest.raises(ValueError, match="'median'"):
        SpatialPyramidPooling(mode="median")


def test_spp_pools_live_in_a_module_list():
    spp = SpatialPyramidPooling((1, 4))
    assert isinstance(spp.pools, torch.nn.ModuleList) and len(spp.pools) == 2


def test_alexnet_spp_keys_match_torchvision_alexnet():
    ours = AlexNet_SPP(20).state_dict()
    theirs = torchvision.models.alexnet().state_dict()
    assert list(ours) == list(theirs)
    different = {k for k in ours if ours[k].shape != theirs[k].shape}
    assert different == {"classifier.1.weight", "classifier.6.weight", "classifier.6.bias"}
    assert ours["classifier.1.weight"].shape == (4096, 256 * 50)


@pytest.mark.parametrize("size", [(227, 227), (300, 200), (96, 96)])
def test_alexnet_spp_forward_any_size(size):
    model = AlexNet_SPP(20, width=0.25).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, *size)).shape == (2, 20)


def test_every_torchvision_regnet_builds_on_meta():
    # RegNet's builders compute block widths with torch ops and read them back (.tolist()): meta has no data
    from spp_gui.core.specs import build_model

    names = [n for n in torchvision.models.list_models() if n.startswith("regnet_")]
    assert len(names) >= 10
    for name in names:
        model = build_model(f"torchvision:{name}?num_classes=7", device="meta")
        assert {t.device.type for t in model.state_dict().values()} == {"meta"}, name
        assert model.fc.out_features == 7


@pytest.mark.parametrize("name", ["regnet_y_400mf", "regnet_x_400mf"])
def test_regnet_on_meta_has_the_cpu_builds_keys_and_shapes_and_cpu_builds_are_unchanged(name):
    from spp_gui.core.specs import build_model

    meta = build_model(f"torchvision:{name}", device="meta").state_dict()
    torch.manual_seed(5)
    direct = torchvision.models.get_model(name, weights=None).state_dict()
    ours = build_model(f"torchvision:{name}", seed=5).state_dict()
    assert [(k, v.shape) for k, v in meta.items()] == [(k, v.shape) for k, v in direct.items()]
    assert list(ours) == list(direct) and all(torch.equal(ours[k], direct[k]) for k in direct)
