"""One training loop for every model in the course.

    result = fit(model, loss_fn, sampler, cfg.train, out_dir="runs/ncsn-toy", kind="ncsn", config=cfg)

- ``loss_fn(model, batch) -> loss`` or ``(loss, {"name": tensor, ...})``; it draws its noise from the global torch
  RNG, whose state the checkpoint saves, so a resumed run repeats the uninterrupted one exactly.
- ``sampler(generator) -> batch``: a batch depends only on the state of ``generator`` (random indices or offsets),
  so the data stream also resumes exactly without any iterator state. `TensorSampler` serves in-memory tensors.

The loop does: Adam(W) with linear warm-up, global-norm gradient clipping, an EMA of the weights, bf16 autocast on
CUDA, optional ``torch.compile``, a tqdm bar, metrics as JSON lines, atomic checkpoints, exact resume, and a
`NonFiniteLossError` that names the first step whose loss was NaN or inf (checked at each log and checkpoint, so
the loop never waits on the GPU at every step and never saves a checkpoint after the loss went bad).
"""

from __future__ import annotations

import copy
import json
import math
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
from .errors import CheckpointError, NonFiniteLossError

__all__ = ["fit", "FitResult", "EMA", "TensorSampler", "DistributionSampler", "read_metrics"]

CKPT_NAME = "ckpt.pt"
METRICS_NAME = "metrics.jsonl"


class TensorSampler:
    """Batches of rows drawn uniformly (with replacement) from in-memory tensors, indexed by a generator."""

    def __init__(self, *tensors: torch.Tensor, batch_size: int) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorSampler needs one or more tensors with the same first dimension")
        self.tensors = tensors
        self.batch_size = batch_size

    def __call__(self, generator: torch.Generator):
        idx = torch.randint(len(self.tensors[0]), (self.batch_size,), generator=generator)
        batch = tuple(t[idx] for t in self.tensors)
        return batch[0] if len(batch) == 1 else batch


class DistributionSampler:
    """Fresh batches from a distribution with ``sample(n, generator=...)`` (the 2-D toys), every step."""

    def __init__(self, dist, batch_size: int) -> None:
        self.dist, self.batch_size = dist, batch_size

    def __call__(self, generator: torch.Generator) -> torch.Tensor:
        return self.dist.sample(self.batch_size, generator=generator)


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers: θ̄ ← d·θ̄ + (1-d)·θ."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = model.state_dict()
        floats = [k for k, v in self.state.items() if v.is_floating_point()]
        torch._foreach_lerp_([self.state[k] for k in floats], [current[k].detach() for k in floats], 1.0 - self.decay)
        for k, v in self.state.items():
            if not v.is_floating_point():
                v.copy_(current[k])

    def copy_to(self, model: nn.Module) -> nn.Module:
        model.load_state_dict(self.state)
        return model


@dataclass
class FitResult:
    model: nn.Module               #: the trained model (raw weights)
    ema_model: nn.Module           #: a copy with the EMA weights (the raw weights when EMA is off)
    step: int                      #: steps completed
    metrics: dict[str, float]      #: the last logged metrics
    out_dir: Path | None


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _rng_state(data_gen: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "data": data_gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], data_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    data_gen.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]],
    sampler: Callable[[torch.Generator], Any],
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
    model.to(device)
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / CKPT_NAME if out else None
    full_config = config_to_dict(config) if config is not None else config_to_dict(cfg)

    decay = [p for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(decay, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    data_gen = torch.Generator()
    step = 0

    if ckpt_path is not None and ckpt_path.exists():
        if not resume:
            raise CheckpointError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out")
        state = load_training_state(ckpt_path, kind=kind)
        load_state_into(model, state["model"], source=str(ckpt_path))
        opt.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.state = {k: v.to(device) for k, v in state["ema"].items()}
        _set_rng_state(state["rng"], data_gen)
        step = int(state["step"])
        _truncate_metrics(out / METRICS_NAME, step)
    else:
        if resume and ckpt_path is not None:
            raise CheckpointError(f"--resume given but there is no checkpoint at {ckpt_path}")
        torch.manual_seed(cfg.seed)
        data_gen.manual_seed(cfg.seed + 1)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps({"kind": kind, "config": full_config}, indent=2) + "\n")

    forward_model = torch.compile(model) if cfg.compile else model
    use_bf16 = cfg.bf16 and device.type == "cuda"

    def save() -> None:
        if ckpt_path is None:
            return
        save_training_state(ckpt_path, {
            "model": model.state_dict(),
            "ema": ema.state if ema is not None else model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "rng": _rng_state(data_gen),
            "meta": {"kind": kind, "config": full_config},
        })

    pending: list[tuple[int, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]] = []
    metrics: dict[str, float] = {}
    t_last, step_last = time.perf_counter(), step

    def flush() -> None:
        """Check the pending losses for NaN/inf (one device sync) and log their means."""
        nonlocal metrics, t_last, step_last
        if not pending:
            return
        losses = torch.stack([p[1] for p in pending]).float().cpu()
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            i = int(bad[0])
            last = f"; the last good checkpoint is {ckpt_path}" if ckpt_path and ckpt_path.exists() else ""
            raise NonFiniteLossError(f"loss became {losses[i].item()} at step {pending[i][0]}{last}")
        now = time.perf_counter()
        metrics = {"step": step, "loss": losses.mean().item(),
                   "grad_norm": torch.stack([p[2] for p in pending]).float().mean().item(),
                   "lr": opt.param_groups[0]["lr"],
                   "steps_per_s": (step - step_last) / max(now - t_last, 1e-9)}
        for key in pending[0][3]:
            metrics[key] = torch.stack([p[3][key].detach().float() for p in pending]).mean().item()
        t_last, step_last = now, step
        pending.clear()
        if out is not None:
            with open(out / METRICS_NAME, "a") as fh:
                fh.write(json.dumps(metrics) + "\n")

    # Ctrl-C (or a notebook's interrupt) finishes the current step, saves, then raises KeyboardInterrupt.
    interrupted = []
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        old_handler = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    rng_at_step_start = _rng_state(data_gen)

    bar = None
    if cfg.progress and step < cfg.steps:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, initial=step, desc=kind, dynamic_ncols=True, leave=False)
    model.train()
    try:
        while step < cfg.steps:
            rng_at_step_start = _rng_state(data_gen)
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) if cfg.warmup > 0 else cfg.lr
            for group in opt.param_groups:
                group["lr"] = lr
            batch = _to_device(sampler(data_gen), device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out_ = loss_fn(forward_model, batch)
            loss, extra = out_ if isinstance(out_, tuple) else (out_, {})
            opt.zero_grad(set_to_none=True)
            loss.backward()
            max_norm = cfg.grad_clip if cfg.grad_clip is not None else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            opt.step()
            if ema is not None:
                ema.update(model)
            step += 1
            pending.append((step, loss.detach(), grad_norm.detach(), {k: v.detach() for k, v in extra.items()}))
            done = step == cfg.steps or step == stop_after
            if step % cfg.log_every == 0 or step % cfg.ckpt_every == 0 or done:
                flush()
                if bar is not None:
                    bar.update(step - bar.n)
                    bar.set_postfix(loss=f"{metrics['loss']:.4g}")
            if step % cfg.ckpt_every == 0 or done:
                save()
            if step == stop_after:
                break
            if interrupted:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        # Raised at a step boundary (SIGINT) or from inside a step before its update: in the latter case the RNG
        # has moved on, so save the state from the start of the unfinished step.
        if not interrupted:
            _set_rng_state(rng_at_step_start, data_gen)
        flush()
        save()
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
