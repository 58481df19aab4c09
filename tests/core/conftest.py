from __future__ import annotations

import pytest
import torch
import torchvision


@pytest.fixture(scope="session")
def alexnet_state():
    torch.manual_seed(0)
    return torchvision.models.alexnet().state_dict()


@pytest.fixture
def alexnet_pth(tmp_path, alexnet_state):
    path = tmp_path / "alexnet.pth"
    torch.save(alexnet_state, path)
    return path


@pytest.fixture(scope="session")
def small_state():
    """A small real torchvision model (squeezenet: 52 tensors, 1.2M parameters)."""
    torch.manual_seed(0)
    return torchvision.models.squeezenet1_0().state_dict()


@pytest.fixture
def small_pth(tmp_path, small_state):
    path = tmp_path / "small.pth"
    torch.save(small_state, path)
    return path
