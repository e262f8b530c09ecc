"""The ``dlcourse`` command.

    dlcourse doctor        versions, device, data and checkpoint folders, and what is missing
    dlcourse lab           JupyterLab on the course map

    dlcourse train|sample|eval FAMILY ...    every family of `dlcourse.registry.FAMILIES` (generic arguments here,
                                             the family's own from its `Family`)

The grader adds ``assign``, ``grade`` and ``release`` through a ``register(subparsers)`` function in the modules
listed in `_COMMAND_MODULES`. Nothing heavy is imported before the arguments are parsed: ``dlcourse --help``
imports neither torch nor any family. Errors the user can fix (`DlcourseError`) print one line ``error: ...`` and
exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import DlcourseError

# Modules that add subcommands with register(subparsers); each imports torch-heavy code lazily.
_COMMAND_MODULES: list[str] = ["dlcourse.grading.cli"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def _versions() -> list[tuple[str, str]]:
    from importlib.metadata import PackageNotFoundError, version

    rows = [("python", platform.python_version())]
    for name in ["dlcourse", "torch", "torchvision", "numpy", "scipy", "matplotlib", "ipywidgets", "jupyterlab",
                 "jupytext", "nbval", "safetensors", "scikit-learn", "tqdm"]:
        try:
            rows.append((name, version(name)))
        except PackageNotFoundError:
            rows.append((name, "MISSING"))
    return rows


def _dataset_files(root: Path) -> dict[str, Path]:
    """Where torchvision (and our text code) keep each dataset under the data root; one file stands for each."""
    from .data.text import PROSE_FILE, PROSE_NAME

    return {
        "mnist": root / "MNIST" / "raw" / "train-images-idx3-ubyte",
        "fashion-mnist": root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte",
        "cifar10": root / "cifar-10-batches-py" / "data_batch_1",
        "text8": root / "text8" / "text8",
        PROSE_NAME: root / PROSE_FILE,
    }


def cmd_doctor(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import SHIPPED_DIR, read_manifest, sha256_file
    from .data.paths import data_root
    from .utils import get_device

    rows: list[tuple[str, str, str]] = []
    missing: list[str] = []
    for name, ver in _versions():
        rows.append(("version", name, ver))
        if ver == "MISSING":
            missing.append(f"package {name} (run `make setup` or `pip install -c constraints.txt -e .`)")
    try:
        device = str(get_device())
    except DlcourseError as exc:
        device = f"ERROR: {exc}"
        missing.append(str(exc))
    rows.append(("device", "chosen", device + (f" (DLCOURSE_DEVICE={os.environ['DLCOURSE_DEVICE']})" if os.environ.get("DLCOURSE_DEVICE") else "")))
    rows.append(("device", "cuda", f"{torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "not available"))
    mps = getattr(torch.backends, "mps", None)
    rows.append(("device", "mps", "available" if mps is not None and mps.is_available() else "not available"))
    rows.append(("device", "cpu threads", str(torch.get_num_threads())))

    root = data_root()
    rows.append(("data", "root", f"{root} ({'exists' if root.is_dir() else 'not created yet'}; set DLCOURSE_DATA to move it)"))
    rows.append(("data", "digits", "ok (ships with scikit-learn)"))
    for name, path in _dataset_files(root).items():
        ok = path.exists()
        rows.append(("data", name, "ok" if ok else f"missing ({path.parent})"))
        if not ok:
            if name == "english-prose":  # dlcourse.data.text.PROSE_NAME
                missing.append(f"dataset {name} (no download; see README 'Data'): {path}")
            else:
                missing.append(f"dataset {name}: downloaded on first use, or place it by hand in {path.parent}")

    entries = read_manifest()
    rows.append(("checkpoints", "folder", str(SHIPPED_DIR)))
    if not entries:
        rows.append(("checkpoints", "shipped", "none yet"))
    for name, entry in entries.items():
        path = SHIPPED_DIR / entry["file"]
        if not path.exists():
            status = "MISSING FILE"
        elif sha256_file(path) != entry["sha256"]:
            status = "SHA256 MISMATCH"
        else:
            status = f"ok ({entry['size'] / 1e6:.2f} MB)"
        if not status.startswith("ok"):
            missing.append(f"checkpoint {name}: {status.lower()}; rebuild with: {entry['command']}")
        rows.append(("checkpoints", name, status))

    kernels = _kernels()
    rows.append(("jupyter", "kernel dlcourse", "registered" if "dlcourse" in kernels else "not registered"))
    if "dlcourse" not in kernels:
        missing.append("Jupyter kernel 'dlcourse' (run `make setup`)")
    from dlcourse.grading.sandbox import describe

    rows.append(("grading", "sandbox", describe()))
    rows.append(("jupyter", "course map", str(REPO_ROOT / "course" / "README.md") if (REPO_ROOT / "course").is_dir() else "not found (installed without the course files)"))

    width = [max(len(r[i]) for r in rows) for i in range(2)]
    for section, key, value in rows:
        print(f"{section:<{width[0]}}  {key:<{width[1]}}  {value}")
    print()
    if missing:
        print("missing:")
        for item in missing:
            print(f"  - {item}")
    else:
        print("nothing missing")
    return 0


def _kernels() -> set[str]:
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        return set(KernelSpecManager().find_kernel_specs())
    except Exception:
        return set()


def cmd_lab(args: argparse.Namespace) -> int:
    course = REPO_ROOT / "course" / "README.md"
    if not course.exists():
        raise DlcourseError(f"course files not found next to the package ({REPO_ROOT}); run `make lab` from a clone of the course")
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or shutil.which("jupyter")
    if jupyter is None:
        raise DlcourseError("jupyter is not installed in this environment; run `make setup`")
    # default_url (not a file argument) so the printed URL, the browser and a bare "/" all land on the course map.
    # Another root (a copy of the course, as the browser tests use) may be given as --ServerApp.root_dir=DIR:
    # Jupyter refuses the option twice.
    root = REPO_ROOT
    for a in args.extra:
        if a.startswith("--ServerApp.root_dir="):
            root = Path(a.split("=", 1)[1]).expanduser()
    cmd = [jupyter, "lab", "--LabApp.default_url=/lab/tree/course/README.md"]
    if not any(a.startswith("--ServerApp.root_dir") for a in args.extra):
        cmd.insert(2, f"--ServerApp.root_dir={REPO_ROOT}")
    if not any(a.startswith("--ServerApp.terminado_settings") for a in args.extra):
        # Terminals run the user's shell as an interactive, non-login shell, as they do when JupyterLab starts from
        # a terminal: started any other way (a launcher, CI) Jupyter would make it a login shell, whose
        # /etc/profile resets PATH and loses this environment's commands.
        shell = os.environ.get("SHELL") or shutil.which("bash") or shutil.which("sh") or "sh"
        cmd.append(f"--ServerApp.terminado_settings=shell_command={[shell]!r}")
    if args.port:
        cmd.append(f"--port={args.port}")
    if args.no_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI machines often run as root; Jupyter refuses without this
    cmd += args.extra
    # JupyterLab's terminals inherit the server's environment: put this environment's commands first on PATH, so
    # that `dlcourse grade ...` typed in a JupyterLab terminal is the course's dlcourse, not "command not found".
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = os.pathsep.join(p for p in (bin_dir, env.get("PATH", "")) if p)
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    try:  # the course's JupyterLab settings, also for an environment set up before they changed (idempotent)
        from .notebooks import write_lab_settings

        write_lab_settings()
    except (OSError, DlcourseError) as exc:
        print(f"warning: could not write the course's JupyterLab settings ({exc}); run `make setup`", file=sys.stderr)
    # cwd = the root: a new terminal opens there (JupyterLab asks for the file browser's folder, and a terminal
    # asked for the root folder gets the server's working directory)
    return subprocess.call(cmd, cwd=root, env=env)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``dlcourse`` parser. Families are listed from `dlcourse.registry.FAMILIES` without importing them; only
    the family that ``argv`` names (``train ncsn ...``) is imported, to add its own arguments."""
    parser = argparse.ArgumentParser(prog="dlcourse", description="dlcourse: the course's command line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("doctor", help="versions, device, data and checkpoint folders, and what is missing")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("lab", help="start JupyterLab on the course map (other options go to `jupyter lab`)")
    p.add_argument("--port", type=int, default=None, help="port to serve on (default: Jupyter's choice)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.set_defaults(func=cmd_lab, passthrough=True)

    _add_family_commands(sub, list(argv or []))
    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


_FAMILY_COMMANDS = {"train": "train a model", "sample": "sample from a trained model",
                    "eval": "evaluate a trained model"}


def _add_family_commands(sub, argv: list[str]) -> None:
    """``dlcourse train|sample|eval FAMILY``; the arguments of the family named in ``argv`` only."""
    from .registry import FAMILIES

    named = [a for a in argv if not a.startswith("-")]
    wanted = tuple(named[:2]) if len(named) >= 2 and named[0] in _FAMILY_COMMANDS else None
    for command, what in _FAMILY_COMMANDS.items():
        names = [n for n, (_, _, commands) in FAMILIES.items() if command in commands]
        p = sub.add_parser(command, help=f"{what}: " + ", ".join(names))
        family_sub = p.add_subparsers(dest="family", metavar="FAMILY")
        family_sub.required = True
        for name in names:
            fp = family_sub.add_parser(name, help=FAMILIES[name][1], description=FAMILIES[name][1])
            if wanted == (command, name):
                from .registry import family

                fam = family(name)
                {"train": _train_args, "sample": _sample_args, "eval": _eval_args}[command](fp, fam)
                fp.set_defaults(func={"train": _cmd_train, "sample": _cmd_sample, "eval": _cmd_eval}[command],
                                fam=fam)


def _field_choices(config: type, path: str) -> str:
    """", one of: a, b, c" for a ``Literal`` config field, else ""."""
    import typing

    cls = config
    *parents, leaf = path.split(".")
    for name in parents:
        cls = typing.get_type_hints(cls)[name]
    hint = typing.get_type_hints(cls)[leaf]
    return ", one of: " + ", ".join(typing.get_args(hint)) if typing.get_origin(hint) is typing.Literal else ""


def _train_args(p: argparse.ArgumentParser, fam) -> None:
    p.add_argument("--preset", default=fam.presets.names()[0],
                   help=f"named configuration: {', '.join(fam.presets.names())} (default: %(default)s)")
    for flag, path in fam.aliases.items():
        p.add_argument(f"--{flag}", dest=f"alias_{flag}", default=None, metavar=flag.upper(),
                       help=f"the same as --set {path}={flag.upper()}{_field_choices(fam.config, path)}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.steps=500 (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/FAMILY-PRESET)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: $DLCOURSE_DEVICE or best)")
    p.add_argument("--export", type=Path, default=None, help="also write the EMA weights as .safetensors here")
    p.add_argument("--force", action="store_true", help="allow --export to overwrite an existing file")
    p.add_argument("--export-dtype", choices=("float32", "bfloat16"), default="float32",
                   help="how --export stores float32 weights (bfloat16: half the size; default: %(default)s)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def _checkpoint_arg(p: argparse.ArgumentParser, fam) -> None:
    p.add_argument("--checkpoint", "--policy", dest="checkpoint", default=fam.default_checkpoint,
                   required=fam.default_checkpoint is None, metavar="NAME_OR_PATH",
                   help="a shipped checkpoint name, a .safetensors export, a run folder or its ckpt.pt"
                        + (" (default: %(default)s)" if fam.default_checkpoint else ""))
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps")


def _sample_args(p: argparse.ArgumentParser, fam) -> None:
    _checkpoint_arg(p, fam)
    p.add_argument("--n", "--samples", dest="n", type=int, default=fam.sample_n,
                   help="number of samples (default: %(default)s; spell it --samples under torchrun, which takes --n as its own)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, required=".txt" not in fam.sample_suffixes,
                   help=f"output file: {' or '.join(fam.sample_suffixes)}")
    if ".png" in fam.sample_suffixes:
        p.add_argument("--scale", type=int, default=4, help="enlarge each image this many times in the PNG")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    fam.add_sample_args(p)


def _eval_args(p: argparse.ArgumentParser, fam) -> None:
    _checkpoint_arg(p, fam)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--record", action="store_true",
                   help="store the result in the shipped checkpoint's manifest entry (shipped names only)")
    fam.add_eval_args(p)


def _command_line(args: argparse.Namespace) -> str:
    import shlex

    return "dlcourse " + " ".join(shlex.quote(a) for a in args.argv)


def _cmd_train(args: argparse.Namespace) -> int:
    import json

    from .config import apply_overrides, config_to_dict
    from .registry import RunOptions
    from .utils import get_device

    fam = args.fam
    aliases = [f"{path}={getattr(args, 'alias_' + flag)}" for flag, path in fam.aliases.items()
               if getattr(args, "alias_" + flag) is not None]
    cfg = apply_overrides(fam.presets.get(args.preset), aliases + args.overrides)
    if args.print_config:
        print(json.dumps(config_to_dict(cfg), indent=2))
        return 0
    if args.export is not None and args.export.exists() and not args.force:
        raise DlcourseError(f"{args.export} exists; refusing to overwrite it (pass --force or choose another --export)")
    run = RunOptions(out_dir=args.out or Path("runs") / f"{fam.name}-{args.preset}", resume=args.resume,
                     device=get_device(args.device), export=args.export, force=args.force,
                     command=_command_line(args), export_dtype=args.export_dtype)
    fam.train(cfg, run)
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from .registry import check_output, write_samples
    from .utils import get_device

    fam = args.fam
    if args.n < 1:
        raise DlcourseError(f"--n must be at least 1, got {args.n}")
    if args.out is not None:
        check_output(args.out, args.force, fam.sample_suffixes)
    device = get_device(args.device)
    model, cfg = fam.load(args.checkpoint, device)
    out = fam.sample(model, cfg, args.n, torch.Generator(device=device).manual_seed(args.seed), args)
    write_samples(out, args.out, scale=getattr(args, "scale", 1), title=f"{fam.name} samples ({out.note})")
    print(f"{fam.name}: {args.n} samples ({out.note})" + (f", written to {args.out}" if args.out else ""))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from .utils import get_device, is_main_process

    fam = args.fam
    model, cfg = fam.load(args.checkpoint, get_device(args.device))
    metrics = fam.evaluate(model, cfg, args)  # under torchrun every process evaluates a share; rank 0 reports
    if not is_main_process():
        return 0
    print(json.dumps(metrics) if args.json else fam.report(metrics))
    if args.record:
        from .checkpoint import update_manifest_metrics

        what = next((flag for flag in ("bpd", "quality", "accuracy", "bpc") if getattr(args, flag, False)), "eval")
        if what == "quality":  # one record per sampler setting, e.g. "quality (pc, NFE 201)"
            what = f"quality ({metrics['sampler']})"
        update_manifest_metrics(args.checkpoint, what, metrics, _command_line(args))
        print(f"{fam.name}: recorded the evaluation in the manifest entry of {args.checkpoint!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra  # `dlcourse lab` passes unknown options on to `jupyter lab`
    args.argv = argv  # recorded with exported checkpoints
    try:
        return int(args.func(args) or 0)
    except DlcourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
