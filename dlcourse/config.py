"""Typed configs, named presets, ``key=value`` overrides, and registries of named choices.

A model family defines one dataclass for its whole run (network, data, training), with a docstring per field
(as ``#:`` comments), and a `Presets` table of plain values: the same entry point trains the ``toy`` and the
``gpu`` preset. ``dlcourse train FAMILY --preset NAME --set train.steps=500`` goes through `apply_overrides`.

Every config dataclass derives from `Config`: constructing one checks its ``Literal`` fields and then runs its
own ``check()`` (ranges, cross-field rules). A field that picks one of several things (an SDE, a graph, a data set)
is typed ``Literal[...]``, built from the `Registry` of that concept (``SDEName = SDES.literal()``), so registering
a new SDE is what makes ``--set sde=NEW`` valid. `validate` rebuilds a whole tree, so every check runs again after
overrides, the nested ones first and the root's cross-field rules last; presets and overrides always go through it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import ConfigError

__all__ = ["Config", "TrainConfig", "Presets", "Reproduces", "Registry", "apply_overrides", "validate", "config_to_dict",
           "config_from_dict"]

C = TypeVar("C")
T = TypeVar("T")


class Registry(Generic[T]):
    """The named choices of one concept: ``SDES = Registry("SDE")``, ``@SDES.register("vp") class VPSDE``.

    ``get(name)`` is a one-line `ConfigError` listing the choices for an unknown name; ``literal()`` is the
    ``Literal[...]`` type of a config field that names one of them.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None):
        """Register ``item`` under ``name``; without ``item``, a decorator."""
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add if item is None else add(item)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(f"unknown {self.what} {name!r}; choose one of: {', '.join(self._items)}")
        return self._items[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def items(self):
        return self._items.items()

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def literal(self):
        """``Literal["name1", "name2", ...]`` of the names registered so far."""
        return typing.Literal[self.names()]


class Config:
    """Base of the config dataclasses: on construction every ``Literal`` field is checked, then `check` runs."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            if typing.get_origin(hints[f.name]) is typing.Literal:
                _coerce(hints[f.name], getattr(self, f.name), f.name)
        self.check()

    def check(self) -> None:
        """Ranges and cross-field rules of this config (override; raise `ConfigError`)."""


@dataclass
class TrainConfig(Config):
    """Options of the shared training loop (`dlcourse.train.fit`), the same for every model."""

    #: number of optimiser steps in the whole run (a resumed run continues up to this count)
    steps: int = 1000
    #: examples per optimiser step (the global batch, over all processes and micro-batches)
    batch_size: int = 128
    #: split each step's batch into this many micro-batches, shared by the processes (gradient accumulation when
    #: there are more micro-batches than processes); the same value gives the same run on any number of processes.
    #: None: one per process
    micro_batches: int | None = None
    #: peak learning rate of Adam
    lr: float = 2e-4
    #: linear warm-up length in steps (0: none)
    warmup: int = 0
    #: Adam's betas
    betas: tuple[float, float] = (0.9, 0.999)
    #: decoupled weight decay (AdamW); 0 gives plain Adam
    weight_decay: float = 0.0
    #: clip the global gradient norm to this value (None: no clipping)
    grad_clip: float | None = 1.0
    #: decay of the exponential moving average of the weights (None: no EMA)
    ema_decay: float | None = 0.999
    #: use decay min(ema_decay, (1 + n) / (10 + n)) at update n (TensorFlow's ExponentialMovingAverage with
    #: num_updates, which score_sde's EMA uses): without it, a run not much longer than 1 / (1 - ema_decay) steps
    #: keeps ema_decay ** steps of the initial weights in its average (0.999 ** 3000 = 5% of a zero output layer)
    ema_warmup: bool = False
    #: bf16 autocast for the forward pass (weights and checkpoints stay float32); None: on CUDA only
    bf16: bool | None = None
    #: wrap the model in torch.compile
    compile: bool = False
    #: channels-last memory format for image models and batches (faster convolutions on some hardware)
    channels_last: bool = False
    #: write a metrics line (and update the progress bar) every this many steps
    log_every: int = 50
    #: save a resumable checkpoint every this many steps (and always at the end)
    ckpt_every: int = 1000
    #: seed of the torch RNG (noise, timesteps) and of the data generator
    seed: int = 0
    #: show a tqdm progress bar
    progress: bool = True

    def check(self) -> None:
        if self.steps < 0 or self.batch_size <= 0 or self.lr <= 0:
            raise ConfigError(f"steps must be >= 0, batch_size and lr > 0 (got {self.steps}, {self.batch_size}, {self.lr})")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1) or None, got {self.ema_decay}")
        if self.micro_batches is not None and self.micro_batches < 1:
            raise ConfigError(f"micro_batches must be >= 1 or None, got {self.micro_batches}")
        if self.log_every <= 0 or self.ckpt_every <= 0:
            raise ConfigError("log_every and ckpt_every must be positive")


@dataclass(frozen=True)
class Reproduces:
    """What a paper-scale preset reproduces: the paper, its table or section and configuration, the paper's
    parameter count, its number of training steps, and exactly how the preset differs (empty: it does not)."""

    paper: str
    table: str
    params_m: float              #: the paper's network, millions of parameters
    steps: int                   #: the paper's optimiser steps
    ours_m: float | None = None  #: our network's count when it differs from the paper's (then say why in ``differs``)
    differs: str = ""
    reported: str = ""           #: the paper's result this preset aims at (e.g. "3.21 bits/dim")


class Presets(Generic[C]):
    """Named configurations of one model family: ``Presets("ncsn", toy=..., cpu=..., gpu=...)``; ``reproduces``
    names the presets that follow a paper (`Reproduces`), which `tests/test_presets.py` holds to their counts."""

    def __init__(self, family: str, reproduces: dict[str, Reproduces] | None = None, **presets: C) -> None:
        self.family = family
        self._presets = presets
        self.reproduces = dict(reproduces or {})
        if set(self.reproduces) - set(presets):
            raise ValueError(f"reproduces names presets {set(self.reproduces) - set(presets)} that {family} lacks")

    def names(self) -> list[str]:
        return list(self._presets)

    def get(self, name: str) -> C:
        """A fresh, validated copy of preset ``name`` (so a caller can change it); unknown names are a one-line
        error."""
        if name not in self._presets:
            raise ConfigError(f"unknown preset {name!r} for {self.family}; choose one of: {', '.join(self._presets)}")
        return validate(self._presets[name])


def config_to_dict(cfg: Any) -> dict:
    """A JSON-ready dict of a (nested) config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_dict(cls: type[C], data: dict) -> C:
    """Rebuild a (nested) config dataclass from `config_to_dict`'s output; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{cls.__name__} has no field {key!r}")
        kwargs[key] = _coerce(hints[key], value, key)
    return cls(**kwargs)


def validate(cfg: C) -> C:
    """A checked copy of the config tree ``cfg``: every value coerced to its field's type (``Literal`` choices
    included) and every `Config.check` run, the nested ones first and the root's cross-field checks last."""
    return config_from_dict(type(cfg), config_to_dict(cfg))


def apply_overrides(cfg: C, overrides: list[str] | None) -> C:
    """Return a copy of ``cfg`` with ``["train.steps=500", "model.channels=64"]`` applied, values typed by field,
    then `validate`d as a whole (so overrides that only make sense together, such as ``data=toy`` and
    ``model.arch=mlp``, can be given in any order)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        path, raw = item.split("=", 1)
        *parents, leaf = path.strip().split(".")
        target = cfg
        for name in parents:
            if not dataclasses.is_dataclass(target) or not hasattr(target, name):
                raise ConfigError(f"unknown config field {path!r}")
            target = getattr(target, name)
        if not dataclasses.is_dataclass(target) or leaf not in {f.name for f in dataclasses.fields(target)}:
            raise ConfigError(f"unknown config field {path!r}")
        hint = typing.get_type_hints(type(target))[leaf]
        setattr(target, leaf, _coerce(hint, _parse(raw), path))
    return validate(cfg)


def _parse(raw: str) -> Any:
    raw = raw.strip()
    if raw.lower() in ("none", "null"):
        return None
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _coerce(hint: Any, value: Any, name: str) -> Any:
    """Convert ``value`` to the field type ``hint`` (int, float, bool, str, tuples, Optional, nested dataclass)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return config_from_dict(hint, value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"bad value {value!r} for {name}: {'; '.join(errors)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} expects a list such as [1, 2], got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{name} expects {len(args)} values, got {len(value)}")
            return tuple(_coerce(a, v, name) for a, v in zip(args, value))
        item = args[0] if args else Any
        seq = [_coerce(item, v, name) for v in value]
        return tuple(seq) if origin is tuple else seq
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} expects true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{name} expects an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} expects a number, got {value!r}")
        return float(value)
    if hint is str:
        return str(value)
    if typing.get_origin(hint) is typing.Literal:
        if value not in args:
            raise ConfigError(f"{name} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    return value
