"""Model families that ``dlcourse train FAMILY`` and ``dlcourse sample FAMILY`` know.

A family module (e.g. ``dlcourse.score.family``) builds a `Family` and lists its module in `FAMILY_MODULES`; the
CLI then offers ``train``, and ``sample`` and ``eval`` where the family defines them, for it. No family, no subcommand: nothing is offered that does not work.

``train(cfg, run)`` receives the preset with the user's ``--set`` overrides already applied, and a `RunOptions`
(out folder, resume, device, export path); it builds the data and the model and calls `dlcourse.train.fit`.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import Presets

__all__ = ["Family", "RunOptions", "FAMILY_MODULES", "families", "export_trained"]

# One entry per family module; each defines FAMILY = Family(...).
FAMILY_MODULES: list[str] = ["dlcourse.score.family", "dlcourse.sde.family", "dlcourse.rl.family", "dlcourse.rl.family_bc", "dlcourse.rl.family_gail", "dlcourse.discrete.family", "dlcourse.discrete.family_sedd", "dlcourse.discrete.family_ar"]


@dataclass
class RunOptions:
    out_dir: Path              #: run folder (checkpoint, metrics, config)
    resume: bool               #: continue the run in out_dir
    device: Any                #: torch.device chosen by the entry point
    export: Path | None        #: also write the EMA weights as .safetensors here
    force: bool = False        #: allow overwriting the export path
    command: str = ""          #: the exact command line, recorded in exported metadata


@dataclass
class Family:
    name: str                                                    #: e.g. "ncsn"
    help: str                                                    #: one line for --help
    presets: Presets                                             #: named configs, first one is the default
    train: Callable[[Any, RunOptions], Any]                      #: train(cfg, run)
    add_train_args: Callable[[argparse.ArgumentParser], None] | None = None  #: family-specific flags (e.g. --data)
    apply_train_args: Callable[[Any, argparse.Namespace], Any] | None = None  #: fold those flags into the config
    add_sample_args: Callable[[argparse.ArgumentParser], None] | None = None
    sample: Callable[[argparse.Namespace], Any] | None = None    #: sample(args)
    add_eval_args: Callable[[argparse.ArgumentParser], None] | None = None
    evaluate: Callable[[argparse.Namespace], Any] | None = None  #: evaluate(args): ``dlcourse eval FAMILY``


def families() -> dict[str, Family]:
    out = {}
    for module in FAMILY_MODULES:
        fam = importlib.import_module(module).FAMILY
        out[fam.name] = fam
    return out


def export_trained(run: RunOptions, kind: str, cfg: Any, state_dict: dict, metrics: dict,
                   describe: Callable[[], tuple[str, str]]) -> None:
    """``--export``: write the trained (EMA) weights as .safetensors with the kind, config, metrics and command;
    an export into ``dlcourse/checkpoints/`` is also recorded in the manifest, with ``describe() -> (what, data)``."""
    from .checkpoint import export_weights, is_shipped, record_if_shipped
    from .config import config_to_dict

    if run.export is None:
        return
    meta = {"kind": kind, "config": config_to_dict(cfg), "metrics": metrics, "command": run.command}
    export_weights(run.export, state_dict, meta, overwrite=run.force)
    print(f"{kind}: exported EMA weights to {run.export}")
    if is_shipped(run.export):
        what, data = describe()
        record_if_shipped(run.export, what=what, data=data, command=run.command, metrics=metrics)


def check_output(out: Path, force: bool, suffixes: tuple[str, ...] = (".png", ".pt")) -> None:
    """A ``--out`` file for samples: one of ``suffixes``, and never an existing file unless ``force``."""
    from .errors import ConfigError

    if out.suffix not in suffixes:
        raise ConfigError(f"--out must end in {' or '.join(suffixes)}, got {out}")
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; refusing to overwrite it (pass --force or choose another --out)")
