"""The model families that ``dlcourse train|sample|eval FAMILY`` know, and the `Family` protocol they fill in.

A family module (``dlcourse/score/family.py``, ...) defines ``FAMILY = SomeFamily()`` (a module may define several,
under other names) with only what is its own:

===================  ==================================================================================
``config``           the root config dataclass (typed fields, a ``#:`` docstring each)
``presets``          `dlcourse.config.Presets` of plain values, the first one the default
``aliases``          CLI flags that are thin aliases of ``--set``: ``{"data": "data"}`` makes ``--data X``
                     exactly ``--set data=X``
``build_model(cfg)`` the untrained network
``train_data(cfg)``  ``sampler(generator, n) -> batch`` (see `dlcourse.train`)
``loss(cfg)``        ``loss_fn(model, batch) -> loss | (loss, metrics)``
``describe(cfg, m)`` the (what, data) lines of a manifest entry
``sample(...)``      optional: samples of a trained model as a `SampleOutput`, with ``add_sample_args``
``evaluate(...)``    optional: metrics of a trained model, with ``add_eval_args``
===================  ==================================================================================

and optionally ``prepare(cfg, sampler)`` (fill in config fields that depend on the training data, such as NCSN's
noise ladder) and ``after_training(cfg, model)`` (held-out metrics). Everything else is written once, here and in
`dlcourse.cli`: training through `dlcourse.train.fit` (`Family.train`), loading a shipped name, an export, a run
folder or a ``ckpt.pt`` (`Family.load`, and `load` for any kind), export and manifest recording, writing samples
(`write_samples`: one image-grid writer, one scatter plot, text), and the command-line arguments.

**Why the reinforcement-learning families train outside `fit`.** ``bc`` does train through it (a batch of
demonstration pairs, one optimiser step). ``expert`` (PPO) and ``gail`` override `Family.train`: one of their
iterations steps a live simulator whose state is not a function of a seed and a step (so `fit`'s exact resume and
per-micro-batch seeding cannot hold), then takes several epochs of minibatch updates with a learning rate annealed
over environment steps, and GAIL alternates two models with two optimisers (policy and discriminator). They keep
their own loop in `dlcourse.rl.ppo` / `dlcourse.rl.gail`, do not resume, and take about a minute on a CPU.

The table `FAMILIES` names each family's module without importing it, so ``dlcourse --help`` stays fast; only the
family a command names is imported.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import CheckpointError, ConfigError

__all__ = ["Family", "RunOptions", "SampleOutput", "FAMILIES", "family", "families", "load", "export_trained",
           "check_output", "write_samples"]

# name -> ("module:ATTRIBUTE" of its Family, one line of help, the commands it offers). Adding a family: one line.
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ncsn": ("dlcourse.score.family:FAMILY", "noise-conditional score network + annealed Langevin (Song & Ermon 2019, 2020)",
             ("train", "sample", "eval")),
    "sde": ("dlcourse.sde.family:FAMILY", "score SDEs: VE / VP / sub-VP, predictor-corrector, probability flow "
            "(Song et al. 2021)", ("train", "sample", "eval")),
    "mdlm": ("dlcourse.discrete.family:MDLM", "masked diffusion language model, continuous-time NELBO (Sahoo et al. 2024)",
             ("train", "sample", "eval")),
    "sedd": ("dlcourse.discrete.family:SEDD", "score entropy discrete diffusion, absorbing or uniform (Lou, Meng & "
             "Ermon 2024)", ("train", "sample", "eval")),
    "ar": ("dlcourse.discrete.family:AR", "autoregressive character transformer with a KV cache (the baseline)",
           ("train", "sample", "eval")),
    "bd3": ("dlcourse.discrete.family:BD3", "block diffusion: autoregressive over blocks, masked diffusion within "
            "(Arriola et al. 2025)", ("train", "sample", "eval")),
    "classifier": ("dlcourse.quality.family:FAMILY", "the image classifier behind the Fréchet distance and classifier "
                   "score of the 28x28 models", ("train", "eval")),
    "expert": ("dlcourse.rl.family:EXPERT", "an RL expert by PPO + GAE, and its demonstrations (for bc and gail)",
               ("train", "eval")),
    "bc": ("dlcourse.rl.family:BC", "behavioural cloning from expert demonstrations (the GAIL baseline)",
           ("train", "eval")),
    "gail": ("dlcourse.rl.family:GAIL", "generative adversarial imitation learning (Ho & Ermon 2016) with PPO",
             ("train", "eval")),
}


@dataclass
class RunOptions:
    out_dir: Path              #: run folder (checkpoint, metrics, config)
    resume: bool               #: continue the run in out_dir
    device: Any                #: torch.device chosen by the entry point
    export: Path | None        #: also write the EMA weights as .safetensors here
    force: bool = False        #: allow overwriting the export path
    command: str = ""          #: the exact command line, recorded in exported metadata
    export_dtype: str = "float32"  #: "bfloat16" stores float32 weights in half the bytes (loaded back as float32)


@dataclass
class SampleOutput:
    """What ``Family.sample`` returns: ``data`` is images (N, C, H, W) in [0, 1], points (N, 2), or a list of
    strings; ``nfe`` the network evaluations per sample; ``note`` says how they were drawn (for the log line)."""

    data: Any
    nfe: int
    note: str = ""
    extra: dict = field(default_factory=dict)


class Family:
    """The protocol a model family fills in; see the module docstring. Subclass it, set the class attributes and
    override the methods that are the family's own; the rest is generic."""

    name: str = ""
    kind: str = ""                       #: the ``kind`` in checkpoint headers (default: the name)
    config: type = object
    presets: Any = None
    aliases: dict[str, str] = {}         #: CLI flag -> config field path
    default_checkpoint: str | None = None  #: what ``sample``/``eval`` use without --checkpoint (None: required)
    sample_suffixes: tuple[str, ...] = (".png", ".pt")  #: what ``dlcourse sample --out`` may write
    sample_n: int = 64                   #: default ``--n``

    def __init__(self) -> None:
        self.kind = self.kind or self.name
        self.help = FAMILIES[self.name][1]

    # ---- what a family defines ----------------------------------------------------------------------------
    def build_model(self, cfg):
        raise NotImplementedError(f"the {self.name} family defines no build_model")

    def train_data(self, cfg) -> Callable:
        raise NotImplementedError(f"the {self.name} family defines no train_data")

    def loss(self, cfg) -> Callable:
        raise NotImplementedError(f"the {self.name} family defines no loss")

    def describe(self, cfg, model) -> tuple[str, str]:
        """(what, data) lines of a manifest entry."""
        return f"{self.name} model", "see its config"

    def prepare(self, cfg, sampler):
        """Fill in config fields that depend on the training data (before the model is built)."""
        return cfg

    def after_training(self, cfg, model) -> dict[str, float]:
        """Held-out metrics of the trained (EMA) model, recorded with an export."""
        return {}

    def add_sample_args(self, p: argparse.ArgumentParser) -> None:
        """Flags of ``dlcourse sample FAMILY`` beyond the generic ones (--checkpoint, --n, --seed, --out...)."""

    def sample(self, model, cfg, n: int, generator, args: argparse.Namespace) -> SampleOutput:
        raise NotImplementedError(f"the {self.name} family cannot sample")

    def add_eval_args(self, p: argparse.ArgumentParser) -> None:
        """Flags of ``dlcourse eval FAMILY`` beyond --checkpoint, --device and --record."""

    def evaluate(self, model, cfg, args: argparse.Namespace) -> dict[str, Any]:
        raise NotImplementedError(f"the {self.name} family has no evaluation")

    def report(self, metrics: dict[str, Any]) -> str:
        """The line ``dlcourse eval`` prints."""
        return f"{self.name}: " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in metrics.items())

    # ---- generic ----------------------------------------------------------------------------------------------
    def train(self, cfg, run: RunOptions):
        """``dlcourse train FAMILY``: data, model and loss through the shared loop, held-out metrics, export."""
        from .train import fit
        from .utils import count_parameters, is_main_process, log, seed_all

        seed_all(cfg.train.seed)
        sampler = self.train_data(cfg)
        cfg = self.prepare(cfg, sampler)
        seed_all(cfg.train.seed)
        model = self.build_model(cfg)
        log(f"{self.name}: {count_parameters(model) / 1e6:.2f}M parameters; run folder {run.out_dir}")
        result = fit(model, self.loss(cfg), sampler, cfg.train, run.out_dir, kind=self.kind, config=cfg,
                     device=run.device, resume=run.resume)
        metrics = {**result.metrics, **self.after_training(cfg, result.ema_model)}
        log(f"{self.name}: trained {result.step} steps; " +
            ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k not in ("step", "lr", "steps_per_s")))
        if is_main_process():
            export_trained(run, self.kind, cfg, result.ema_model.state_dict(), metrics,
                           lambda: self.describe(cfg, result.ema_model))
        result.metrics = metrics
        return result

    def load(self, name_or_path: str | Path, device=None):
        """A trained model in eval mode and its config, from a shipped name, an exported ``.safetensors`` file, a
        run folder or its ``ckpt.pt`` (whose EMA weights are used)."""
        from .checkpoint import load_model_weights, load_state_into
        from .config import config_from_dict

        state, meta, path = load_model_weights(name_or_path, kind=self.kind)
        cfg = config_from_dict(self.config, meta["config"])
        model = self.build_model(cfg)
        load_state_into(model, state, source=str(path))
        return model.to(device or "cpu").eval(), cfg


def family(name: str) -> Family:
    """The `Family` called ``name`` (imports its module)."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown model family {name!r}; choose one of: {', '.join(FAMILIES)}")
    module, attr = FAMILIES[name][0].split(":")
    return getattr(importlib.import_module(module), attr)


def families() -> dict[str, Family]:
    """Every family (imports every family module)."""
    return {name: family(name) for name in FAMILIES}


def load(name_or_path: str | Path, device=None):
    """``(model, config)`` of any trained model: a shipped name (``"ncsn_digits"``), an exported ``.safetensors``
    file, a run folder or a ``ckpt.pt``; the family is read from the file's ``kind``."""
    from .checkpoint import load_model_weights

    _, meta, path = load_model_weights(name_or_path)
    kind = meta.get("kind")
    for name in FAMILIES:
        fam = family(name)
        if fam.kind == kind:
            return fam.load(path, device)
    raise CheckpointError(f"{path} holds a {kind!r} model, which no family loads")


def export_trained(run: RunOptions, kind: str, cfg: Any, state_dict: dict, metrics: dict,
                   describe: Callable[[], tuple[str, str]]) -> None:
    """``--export``: write the trained (EMA) weights as .safetensors with the kind, config, metrics and command;
    an export into ``dlcourse/checkpoints/`` is also recorded in the manifest, with ``describe() -> (what, data)``."""
    from .checkpoint import export_weights, is_shipped, record_if_shipped
    from .config import config_to_dict

    if run.export is None:
        return
    meta = {"kind": kind, "config": config_to_dict(cfg), "metrics": metrics, "command": run.command,
            "stored_dtype": run.export_dtype}
    export_weights(run.export, state_dict, meta, overwrite=run.force, dtype=run.export_dtype)
    print(f"{kind}: exported EMA weights to {run.export}")
    if is_shipped(run.export):
        what, data = describe()
        record_if_shipped(run.export, what=what, data=data, command=run.command, metrics=metrics)


def check_output(out: Path, force: bool, suffixes: tuple[str, ...] = (".png", ".pt")) -> None:
    """A ``--out`` file for samples: one of ``suffixes``, and never an existing file unless ``force``."""
    if out.suffix not in suffixes:
        raise ConfigError(f"--out must end in {' or '.join(suffixes)}, got {out}")
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; refusing to overwrite it (pass --force or choose another --out)")


def write_samples(samples: SampleOutput, out: Path | None, *, scale: int = 4, title: str = "") -> None:
    """Write samples where ``out`` says: ``.pt`` (the tensor), ``.png`` (an image grid, or a scatter plot of 2-D
    points), ``.txt`` (text, one sample per line); text is also printed."""
    import torch

    data = samples.data
    if isinstance(data, list):  # text
        for text in data:
            print(repr(text))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(data) + "\n")
        return
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".pt":
        torch.save(data.cpu(), out)
    elif data.dim() == 2:
        from .viz.images import save_scatter

        save_scatter(data, out, title=title)
    else:
        from .viz.images import save_image_grid

        save_image_grid(data, out, scale=scale)
