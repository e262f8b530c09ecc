"""Checkpoints that load without unpickling code, written atomically, and the manifest of shipped weights.

Two kinds of file:

- a *training state* (``ckpt.pt`` in a run folder): model, EMA, optimiser, step and RNG states, for exact resume.
  Saved with ``torch.save`` and loaded with ``torch.load(weights_only=True)``, which only rebuilds tensors and
  plain containers, never arbitrary objects.
- *exported weights* (``.safetensors``): one state dict plus a JSON header (``kind``, ``config``, metrics).
  These are what ships in ``dlcourse/checkpoints/`` and what ``dlcourse sample`` loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

__all__ = [
    "atomic_write",
    "save_training_state",
    "load_training_state",
    "export_weights",
    "load_weights",
    "load_state_into",
    "sha256_file",
    "SHIPPED_DIR",
    "read_manifest",
    "shipped_path",
    "record_in_manifest",
    "update_manifest_metrics",
    "load_model_weights",
    "resolve_path",
    "is_shipped",
    "record_if_shipped",
]

SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"
MANIFEST = SHIPPED_DIR / "manifest.json"
_META_KEY = "dlcourse"


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private (0600); give it a normal file's mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_training_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Atomically save a resumable training state (tensors, numbers, strings, lists and dicts only)."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_training_state(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Load a training state safely (``weights_only=True``); a bad or foreign file is a one-line `CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated zips, bad pickles, foreign objects
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise CheckpointError(f"{path} is not a dlcourse training checkpoint")
    _check_kind(path, state.get("meta", {}).get("kind"), kind)
    return state


def export_weights(path: str | os.PathLike, state_dict: dict[str, torch.Tensor], meta: dict[str, Any],
                   overwrite: bool = False, dtype: str = "float32") -> Path:
    """Write ``state_dict`` as safetensors with ``meta`` (must hold ``kind``) as a JSON header entry.
    ``dtype="bfloat16"`` stores the float32 tensors in bf16 (half the bytes; other dtypes are kept as they are);
    `load_state_into` copies them back into the float32 model."""
    from safetensors.torch import save_file

    path = Path(path)
    if "kind" not in meta:
        raise ValueError("meta must name the model kind, e.g. {'kind': 'ncsn', 'config': {...}}")
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path} exists; refusing to overwrite it (pass --force or choose another path)")
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}")
    store = torch.bfloat16 if dtype == "bfloat16" else None
    tensors = {k: (v.to(store) if store is not None and v.dtype == torch.float32 else v).detach().to("cpu").contiguous()
               for k, v in state_dict.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={_META_KEY: json.dumps(meta)}))


def load_weights(path: str | os.PathLike, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read exported weights and their metadata; corrupt files and another model's weights are one-line errors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        meta = json.loads(header[_META_KEY])
    except KeyError:
        raise CheckpointError(f"{path} has no dlcourse metadata; it was not written by dlcourse") from None
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {_first_line(exc)})") from None
    _check_kind(path, meta.get("kind"), kind)
    return tensors, meta


def load_state_into(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``module.load_state_dict`` with a one-line error naming the first missing, unexpected or mis-shaped tensor."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} of another shape (e.g. {k}: {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)})")
        raise CheckpointError(f"{source} does not fit this model: {', '.join(parts)}; was it trained with another config?")
    module.load_state_dict(state_dict)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _manifest_lock():
    """Hold an exclusive lock for a read-modify-write of the manifest, so that two commands recording at once (two
    ``dlcourse eval --record`` of different checkpoints, an export beside them) do not lose one another's entry."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (one writer at a time is then the user's care)
        yield
        return
    with open(SHIPPED_DIR / ".manifest.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _update_manifest(change) -> dict[str, dict[str, Any]]:
    """Apply ``change(entries)`` (in place) to the manifest under the lock and write it atomically."""
    with _manifest_lock():
        entries = read_manifest()
        change(entries)
        text = json.dumps(dict(sorted(entries.items())), indent=2) + "\n"
        atomic_write(MANIFEST, lambda tmp: Path(tmp).write_text(text))
    return entries


def read_manifest() -> dict[str, dict[str, Any]]:
    """The shipped checkpoints: name -> {file, kind, what, data, config, size, sha256, command, metrics (at the end
    of training), evals (recorded by ``dlcourse eval ... --record``: what -> metrics and command)}."""
    if not MANIFEST.exists():
        return {}
    return json.loads(MANIFEST.read_text())


def shipped_path(name: str, verify: bool = True) -> Path:
    """Path of shipped checkpoint ``name``, its sha256 checked against the manifest."""
    entries = read_manifest()
    if name not in entries:
        known = ", ".join(entries) or "none"
        raise CheckpointError(f"no shipped checkpoint named {name!r}; shipped: {known}")
    entry = entries[name]
    path = SHIPPED_DIR / entry["file"]
    if not path.is_file():
        raise CheckpointError(f"shipped checkpoint {name!r} is missing its file {path}; reinstall or rerun: {entry['command']}")
    if verify and sha256_file(path) != entry["sha256"]:
        raise CheckpointError(f"shipped checkpoint {path} does not match its sha256 in the manifest (corrupt or edited)")
    return path


def record_in_manifest(name: str, path: str | os.PathLike, *, what: str, data: str, command: str,
                       metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add or replace the manifest entry of a weights file in ``SHIPPED_DIR`` (size and sha256 computed here)."""
    path = Path(path).resolve()
    if path.parent != SHIPPED_DIR:
        raise CheckpointError(f"shipped checkpoints live in {SHIPPED_DIR}; {path} is elsewhere")
    _, meta = load_weights(path)
    entry = {
        "file": path.name,
        "kind": meta["kind"],
        "what": what,
        "data": data,
        "config": meta.get("config", {}),
        "metrics": metrics or meta.get("metrics", {}),
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
        "command": command,
    }
    _update_manifest(lambda entries: entries.__setitem__(name, entry))
    return entry


def resolve_path(name_or_path: str | os.PathLike) -> Path:
    """An existing path as it is, or a bare name (no folder, no suffix) as the shipped file of that name."""
    path = Path(name_or_path)
    if path.exists():
        return path
    if path.suffix or len(path.parts) > 1:
        raise CheckpointError(f"no checkpoint: no file at {path}")
    return shipped_path(str(name_or_path))


def load_model_weights(name_or_path: str | os.PathLike, kind: str | None = None
                       ) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path]:
    """The weights and metadata of a trained model, from any of the places a user may point at:
    a shipped name (``"ncsn_digits"``), an exported ``.safetensors`` file, a run folder, or its ``ckpt.pt`` (whose
    EMA weights are used). Returns ``(state_dict, meta, path)``; ``meta["config"]`` rebuilds the model."""
    path = resolve_path(name_or_path)
    if path.is_dir():
        path = path / "ckpt.pt"
    if path.suffix == ".safetensors":
        state, meta = load_weights(path, kind=kind)
    else:
        ckpt = load_training_state(path, kind=kind)
        state, meta = ckpt["ema"], ckpt.get("meta", {})
    return state, meta, path


def is_shipped(path: str | os.PathLike) -> bool:
    """Whether ``path`` is in ``dlcourse/checkpoints/``: a file written there is a shipped checkpoint."""
    return Path(path).resolve().parent == SHIPPED_DIR


def record_if_shipped(path: str | os.PathLike, *, what: str, data: str, command: str,
                      metrics: dict[str, Any] | None = None) -> bool:
    """Record a file written into ``dlcourse/checkpoints/`` in the manifest (name = file stem) with the exact command
    that produced it; do nothing for a file elsewhere. Returns whether it was recorded.

    A ``--resume`` flag is dropped from the recorded command: `dlcourse.train.fit` resumes exactly (same weights,
    optimiser, RNG and data stream), so the command without it, run from scratch, rebuilds the same weights."""
    import shlex

    if not is_shipped(path):
        return False
    command = " ".join(shlex.quote(a) for a in shlex.split(command) if a != "--resume")
    record_in_manifest(Path(path).stem, path, what=what, data=data, command=command, metrics=metrics)
    print(f"recorded {Path(path).stem!r} in {MANIFEST}")
    return True


def update_manifest_metrics(name: str, what: str, metrics: dict[str, Any], command: str) -> dict[str, Any]:
    """Record an evaluation of a shipped checkpoint in its manifest entry: ``entry["evals"][what]`` (``what`` is
    the evaluation, e.g. "bpd" or "quality") becomes ``metrics`` with the command that measured them under
    ``"command"``, replacing an earlier record of the same evaluation."""
    def change(entries):
        if name not in entries:
            raise CheckpointError(f"{name!r} is not in the manifest {MANIFEST}; --record works for shipped checkpoints "
                                  "only")
        entries[name].setdefault("evals", {})[what] = {**metrics, "command": command}

    return _update_manifest(change)[name]


def _check_kind(path: Path, found: str | None, expected: str | None) -> None:
    if expected is not None and found != expected:
        raise CheckpointError(f"{path} holds a {found!r} model, not {expected!r}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
