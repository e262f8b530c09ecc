"""Execute the course notebooks reproducibly, check that sources and notebooks agree, set up JupyterLab.

Usage::

    python -m dlcourse.notebooks execute lectures solutions        # or single files: lectures/00_welcome.py
    python -m dlcourse.notebooks check-pairs lectures solutions
    python -m dlcourse.notebooks lab-settings
    python -m dlcourse.notebooks install-kernel

**Sources and notebooks.** The reviewed source of a notebook is ``NN_topic.py`` in jupytext's percent format; the
``.ipynb`` beside it, with reference outputs, is *generated* from it by ``execute`` and never edited by hand
(``check-pairs`` and ``tests/test_notebooks.py`` fail when a ``.py`` changed without its ``.ipynb``). Every
``*.py`` in ``lectures/`` and ``solutions/`` is a notebook, except names starting with ``_`` (helper modules).

``execute`` runs each source top to bottom in a fresh kernel (``dlcourse``, else ``python3``) in the notebook's
folder with ``DLCOURSE_DEVICE=cpu`` (the reference outputs are what a student's laptop prints), then writes the
``.ipynb`` deterministically: cell ids ``cell-00, cell-01, ...``, no timestamps or timings, streams merged,
widget model ids renumbered, minimal sorted metadata, jupytext pairing ``ipynb,py:percent``. Executing an
unchanged, deterministic notebook twice gives byte-identical files, so ``git diff`` shows only real changes.

**nbval conventions** (``pytest --nbval`` re-runs the ``.ipynb`` files and compares outputs). Tag a cell in the
``.py`` source with jupytext's cell-metadata syntax, e.g. ``# %% tags=["nbval-ignore-output"]``:

- untagged: the output is compared with the reference (after ``tests/nbval_sanitize.cfg`` removes memory
  addresses, timings, progress bars). Keep a few such cells on purpose: a shape, an exact likelihood, a printed
  number that the lecture relies on, computed deterministically and printed at sensible precision.
- ``nbval-ignore-output``: run, but do not compare. For widgets (`dlcourse.viz.FramePlayer`), random samples,
  timings, training logs, anything that prints a device or a path.
- ``nbval-skip``: do not run under nbval at all (a cell that is slow, needs the network or a GPU). Later cells
  must not depend on it.
- ``raises-exception``: the cell is expected to raise (a lecture showing an error message).

Figures (``image/png``) are never compared by nbval; their cells need no tag unless their text output varies.

**JupyterLab** (``lab-settings``, ``install-kernel``; ``make setup`` runs both). Two things keep a notebook that a
student opens, runs and saves as it should be:

- *Saved widgets.* JupyterLab keeps the widget state a notebook was opened with (the reference run's) and saves
  the outputs of the student's run, whose widgets live in the student's kernel; once that kernel is gone, every
  such widget shows "Error displaying widget: model not found". The widget manager's own ``saveState`` would save
  the live state instead, but it also marks every notebook with widgets modified the moment it is opened (it
  does so for each model it restores). So the server saves through `pre_save_hook`, which removes a widget view
  whose model is not in the saved state from its output, leaving the still picture every course widget carries
  beside it (``image/png``): a reopened lecture shows its widgets where their state was saved, pictures
  elsewhere, never an error. ``lab-settings`` registers the hook in the environment's Jupyter server config.
- *An unmodified notebook stays unmodified.* JupyterLab copies the kernel's ``language_info`` into the notebook
  when the kernel starts and marks it modified if it differs. ipykernel reports the exact Python version, which
  the committed notebooks leave out (it would churn them and differ from a student's Python); the course kernel
  (`CourseKernel`, registered by ``install-kernel``) reports ``language_info`` without it.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "KERNEL_NAME",
    "PAIRING_FORMATS",
    "ExecutionFailed",
    "PairProblem",
    "find_sources",
    "read_source",
    "execute_source",
    "normalize_notebook",
    "dumps_notebook",
    "execute_and_write",
    "compare_pair",
    "check_pairs",
    "lab_settings_path",
    "write_lab_settings",
    "server_config_path",
    "strip_unsaved_widget_views",
    "pre_save_hook",
    "install_kernel",
    "main",
]

KERNEL_NAME = "dlcourse"
KERNEL_DISPLAY_NAME = "Python (dlcourse)"
PAIRING_FORMATS = "ipynb,py:percent"
DEFAULT_TIMEOUT_S = 600
WIDGET_STATE_KEY = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW_KEY = "application/vnd.jupyter.widget-view+json"
_MODEL_REF = "IPY_MODEL_"

# Static language_info: what the course kernel (`CourseKernel`) reports. ipykernel's own also has the exact Python
# version, which would churn the files and, differing from a student's Python, mark every notebook modified.
_LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
}

# JupyterLab settings that `make lab` relies on: Markdown files (the course map) open rendered, and no
# "get notified about Jupyter news?" pop-up over the course map (it fetches from the web).
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"markdown": "Markdown Preview"}},
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}
# The Jupyter server's side (see the module docstring): notebooks are saved through `pre_save_hook`.
SERVER_CONFIG = {"ContentsManager": {"pre_save_hook": "dlcourse.notebooks.pre_save_hook"}}
COURSE_KERNEL_CLASS = "dlcourse.notebooks.CourseKernel"


class ExecutionFailed(Exception):
    """A notebook cell raised, timed out, or killed the kernel; ``str()`` is the one-line report."""

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.traceback = traceback


# --------------------------------------------------------------------------------------------------------------
# Finding and reading sources


def _is_source(path: Path) -> bool:
    return path.suffix == ".py" and not path.name.startswith(("_", "."))


def find_sources(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The notebook sources named by ``paths``: each folder's ``*.py`` files (not ``_*.py``), files as given
    (an ``.ipynb`` stands for its ``.py``). Sorted within each folder; missing paths are an error."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(q for q in p.glob("*.py") if _is_source(q)))
            continue
        py = p.with_suffix(".py") if p.suffix == ".ipynb" else p
        if py.suffix != ".py":
            raise FileNotFoundError(f"{p}: no such folder" if not p.exists() else f"{p}: not a folder, .py or .ipynb file")
        if not py.exists():
            raise FileNotFoundError(f"{py}: no such notebook source")
        found.append(py)
    return list(dict.fromkeys(found))


def read_source(path: str | os.PathLike) -> Any:
    """Read a jupytext percent ``.py`` as an nbformat v4 notebook (no outputs)."""
    import jupytext

    return jupytext.read(str(path), fmt="py:percent")


# --------------------------------------------------------------------------------------------------------------
# Executing


def _kernel_name(preferred: str = KERNEL_NAME) -> str:
    """``preferred`` if installed (``make setup`` registers ``dlcourse`` in the venv), else ``python3``."""
    from jupyter_client.kernelspec import KernelSpecManager

    return preferred if preferred in KernelSpecManager().find_kernel_specs() else "python3"


def _marker_lines(path: Path) -> list[int]:
    """1-based line numbers of the ``# %%`` cell markers in a percent-format source."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [i + 1 for i, line in enumerate(lines) if line.startswith("# %%")]


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def execute_source(
    path: str | os.PathLike,
    timeout: float = DEFAULT_TIMEOUT_S,
    kernel_name: str | None = None,
    device: str | None = "cpu",
) -> tuple[Any, float]:
    """Run the notebook source ``path`` top to bottom in a fresh kernel with cwd = its folder.

    ``timeout`` bounds the whole notebook (each cell gets what is left). ``device`` sets ``DLCOURSE_DEVICE`` in
    the kernel (``None`` leaves the environment alone). Returns the executed notebook and the wall time in
    seconds; raises `ExecutionFailed` naming the notebook and the cell.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(path)
    nb = read_source(path)
    env = dict(os.environ, PYTHONHASHSEED="0")
    if device is not None:
        env["DLCOURSE_DEVICE"] = device
    start = time.perf_counter()
    deadline = start + timeout
    current = {"index": -1}

    def on_cell_start(cell: Any, cell_index: int) -> None:
        current["index"] = cell_index

    client = NotebookClient(
        nb,
        kernel_name=kernel_name or _kernel_name(),
        timeout=int(timeout),
        timeout_func=lambda cell: max(1, int(deadline - time.perf_counter()) + 1),
        record_timing=False,
        store_widget_state=True,
        coalesce_streams=True,
        allow_errors=False,
        resources={"metadata": {"path": str(path.parent.resolve())}},
        on_cell_start=on_cell_start,
        # The kernel's own log (e.g. ipykernel's notice about local TCP) is noise here; cell output is unaffected.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )

    def where() -> str:
        i = current["index"]
        if i < 0:
            return "before the first cell"
        markers = _marker_lines(path)
        line = f", line {markers[i]}" if len(markers) == len(nb.cells) else ""
        first = next((s for s in nb.cells[i].source.splitlines() if s.strip()), "").strip()
        return f"cell {i}{line} ({first[:50]!r})"

    try:
        client.execute(env=env)
    except CellTimeoutError as exc:
        raise ExecutionFailed(f"{path}: {where()} timed out (notebook limit {timeout:.0f} s)", str(exc)) from None
    except DeadKernelError as exc:
        raise ExecutionFailed(f"{path}: kernel died in {where()} (out of memory?)", str(exc)) from None
    except CellExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}".strip().splitlines()[0] if exc.ename else "error"
        raise ExecutionFailed(f"{path}: {where()} raised {error}", _strip_ansi(str(exc))) from None
    return nb, time.perf_counter() - start


# --------------------------------------------------------------------------------------------------------------
# Normalising: the same inputs and outputs always serialise to the same bytes


def _walk_model_refs(value: Any) -> Iterable[str]:
    """Model ids referenced (as ``"IPY_MODEL_<id>"``) anywhere in a widget state, in a deterministic order."""
    if isinstance(value, str):
        if value.startswith(_MODEL_REF):
            yield value[len(_MODEL_REF):]
    elif isinstance(value, dict):
        for key in sorted(value):
            yield from _walk_model_refs(value[key])
    elif isinstance(value, list):
        for item in value:
            yield from _walk_model_refs(item)


def _replace_model_refs(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        if value.startswith(_MODEL_REF):
            return _MODEL_REF + names.get(value[len(_MODEL_REF):], value[len(_MODEL_REF):])
        return value
    if isinstance(value, dict):
        return {k: _replace_model_refs(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_model_refs(v, names) for v in value]
    return value


def _widget_model_names(nb: Any, state: dict[str, Any], namespace: str) -> dict[str, str]:
    """Map the kernel's random widget model ids to ids derived from ``namespace`` and the order in which the
    models are reached: from the displayed widgets, cell by cell, then through their references; models no
    displayed widget reaches (e.g. a jslink) are ordered by their content."""
    names: dict[str, str] = {}

    def new_name() -> str:
        return hashlib.sha256(f"{namespace}:{len(names)}".encode()).hexdigest()[:32]

    def visit(model_id: str) -> None:
        stack = [model_id]
        while stack:
            mid = stack.pop()
            if mid in names or mid not in state:
                continue
            names[mid] = new_name()
            stack.extend(reversed(list(_walk_model_refs(state[mid]))))

    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW_KEY)
            if view and "model_id" in view:
                visit(view["model_id"])
    while len(names) < len(state):
        rest = [mid for mid in state if mid not in names]

        def content(mid: str) -> str:
            placeholders = {m: "?" for m in rest}
            return json.dumps(_replace_model_refs(state[mid], {**placeholders, **names}), sort_keys=True)

        visit(min(rest, key=content))
    return names


def _normalize_widgets(nb: Any, namespace: str) -> None:
    widgets = nb.metadata.get("widgets", {}).get(WIDGET_STATE_KEY)
    if not widgets:
        nb.metadata.pop("widgets", None)
        return
    state = widgets.get("state", {})
    names = _widget_model_names(nb, state, namespace)
    new_state = {names[mid]: _replace_model_refs(model, names) for mid, model in state.items()}
    widgets["state"] = dict(sorted(new_state.items()))
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW_KEY)
            if view and view.get("model_id") in names:
                view["model_id"] = names[view["model_id"]]


def normalize_notebook(nb: Any, name: str = "notebook") -> Any:
    """A copy of ``nb`` fit to commit: stable cell ids, no timing metadata, minimal metadata, pairing info,
    kernelspec ``dlcourse`` and widget model ids derived from ``name`` (the notebook's stem)."""
    import nbformat

    nb = copy.deepcopy(nb)
    nb.nbformat, nb.nbformat_minor = 4, 5
    source_meta = dict(nb.metadata)
    jupytext_meta = {
        k: v for k, v in dict(source_meta.get("jupytext", {})).items()
        if k not in ("text_representation", "jupytext_version", "notebook_metadata_filter", "cell_metadata_filter")
    }
    jupytext_meta["formats"] = PAIRING_FORMATS
    metadata = {k: v for k, v in source_meta.items() if k not in ("jupytext", "kernelspec", "language_info", "widgets")}
    metadata["jupytext"] = jupytext_meta
    metadata["kernelspec"] = {"display_name": KERNEL_DISPLAY_NAME, "language": "python", "name": KERNEL_NAME}
    metadata["language_info"] = copy.deepcopy(_LANGUAGE_INFO)
    if "widgets" in source_meta:
        metadata["widgets"] = source_meta["widgets"]
    nb.metadata = nbformat.from_dict(metadata)

    width = max(2, len(str(len(nb.cells) - 1)))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:0{width}d}"
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
            for output in cell.outputs:
                output.pop("transient", None)
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
    _normalize_widgets(nb, f"dlcourse:{name}")
    nbformat.validate(nb)
    return nb


def dumps_notebook(nb: Any) -> str:
    """Serialise with sorted keys and one-space indents (nbformat's own layout), ending in a newline."""
    import nbformat

    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def execute_and_write(
    source: str | os.PathLike,
    timeout: float = DEFAULT_TIMEOUT_S,
    kernel_name: str | None = None,
    device: str | None = "cpu",
) -> tuple[Path, float, bool]:
    """Execute ``source`` (a ``.py``) and write its ``.ipynb``. Returns (ipynb path, seconds, whether it changed).

    On failure nothing is written: a broken reference notebook is never left behind.
    """
    source = Path(source)
    nb, seconds = execute_source(source, timeout=timeout, kernel_name=kernel_name, device=device)
    text = dumps_notebook(normalize_notebook(nb, name=source.stem))
    target = source.with_suffix(".ipynb")
    changed = not target.exists() or target.read_text(encoding="utf-8") != text
    if changed:
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    # Keep the source at least as new as the notebook: jupytext in JupyterLab then trusts the .py's inputs.
    os.utime(source)
    return target, seconds, changed


# --------------------------------------------------------------------------------------------------------------
# Pairing


@dataclass(frozen=True)
class PairProblem:
    """One out-of-sync pair: the file to look at and what is wrong."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def _cell_signature(cell: Any) -> tuple[str, str, tuple[str, ...]]:
    return cell.cell_type, cell.source, tuple(cell.metadata.get("tags", ()))


def compare_pair(py_path: Path, ipynb_path: Path) -> str | None:
    """``None`` if the cells (types, sources, tags) of the ``.py`` and the ``.ipynb`` agree, else what differs."""
    import nbformat

    source = read_source(py_path)
    try:
        notebook = nbformat.read(str(ipynb_path), as_version=4)
    except Exception as exc:  # an unreadable notebook is a problem to report, not a crash
        return f"cannot read {ipynb_path.name}: {exc}"
    a = [_cell_signature(c) for c in source.cells]
    b = [_cell_signature(c) for c in notebook.cells]
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            what = "type" if x[0] != y[0] else "source" if x[1] != y[1] else "tags"
            return f"cell {i} differs ({what}) from {ipynb_path.name}"
    if len(a) != len(b):
        return f"{len(a)} cells, but {ipynb_path.name} has {len(b)}"
    return None


def check_pairs(paths: Iterable[str | os.PathLike]) -> list[PairProblem]:
    """Every ``.py`` source under ``paths`` has an ``.ipynb`` with the same cells, and every ``.ipynb`` a ``.py``.

    Folders are scanned (not recursively); files are checked with their partner. Returns the problems found.
    """
    problems: list[PairProblem] = []
    pairs: dict[Path, None] = {}
    for p in map(Path, paths):
        if p.is_dir():
            for q in sorted(p.glob("*.py")):
                if _is_source(q):
                    pairs[q] = None
            for q in sorted(p.glob("*.ipynb")):
                pairs[q.with_suffix(".py")] = None
        elif p.suffix in (".py", ".ipynb"):
            pairs[p.with_suffix(".py")] = None
        else:
            problems.append(PairProblem(p, "not a folder, .py or .ipynb file"))
    for py in pairs:
        ipynb = py.with_suffix(".ipynb")
        if not py.exists():
            problems.append(PairProblem(ipynb, f"has no source {py.name} (the .py is the reviewed source)"))
        elif not ipynb.exists():
            problems.append(PairProblem(py, f"has no {ipynb.name}: run `python -m dlcourse.notebooks execute {py}`"))
        else:
            diff = compare_pair(py, ipynb)
            if diff:
                problems.append(PairProblem(py, f"{diff}: run `python -m dlcourse.notebooks execute {py}`"))
    return problems


# --------------------------------------------------------------------------------------------------------------
# JupyterLab settings


def lab_settings_path(prefix: str | os.PathLike | None = None) -> Path:
    """JupyterLab's settings overrides for the environment at ``prefix`` (default: this interpreter's)."""
    return Path(prefix or sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def server_config_path(prefix: str | os.PathLike | None = None) -> Path:
    """The Jupyter server's config file of the environment at ``prefix`` (default: this interpreter's). (Files in
    ``jupyter_server_config.d/`` only enable extensions; the server reads its settings from this one.)"""
    return Path(prefix or sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.json"


def _read_json_object(path: Path) -> dict:
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); fix or remove it, then run lab-settings again") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def _views_without_state(nb: dict) -> Iterable[dict]:
    """The ``data`` of each output that shows a widget whose model is not in the notebook's saved widget state."""
    state = (nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE_KEY) or {}).get("state") or {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs") or []:
            data = output.get("data") or {}
            view = data.get(WIDGET_VIEW_KEY)
            if isinstance(view, dict) and view.get("model_id") not in state:
                yield data


def strip_unsaved_widget_views(nb: dict) -> int:
    """Remove, in place, each widget view whose model is not in ``nb``'s saved widget state, so the output falls back
    to its still picture (``image/png``) or text; returns how many were removed. Views with saved state stay."""
    n = 0
    for data in list(_views_without_state(nb)):
        del data[WIDGET_VIEW_KEY]
        n += 1
    return n


def pre_save_hook(model: dict, **kwargs: Any) -> None:
    """Jupyter server pre-save hook (``ContentsManager.pre_save_hook``): `strip_unsaved_widget_views` on every
    notebook saved, so that no saved notebook can show "model not found" once its kernel is gone."""
    if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
        strip_unsaved_widget_views(model["content"])


def write_lab_settings(prefix: str | os.PathLike | None = None, settings: dict | None = None) -> Path:
    """Merge the course's JupyterLab settings into ``overrides.json`` and its server settings into the environment's
    ``jupyter_server_config.json`` (`server_config_path`), keeping every other key of both. Returns the first."""
    path = lab_settings_path(prefix)
    server = server_config_path(prefix)
    merged = _merge(_read_json_object(path), LAB_SETTINGS if settings is None else settings)
    merged_server = _merge(_read_json_object(server), SERVER_CONFIG)
    for target, value in ((path, merged), (server, merged_server)):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------------------
# The course kernel

_COURSE_KERNEL: Any = None


def _course_kernel() -> Any:
    """IPython's kernel with a version-free ``language_info`` (built on first use: ipykernel is imported only by the
    kernel process, not by ``dlcourse`` itself)."""
    global _COURSE_KERNEL
    if _COURSE_KERNEL is None:
        from ipykernel.ipkernel import IPythonKernel

        class CourseKernel(IPythonKernel):
            """IPython's kernel, reporting ``language_info`` without ``version`` (see the module docstring)."""

            language_info = {k: v for k, v in IPythonKernel.language_info.items() if k != "version"}

        CourseKernel.__module__, CourseKernel.__qualname__ = "dlcourse.notebooks", "CourseKernel"
        _COURSE_KERNEL = CourseKernel
    return _COURSE_KERNEL


def __getattr__(name: str) -> Any:
    # `CourseKernel` is looked up by the kernel's --IPKernelApp.kernel_class=dlcourse.notebooks.CourseKernel
    if name == "CourseKernel":
        return _course_kernel()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def install_kernel(prefix: str | os.PathLike | None = None) -> Path:
    """Register the kernel ``dlcourse`` ("Python (dlcourse)") in the environment at ``prefix`` (default: this
    interpreter's, like ``ipykernel install --sys-prefix``), running `CourseKernel`. Returns its folder."""
    from ipykernel.kernelspec import install

    folder = Path(install(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME, prefix=str(prefix or sys.prefix)))
    spec_path = folder / "kernel.json"
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    argv = [a for a in spec["argv"] if not a.startswith("--IPKernelApp.kernel_class=")]
    spec["argv"] = argv + [f"--IPKernelApp.kernel_class={COURSE_KERNEL_CLASS}"]
    spec_path.write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    return folder


# --------------------------------------------------------------------------------------------------------------
# Command line


def _cmd_execute(args: argparse.Namespace) -> int:
    try:
        sources = find_sources(args.paths)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not sources:
        print("error: no notebook sources (*.py) found in " + ", ".join(args.paths), file=sys.stderr)
        return 2
    device = None if args.device == "auto" else args.device
    failures: list[str] = []
    total = time.perf_counter()
    for source in sources:
        print(f"executing {source} ...", flush=True)
        try:
            target, seconds, changed = execute_and_write(source, timeout=args.timeout, kernel_name=args.kernel, device=device)
        except ExecutionFailed as exc:
            if exc.traceback:
                print(exc.traceback.rstrip(), file=sys.stderr)
            print(f"FAILED {exc}", file=sys.stderr, flush=True)
            failures.append(str(exc))
            continue
        size_kb = target.stat().st_size / 1024
        print(f"  {target}: {seconds:.1f} s, {size_kb:.0f} kB, {'updated' if changed else 'unchanged'}", flush=True)
    print(f"{len(sources) - len(failures)} of {len(sources)} notebooks executed in {time.perf_counter() - total:.1f} s")
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _cmd_check_pairs(args: argparse.Namespace) -> int:
    problems = check_pairs(args.paths)
    for problem in problems:
        print(f"out of sync: {problem}", file=sys.stderr)
    if not problems:
        print("all notebook pairs in sync")
    return 1 if problems else 0


def _cmd_lab_settings(args: argparse.Namespace) -> int:
    try:
        path = write_lab_settings(args.prefix)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"JupyterLab settings written to {path}")
    return 0


def _cmd_install_kernel(args: argparse.Namespace) -> int:
    folder = install_kernel(args.prefix)
    print(f"kernel {KERNEL_NAME!r} ({KERNEL_DISPLAY_NAME}) installed in {folder}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlcourse.notebooks", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("execute", help="run notebook sources (.py) and write their .ipynb with reference outputs")
    p.add_argument("paths", nargs="+", help="folders (all *.py in them) or .py / .ipynb files")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per notebook (default %(default)s)")
    p.add_argument("--kernel", default=None, help="kernel name (default: dlcourse if installed, else python3)")
    p.add_argument("--device", default="cpu", help="DLCOURSE_DEVICE in the kernel; 'auto' leaves it alone (default cpu)")
    p.set_defaults(func=_cmd_execute)
    p = sub.add_parser("check-pairs", help="check that every .py has an .ipynb with the same cells, and vice versa")
    p.add_argument("paths", nargs="+", help="folders or files")
    p.set_defaults(func=_cmd_check_pairs)
    p = sub.add_parser("lab-settings", help="JupyterLab settings: Markdown rendered, widgets saved safely (merges overrides.json)")
    p.add_argument("--prefix", default=None, help="environment prefix (default: this interpreter's, sys.prefix)")
    p.set_defaults(func=_cmd_lab_settings)
    p = sub.add_parser("install-kernel", help="register the course kernel 'dlcourse' in this environment")
    p.add_argument("--prefix", default=None, help="environment prefix (default: this interpreter's, sys.prefix)")
    p.set_defaults(func=_cmd_install_kernel)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
