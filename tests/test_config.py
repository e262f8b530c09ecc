from dataclasses import dataclass, field

import pytest

from dlcourse.config import Presets, TrainConfig, apply_overrides, config_from_dict, config_to_dict
from dlcourse.errors import ConfigError


@dataclass
class NetConfig:
    channels: int = 32
    mults: tuple[int, ...] = (1, 2)
    dropout: float | None = None


@dataclass
class RunConfig:
    data: str = "toy"
    net: NetConfig = field(default_factory=NetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


PRESETS = Presets("demo", toy=RunConfig(), gpu=RunConfig(net=NetConfig(channels=128), train=TrainConfig(steps=10**5)))


def test_presets_are_copies_and_unknown_is_one_line():
    cfg = PRESETS.get("toy")
    cfg.net.channels = 1
    assert PRESETS.get("toy").net.channels == 32
    with pytest.raises(ConfigError, match="unknown preset 'huge' for demo; choose one of: toy, gpu"):
        PRESETS.get("huge")


def test_overrides_are_typed():
    cfg = apply_overrides(PRESETS.get("toy"), ["train.steps=50", "net.mults=[1,2,4]", "net.dropout=0.1",
                                               "train.grad_clip=none", "train.bf16=false", "data=digits"])
    assert cfg.train.steps == 50 and cfg.net.mults == (1, 2, 4) and cfg.net.dropout == 0.1
    assert cfg.train.grad_clip is None and cfg.train.bf16 is False and cfg.data == "digits"


@pytest.mark.parametrize("bad, msg", [
    ("train.stepz=3", "unknown config field"),
    ("train.steps=abc", "expects an integer"),
    ("train.steps", "key=value"),
    ("train.bf16=3", "true or false"),
    ("train.lr=-1", "lr > 0"),
])
def test_bad_overrides(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        apply_overrides(PRESETS.get("toy"), [bad])


def test_dict_round_trip():
    cfg = PRESETS.get("gpu")
    assert config_from_dict(RunConfig, config_to_dict(cfg)) == cfg
