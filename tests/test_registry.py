"""The family protocol: every family offers what the table says, CLI aliases are exactly ``--set``, validation runs
after every override, shipped checkpoints load through the one loader, and the command line stays light."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dlcourse.checkpoint import read_manifest
from dlcourse.cli import main
from dlcourse.config import apply_overrides, config_to_dict
from dlcourse.errors import ConfigError
from dlcourse.registry import FAMILIES, Family, family

PACKAGE = Path(__file__).resolve().parent.parent / "dlcourse"

# per alias and family: a preset and a value that differs from that preset's
ALIAS_VALUES = {"data": {"ncsn": ("cpu", "mnist"), "sde": ("cpu", "mnist"), "mdlm": ("cpu", "markov"),
                         "sedd": ("cpu", "markov"), "ar": ("cpu", "markov")},
                "sde": {"sde": ("toy", "ve")},
                "env": {"expert": ("cpu", "acrobot"), "bc": ("cpu", "acrobot"), "gail": ("cpu", "acrobot")},
                "demos": {"expert": ("cpu", "/tmp/demos.safetensors")}}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_fills_the_protocol(name):
    fam = family(name)
    assert isinstance(fam, Family) and fam.name == name and fam.help == FAMILIES[name][1]
    commands = FAMILIES[name][2]
    assert ("sample" in commands) == (type(fam).sample is not Family.sample)
    assert ("eval" in commands) == (type(fam).evaluate is not Family.evaluate)
    for preset in fam.presets.names():
        cfg = fam.presets.get(preset)
        assert isinstance(cfg, fam.config)
        if name not in ("expert", "bc", "gail") and getattr(cfg, "data", "") not in ("cifar10",) and \
                "text8" not in preset:
            model = fam.build_model(cfg)
            assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("name,flag", [(n, f) for f, per in ALIAS_VALUES.items() for n in per])
def test_cli_aliases_are_exactly_set(name, flag, capsys):
    preset, value = ALIAS_VALUES[flag][name]
    fam = family(name)
    path = fam.aliases[flag]
    assert main(["train", name, "--preset", preset, f"--{flag}", value, "--print-config"]) == 0
    via_alias = json.loads(capsys.readouterr().out)
    assert main(["train", name, "--preset", preset, "--set", f"{path}={value}", "--print-config"]) == 0
    via_set = json.loads(capsys.readouterr().out)
    assert via_alias == via_set
    assert via_alias != config_to_dict(fam.presets.get(preset))  # the alias did change something


def test_sde_alias_and_set_give_the_same_constants():
    # --sde ve and --set sde=ve both leave the constants to the SDE: σ in (0.01, 50), not VP's (0.1, 20)
    from dlcourse.sde.family import FAMILY, build_sde

    cfg = apply_overrides(FAMILY.presets.get("toy"), ["sde=ve"])
    sde = build_sde(cfg)
    assert (sde.sigma_min, sde.sigma_max) == (0.01, 50.0)
    assert build_sde(apply_overrides(cfg, ["sde_min=0.05"])).sigma_min == 0.05


@pytest.mark.parametrize("name,overrides,message", [
    ("mdlm", ["noise.graph=uniform"], "mdlm is masked diffusion"),
    ("ncsn", ["data=mnist"], "needs model.arch='unet'"),
    ("sde", ["sde=cosine", "sde_min=0.1"], "no constants to set"),
    ("sde", ["sde=ve", "discretization=ddpm"], "is a VP option"),
    ("sedd", ["noise.graph=triangle"], "noise.graph must be one of 'absorbing', 'uniform'"),
    ("sde", ["train.micro_batches=0"], "micro_batches must be >= 1"),
])
def test_validation_runs_after_nested_overrides(name, overrides, message):
    fam = family(name)
    with pytest.raises(ConfigError, match=message):
        apply_overrides(fam.presets.get(fam.presets.names()[0]), overrides)


def test_overrides_that_only_make_sense_together_can_come_in_any_order():
    fam = family("ncsn")
    cfg = apply_overrides(fam.presets.get("cpu"), ["data=toy", "model.arch=mlp"])
    assert cfg.data == "toy" and cfg.model.arch == "mlp"


@pytest.mark.parametrize("name", sorted(read_manifest()))
def test_every_shipped_checkpoint_loads_through_the_one_loader(name):
    from dlcourse import load

    entry = read_manifest()[name]
    if entry["kind"] == "demonstrations":
        pytest.skip("demonstrations are data, not a model")
    model, cfg = load(name)
    assert not model.training
    kind = entry["kind"]
    owner = [n for n in FAMILIES if family(n).kind == kind]
    assert owner, kind


def test_family_modules_stay_small():
    for path in PACKAGE.glob("*/family.py"):
        assert len(path.read_text().splitlines()) <= 300, path


def test_help_imports_neither_torch_nor_any_family():
    code = ("import sys; from dlcourse.cli import build_parser; build_parser(['--help']); "
            "heavy = [m for m in sys.modules if m == 'torch' or m.endswith('.family')]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


# ARCHITECTURE.md's layers: below the families (layer 6) nothing imports the registry, a family or the top-level
# `load` (which is the registry's); the two measurement modules that sit at layer 6 are named there.
AT_LAYER_6 = {"registry.py", "cli.py", "notebooks.py", "__init__.py", "__main__.py", "discrete/frontier.py",
              "quality/metrics.py"}


def _imports_of(path: Path) -> set[str]:
    """Absolute module names (and ``module.name`` for ``from module import name``) that a source file imports."""
    import ast

    package = ".".join(("dlcourse",) + path.relative_to(PACKAGE).parent.parts)
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


def test_nothing_below_the_families_imports_one():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        # a package's __init__ may re-export its own family (`dlcourse.score` names the ncsn family's helpers)
        if rel in AT_LAYER_6 or rel.endswith(("family.py", "/__init__.py")) or rel.startswith("grading/"):
            continue
        bad = {m for m in _imports_of(path) if m in ("dlcourse.registry", "dlcourse.load")
               or m.startswith("dlcourse.registry.") or m.split(".")[-1] == "family" and m != "dlcourse.family"}
        if bad:
            offenders.append(f"{rel}: {sorted(bad)}")
    assert not offenders, "imports up the layers of ARCHITECTURE.md:\n  " + "\n  ".join(offenders)
