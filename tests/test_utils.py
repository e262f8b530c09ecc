import pytest
import torch

from dlcourse.errors import ConfigError
from dlcourse.utils import get_device, seed_all, unsqueeze_as


def test_device_choice_order(monkeypatch):
    monkeypatch.delenv("DLCOURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert get_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cuda")


def test_device_env_override(monkeypatch):
    monkeypatch.setenv("DLCOURSE_DEVICE", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("DLCOURSE_DEVICE", "cuda")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        get_device()
    monkeypatch.setenv("DLCOURSE_DEVICE", "tpu9")
    with pytest.raises(ConfigError, match="unknown device"):
        get_device()


def test_seed_all_reproducible():
    seed_all(3)
    a = torch.randn(4)
    seed_all(3)
    assert torch.equal(a, torch.randn(4))


def test_unsqueeze_as():
    t = torch.arange(3.0)
    assert unsqueeze_as(t, torch.zeros(3, 2)).shape == (3, 1)
    assert unsqueeze_as(t, torch.zeros(3, 1, 4, 4)).shape == (3, 1, 1, 1)
    with pytest.raises(ValueError):
        unsqueeze_as(torch.zeros(3, 2, 2), torch.zeros(3, 2))
