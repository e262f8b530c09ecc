"""One training loop for every model in the course, on one device or many.

    result = fit(model, loss_fn, sampler, cfg.train, out_dir="runs/ncsn-toy", kind="ncsn", config=cfg)

- ``loss_fn(model, batch) -> loss`` or ``(loss, {"name": tensor, ...})``, a mean over the batch; it may draw noise
  from the global torch RNG.
- ``sampler(generator, n) -> batch`` of ``n`` examples: a batch depends only on the state of ``generator`` (random
  indices or offsets). `TensorSampler` serves in-memory tensors, `DistributionSampler` a distribution.

**The random stream.** A step's global batch of ``cfg.batch_size`` examples is split into micro-batches
(``cfg.micro_batches``, by default one per process). Before micro-batch ``k`` of step ``s`` the loop seeds a fresh data
generator and the global torch RNG from ``(cfg.seed, s, k)`` alone (`stream_seed`). So the numbers a micro-batch sees
do not depend on which process computes it, or on what ran before: a resumed run repeats the uninterrupted one
exactly without saving any RNG state, and the same config gives the same weights on 1 process with gradient
accumulation or on N processes (to float summation order).

**Many processes.** Under ``torchrun`` (the ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` variables it sets) the loop joins
the process group (NCCL on CUDA, gloo on CPU), wraps the model in ``DistributedDataParallel``, runs
``micro_batches / world_size`` micro-batches per process per step (gradients synchronised on the last), and lets
rank 0 alone write checkpoints, metrics and the progress bar. Every rank reads the same checkpoint on resume.

The loop also does: AdamW with linear warm-up, global-norm gradient clipping, an EMA of the weights, bf16 autocast
(on CUDA by default, anywhere with ``bf16=true``; weights, optimiser state and checkpoints stay float32), optional
channels-last memory format and ``torch.compile``, metrics as JSON lines, atomic checkpoints, and a
`NonFiniteLossError` that names the first step whose loss was NaN or inf (checked at each log and checkpoint, so
the loop never waits on the device at every step and never saves a checkpoint after the loss went bad).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .checkpoint import load_state_into, load_training_state, save_training_state
from .config import TrainConfig, config_to_dict
from .errors import CheckpointError, ConfigError, NonFiniteLossError

__all__ = ["fit", "FitResult", "EMA", "TensorSampler", "DistributionSampler", "read_metrics", "stream_seed",
           "Distributed"]

CKPT_NAME = "ckpt.pt"
METRICS_NAME = "metrics.jsonl"


class TensorSampler:
    """Batches of rows drawn uniformly (with replacement) from in-memory tensors, indexed by a generator."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorSampler needs one or more tensors with the same first dimension")
        self.tensors = tensors

    def __call__(self, generator: torch.Generator, n: int):
        idx = torch.randint(len(self.tensors[0]), (n,), generator=generator)
        batch = tuple(t[idx] for t in self.tensors)
        return batch[0] if len(batch) == 1 else batch


class DistributionSampler:
    """Fresh batches from a distribution with ``sample(n, generator=...)`` (the 2-D toys), every step."""

    def __init__(self, dist) -> None:
        self.dist = dist

    def __call__(self, generator: torch.Generator, n: int) -> torch.Tensor:
        return self.dist.sample(n, generator=generator)


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers: θ̄ ← d·θ̄ + (1-d)·θ, starting
    from the initial weights. With ``warmup``, update n (0-based) uses d_n = min(d, (1 + n) / (10 + n)), so the
    initial weights fade within the first few updates instead of after ~1/(1-d) of them."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False) -> None:
        self.decay, self.warmup = decay, warmup
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def decay_at(self, n: int) -> float:
        """The decay of update ``n`` (0-based: the update after the first optimiser step is n = 0)."""
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, n: int = 0) -> None:
        current = model.state_dict()
        floats = [k for k, v in self.state.items() if v.is_floating_point()]
        torch._foreach_lerp_([self.state[k] for k in floats], [current[k].detach() for k in floats],
                             1.0 - self.decay_at(n))
        for k, v in self.state.items():
            if not v.is_floating_point():
                v.copy_(current[k])

    def copy_to(self, model: nn.Module) -> nn.Module:
        model.load_state_dict(self.state)
        return model


def stream_seed(seed: int, step: int, micro_batch: int, stream: str) -> int:
    """The seed of ``stream`` ("data" or "noise") for micro-batch ``micro_batch`` of step ``step`` (0-based): a hash
    of the four, so that streams of neighbouring steps or seeds are unrelated."""
    digest = hashlib.blake2b(f"{seed}:{step}:{micro_batch}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # a non-negative 63-bit integer


@dataclass
class Distributed:
    """The process group a run belongs to: ``world_size`` processes, this one being ``rank`` (1 and 0 alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> "Distributed":
        """Join the process group that ``torchrun`` describes in the environment (a no-op for one process)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(),
                   local_rank=int(os.environ.get("LOCAL_RANK", "0")))

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of ``t`` over the processes (``t`` itself for one process)."""
        if not self.enabled:
            return t
        import torch.distributed as dist

        t = t.clone()
        dist.all_reduce(t)
        return t / self.world_size

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` is set in any process (so that every process stops at the same step)."""
        if not self.enabled:
            return flag
        return bool(self.mean(torch.tensor([float(flag)], device=device)) > 0)

    def shard(self, n: int) -> range:
        """This process's share of ``n`` items for an evaluation: a contiguous range, the shares in rank order."""
        return range(n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size)

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """The concatenation (along dim 0, in rank order) of every process's ``t`` (shapes may differ in dim 0),
        on the CPU; ``t`` itself for one process."""
        if not self.enabled:
            return t.cpu()
        import torch.distributed as dist

        parts = [None] * self.world_size
        dist.all_gather_object(parts, t.cpu())
        return torch.cat(parts)


def _ddp(model: nn.Module, dist: Distributed, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` that still answers attribute lookups of the wrapped model (a loss may
    read ``model.time_conditioning``)."""
    from torch.nn.parallel import DistributedDataParallel

    class _DDP(DistributedDataParallel):
        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.module, name)

    ids = [device.index if device.index is not None else dist.local_rank] if device.type == "cuda" else None
    return _DDP(model, device_ids=ids)


@dataclass
class FitResult:
    model: nn.Module               #: the trained model (raw weights)
    ema_model: nn.Module           #: a copy with the EMA weights (the raw weights when EMA is off)
    step: int                      #: steps completed
    metrics: dict[str, float]      #: the last logged metrics
    out_dir: Path | None


def _to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device, channels_last) for k, v in batch.items()}
    return batch


def micro_batch_layout(cfg: TrainConfig, world_size: int) -> tuple[int, int]:
    """(micro-batches per process per step, examples per micro-batch) for a global batch of ``cfg.batch_size``."""
    total = cfg.micro_batches or world_size
    if total % world_size:
        raise ConfigError(f"train.micro_batches={total} cannot be shared by {world_size} processes: use a multiple "
                          f"of {world_size}")
    if cfg.batch_size % total:
        raise ConfigError(f"train.batch_size={cfg.batch_size} does not split into {total} equal micro-batches")
    return total // world_size, cfg.batch_size // total


def fit(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]],
    sampler: Callable[[torch.Generator, int], Any],
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    kind: str = "model",
    config: Any = None,
    device: torch.device | str | None = None,
    resume: bool = False,
    stop_after: int | None = None,
) -> FitResult:
    """Train ``model`` for ``cfg.steps`` optimiser steps; see the module docstring for the contracts.

    ``out_dir``: where ``ckpt.pt``, ``metrics.jsonl`` and ``config.json`` go (None: keep nothing on disk).
    ``resume``: continue from ``out_dir/ckpt.pt``; without it an existing checkpoint is an error, never overwritten.
    ``stop_after``: stop (with a checkpoint) once this step is done, as an interruption would.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dist = Distributed.from_env(device)
    per_rank, micro_size = micro_batch_layout(cfg, dist.world_size)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / CKPT_NAME if out else None
    full_config = config_to_dict(config) if config is not None else config_to_dict(cfg)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    ema = EMA(model, cfg.ema_decay, cfg.ema_warmup) if cfg.ema_decay is not None else None
    step = 0

    if ckpt_path is not None and ckpt_path.exists():
        if not resume:
            raise CheckpointError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out")
        state = load_training_state(ckpt_path, kind=kind)
        load_state_into(model, state["model"], source=str(ckpt_path))
        opt.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.state = {k: v.to(device) for k, v in state["ema"].items()}
        step = int(state["step"])
        if dist.is_main:
            _truncate_metrics(out / METRICS_NAME, step)
    else:
        if resume and ckpt_path is not None:
            raise CheckpointError(f"--resume given but there is no checkpoint at {ckpt_path}")
        if out is not None and dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps({"kind": kind, "config": full_config}, indent=2) + "\n")

    train_model = _ddp(model, dist, device) if dist.enabled else model
    forward_model = torch.compile(train_model) if cfg.compile else train_model
    use_bf16 = cfg.bf16 if cfg.bf16 is not None else device.type == "cuda"

    def save() -> None:
        if ckpt_path is None or not dist.is_main:
            return
        save_training_state(ckpt_path, {
            "model": model.state_dict(),
            "ema": ema.state if ema is not None else model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "meta": {"kind": kind, "config": full_config},
        })

    pending: list[tuple[int, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]] = []
    metrics: dict[str, float] = {}
    t_last, step_last = time.perf_counter(), step

    def flush() -> None:
        """Average the pending losses over the processes, check them for NaN/inf (one device sync), log them."""
        nonlocal metrics, t_last, step_last
        if not pending:
            return
        keys = list(pending[0][3])
        rows = torch.stack([torch.stack([p[1].float(), p[2].float(), *[p[3][k].float() for k in keys]])
                            for p in pending])  # (n_pending, 2 + n_extra)
        rows = dist.mean(rows).cpu()
        losses = rows[:, 0]
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            i = int(bad[0])
            last = f"; the last good checkpoint is {ckpt_path}" if ckpt_path and ckpt_path.exists() else ""
            raise NonFiniteLossError(f"loss became {losses[i].item()} at step {pending[i][0]}{last}")
        now = time.perf_counter()
        metrics = {"step": step, "loss": losses.mean().item(), "grad_norm": rows[:, 1].mean().item(),
                   "lr": opt.param_groups[0]["lr"], "steps_per_s": (step - step_last) / max(now - t_last, 1e-9)}
        metrics.update({k: rows[:, 2 + j].mean().item() for j, k in enumerate(keys)})
        t_last, step_last = now, step
        pending.clear()
        if out is not None and dist.is_main:
            with open(out / METRICS_NAME, "a") as fh:
                fh.write(json.dumps(metrics) + "\n")

    # Ctrl-C (or a notebook's interrupt) finishes the current step, saves, then raises KeyboardInterrupt.
    interrupted = []
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        old_handler = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))

    bar = None
    if cfg.progress and step < cfg.steps and dist.is_main:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, initial=step, desc=kind, dynamic_ncols=True, leave=False)
    model.train()
    try:
        while step < cfg.steps:
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) if cfg.warmup > 0 else cfg.lr
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss_sum, extra_sum = 0.0, {}
            for a in range(per_rank):
                k = dist.rank * per_rank + a  # the micro-batch's index within the step, the same on any layout
                data_gen = torch.Generator().manual_seed(stream_seed(cfg.seed, step, k, "data"))
                torch.manual_seed(stream_seed(cfg.seed, step, k, "noise"))
                batch = _to_device(sampler(data_gen, micro_size), device, cfg.channels_last)
                sync = a == per_rank - 1 or not dist.enabled
                with contextlib.nullcontext() if sync else train_model.no_sync():
                    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                        out_ = loss_fn(forward_model, batch)
                    loss, extra = out_ if isinstance(out_, tuple) else (out_, {})
                    (loss / per_rank).backward()
                loss_sum = loss_sum + loss.detach() / per_rank
                for key, v in extra.items():
                    extra_sum[key] = extra_sum.get(key, 0.0) + v.detach() / per_rank
            max_norm = cfg.grad_clip if cfg.grad_clip is not None else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            opt.step()
            if ema is not None:
                ema.update(model, step)  # step: the number of updates before this one (exact on resume)
            step += 1
            pending.append((step, loss_sum, grad_norm.detach(), extra_sum))
            done = step == cfg.steps or step == stop_after
            at_log = step % cfg.log_every == 0 or step % cfg.ckpt_every == 0 or done
            if at_log:
                flush()
                if bar is not None:
                    bar.update(step - bar.n)
                    bar.set_postfix(loss=f"{metrics['loss']:.4g}")
            if step % cfg.ckpt_every == 0 or done:
                save()
            if step == stop_after:
                break
            if interrupted and not dist.enabled:
                raise KeyboardInterrupt
            # one process alone may have seen Ctrl-C: agree on it, at log steps only (to keep the device async)
            if dist.enabled and at_log and dist.any(bool(interrupted), device):
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        # Raised at a step boundary (SIGINT) or from inside a step before its update; either way `step` counts the
        # finished steps, and the next step's random numbers depend on its index alone.
        flush()
        save()
        if dist.is_main:
            print(f"\ninterrupted after step {step}; continue with --resume ({ckpt_path})")
        raise
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
        if bar is not None:
            bar.close()
    if not metrics and out is not None:  # resumed a run that had already finished: report its last logged line
        logged = read_metrics(out)
        metrics = logged[-1] if logged else {}
    model.eval()
    if cfg.channels_last:
        model.to(memory_format=torch.contiguous_format)
    ema_model = copy.deepcopy(model)
    if ema is not None:
        ema.copy_to(ema_model)
    return FitResult(model=model, ema_model=ema_model, step=step, metrics=metrics, out_dir=out)


def read_metrics(out_dir: str | Path) -> list[dict[str, float]]:
    """The metrics lines of a run folder."""
    path = Path(out_dir) / METRICS_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop lines logged after the checkpoint's step (they will be logged again)."""
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in keep))
