"""Device choice, seeding, thread pinning and the one broadcasting helper the package uses.

Only entry points (the CLI, a notebook's first cell) pick a device; library code follows the data
(ARCHITECTURE.md, style rule 3).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from .errors import ConfigError

__all__ = ["get_device", "seed_all", "pin_threads", "setup_notebook", "unsqueeze_as", "count_parameters", "is_main_process",
           "log"]

_DEVICE_ENV = "DLCOURSE_DEVICE"


def get_device(prefer: str | None = None) -> torch.device:
    """The device to run on: ``prefer``, else ``$DLCOURSE_DEVICE``, else cuda, then mps, then cpu.

    An explicit request for a device this machine lacks is an error rather than a silent fall-back, so a
    researcher who asked for ``cuda`` never trains on the CPU by accident. Under ``torchrun`` (``LOCAL_RANK`` set)
    a plain ``cuda`` means this process's own GPU, ``cuda:LOCAL_RANK``.
    """
    name = prefer or os.environ.get(_DEVICE_ENV, "").strip() or None
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None and (name is None or name == "cuda") and torch.cuda.is_available():
        return get_device(f"cuda:{int(local_rank)}")
    if name is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r} (from {_DEVICE_ENV} or --device): use cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {name!r} requested but MPS is not available on this machine")
    return device


def seed_all(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pin_threads(n: int = 1) -> None:
    """Use ``n`` intra-op threads so that floating-point reductions, and so notebook outputs, are reproducible."""
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:
        pass  # can only be set before the first parallel op; the intra-op count is what matters for results


def setup_notebook(seed: int = 0, threads: int = 1) -> torch.device:
    """The first cell of every lecture: pin threads, seed everything, pick the device and print it."""
    pin_threads(threads)
    seed_all(seed)
    device = get_device()
    print(f"dlcourse: device={device.type}, torch {torch.__version__}, seed={seed}")
    return device


def unsqueeze_as(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """View ``t`` of shape (B,) or (B, k...) with trailing singleton dims so it broadcasts against ``x``.

    One helper for toys (B, 2), images (B, C, H, W) and token sequences (B, L): never ``t[:, None, None, None]``.
    """
    if t.dim() > x.dim():
        raise ValueError(f"cannot broadcast a tensor of shape {tuple(t.shape)} against {tuple(x.shape)}")
    return t.reshape(*t.shape, *([1] * (x.dim() - t.dim())))


def is_main_process() -> bool:
    """Whether this is rank 0 of a ``torchrun`` job (or a run of one process): the one that prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


def log(message: str) -> None:
    """Print ``message`` from rank 0 only."""
    if is_main_process():
        print(message, flush=True)


def count_parameters(module: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
