"""Reading a submission: a structural check of the file before anything of it runs.

A submission is untrusted data. `read_submission` accepts a notebook (``.ipynb``, nbformat 4) or a ``.py`` export
of one (jupytext percent or light format, or nbconvert's ``# In[ ]:`` script) and returns plain `Cell` records,
or raises `SubmissionError` with one line that says what is wrong. It never executes anything and does not use
nbformat's validator (slow on pathological input); instead it checks, with fixed budgets:

- the file is a regular file, not a symbolic link, at most `MAX_SUBMISSION_BYTES`;
- the JSON parses (no deeper than Python's recursion limit) into a dict with a list of at most `MAX_CELLS`
  cells, each a dict with a known ``cell_type``, a ``source`` that is text (a string or a list of strings), a
  ``metadata`` dict, each code cell at most `MAX_CELL_CHARS` and all of them together at most `MAX_CODE_CHARS`;
- the assignment name in ``metadata.dlcourse.assignment``, if any, is a plain name: `ASSIGNMENT_NAME_RE`
  (letters, digits, ``_`` and ``-``); it is a *name*, looked up in the course's ``solutions/`` folder, never a
  path (`check_name`).

`infer_assignment` guesses the assignment of an export without metadata from the functions it defines.
"""

from __future__ import annotations

import ast
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DlcourseError

__all__ = ["SubmissionError", "Cell", "Submission", "read_submission", "check_name", "infer_assignment",
           "top_level_names", "defined_functions", "strip_magics", "normalise_source", "ASSIGNMENT_NAME_RE", "MAX_SUBMISSION_BYTES",
           "MAX_CELLS", "MAX_CELL_CHARS", "MAX_CODE_CHARS"]

ASSIGNMENT_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
MAX_SUBMISSION_BYTES = 64 * 2**20  # notebooks with many figures are large; their code is small
MAX_CELLS = 2000
MAX_CELL_CHARS = 1_000_000
MAX_CODE_CHARS = 4_000_000
_CELL_TYPES = ("code", "markdown", "raw")
_NBCONVERT_MARK = re.compile(r"^# In\[[ 0-9]*\]:\s*$", re.M)
_PERCENT_MARK = re.compile(r"^# %%", re.M)


class SubmissionError(DlcourseError):
    """The submission cannot be graded as it is (not a notebook, malformed, a link, an odd assignment name)."""


@dataclass(frozen=True)
class Cell:
    """One cell: its position in the notebook (0-based), kind, text, and for nbgrader cells its grade_id."""

    index: int
    kind: str
    source: str
    grade_id: str | None = None
    is_test: bool = False
    tags: tuple[str, ...] = ()


@dataclass
class Submission:
    """What the grader uses of a submission file: its bytes' sha256 comes from the caller."""

    path: Path
    cells: list[Cell]
    declared: str | None  # metadata.dlcourse.assignment, checked by check_name
    fmt: str  # "ipynb", "jupytext" or "script"
    notes: list[str] = field(default_factory=list)

    @property
    def code_cells(self) -> list[Cell]:
        return [c for c in self.cells if c.kind == "code"]


def check_name(name: object, where: str = "the notebook") -> str:
    """``name`` if it is a plain assignment name, else `SubmissionError` (a name is never a path)."""
    if not isinstance(name, str):
        raise SubmissionError(f"{where} gives its assignment as a {type(name).__name__}, not a name")
    if not ASSIGNMENT_NAME_RE.match(name):
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise SubmissionError(f"{where} names its assignment {shown!r}, which is not a plain name (letters, digits, "
                              "'_' and '-' only)")
    return name


def _text(value: object, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    raise SubmissionError(f"{where} is a {type(value).__name__}, not text: the notebook is malformed (open and save it "
                          "in Jupyter)")


def _declared(metadata: object) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise SubmissionError(f"the notebook's metadata is a {type(metadata).__name__}, not a mapping")
    dl = metadata.get("dlcourse")
    if dl is None:
        return None
    if not isinstance(dl, dict):
        raise SubmissionError(f"the notebook's metadata.dlcourse is a {type(dl).__name__}, not a mapping")
    name = dl.get("assignment")
    return None if name is None else check_name(name)


def _cells_from_json(data: object) -> tuple[list[Cell], str | None]:
    if not isinstance(data, dict):
        raise SubmissionError(f"the file is JSON but not a notebook (its top level is a {type(data).__name__})")
    version = data.get("nbformat", 4)
    if version != 4:
        raise SubmissionError(f"the notebook is in format {version!r}; the grader reads format 4 (open and save it in "
                              "a current Jupyter)")
    raw_cells = data.get("cells")
    if not isinstance(raw_cells, list):
        raise SubmissionError("the notebook has no list of cells")
    if len(raw_cells) > MAX_CELLS:
        raise SubmissionError(f"the notebook has {len(raw_cells):,} cells; the grader accepts at most {MAX_CELLS:,}")
    cells: list[Cell] = []
    code_chars = 0
    for i, c in enumerate(raw_cells):
        where = f"cell {i + 1}"
        if not isinstance(c, dict):
            raise SubmissionError(f"{where} is a {type(c).__name__}, not a cell: the notebook is malformed")
        kind = c.get("cell_type")
        if kind not in _CELL_TYPES:
            raise SubmissionError(f"{where} has cell_type {str(kind)[:40]!r}: the notebook is malformed")
        source = _text(c.get("source", ""), f"{where}'s source")
        meta = c.get("metadata", {})
        if not isinstance(meta, dict):
            raise SubmissionError(f"{where}'s metadata is a {type(meta).__name__}, not a mapping")
        nbg = meta.get("nbgrader")
        nbg = nbg if isinstance(nbg, dict) else {}
        tags = meta.get("tags")
        tags = tuple(t for t in tags if isinstance(t, str))[:20] if isinstance(tags, list) else ()
        grade_id = nbg.get("grade_id") if isinstance(nbg.get("grade_id"), str) else None
        is_test = kind == "code" and bool(nbg.get("grade")) and not bool(nbg.get("solution"))
        if kind == "code":
            if len(source) > MAX_CELL_CHARS:
                raise SubmissionError(f"{where} has {len(source):,} characters of code; the grader accepts at most "
                                      f"{MAX_CELL_CHARS:,} per cell")
            code_chars += len(source)
            if code_chars > MAX_CODE_CHARS:
                raise SubmissionError(f"the notebook has more than {MAX_CODE_CHARS:,} characters of code")
        cells.append(Cell(i, kind, source, grade_id, is_test, tags))
    return cells, _declared(data.get("metadata"))


def _cells_from_script(text: str) -> list[Cell]:
    """nbconvert's script export: code cells after ``# In[ ]:`` lines. The markdown cells became comment lines
    between them; those at the end of a chunk belong to the next cell's introduction and are dropped."""
    cells = []
    for i, part in enumerate(_NBCONVERT_MARK.split(text)[1:]):
        lines = part.strip("\n").split("\n")
        while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("#")):
            lines.pop()
        if lines:
            cells.append(Cell(i, "code", "\n".join(lines)))
    return cells


def _cells_from_py(text: str) -> tuple[list[Cell], str | None, str]:
    if _NBCONVERT_MARK.search(text) and not _PERCENT_MARK.search(text):
        return _cells_from_script(text), None, "script"
    import jupytext

    try:
        nb = jupytext.reads(text, fmt="py:percent" if _PERCENT_MARK.search(text) else "py:light")
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same problem for the user
        detail = " ".join(str(exc).split())[:200]
        raise SubmissionError(f"the .py file could not be read as a notebook ({type(exc).__name__}: {detail})") \
            from None
    data = {"nbformat": 4, "metadata": dict(nb.metadata),
            "cells": [{"cell_type": c.cell_type, "source": c.source, "metadata": dict(c.metadata)} for c in nb.cells]}
    cells, declared = _cells_from_json(data)
    return cells, declared, "jupytext"


def read_submission(path: str | Path) -> tuple[Submission, bytes]:
    """The checked cells of a submission and its bytes (read once); `SubmissionError` if it cannot be graded."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except OSError:
        raise SubmissionError("no such file") from None
    if stat.S_ISLNK(st.st_mode):
        raise SubmissionError("is a symbolic link; hand in the notebook itself (the grader never follows links)")
    if not stat.S_ISREG(st.st_mode):
        raise SubmissionError("is not a regular file")
    if st.st_size > MAX_SUBMISSION_BYTES:
        raise SubmissionError(f"is {st.st_size / 2**20:.0f} MiB; the grader reads notebooks of at most "
                              f"{MAX_SUBMISSION_BYTES // 2**20} MiB (clear the outputs)")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        raw = f.read(MAX_SUBMISSION_BYTES + 1)
    if len(raw) > MAX_SUBMISSION_BYTES:
        raise SubmissionError(f"is larger than {MAX_SUBMISSION_BYTES // 2**20} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmissionError("is not UTF-8 text, so not a notebook") from None
    if path.suffix == ".py":
        cells, declared, fmt = _cells_from_py(text)
    else:
        try:
            data = json.loads(text)
        except RecursionError:
            raise SubmissionError("is not a readable notebook (its JSON is nested too deeply)") from None
        except ValueError as exc:
            raise SubmissionError(f"is not a readable notebook (invalid JSON: {str(exc)[:120]})") from None
        cells, declared = _cells_from_json(data)
        fmt = "ipynb"
    return Submission(path, cells, declared, fmt), raw


# --------------------------------------------------------------------------------------------------------------
# what a cell defines


def strip_magics(source: str) -> str:
    """Python of a cell for static analysis: IPython magics and shell lines dropped (a cell magic: all of it)."""
    if source.lstrip().startswith("%%"):
        return ""
    return "\n".join(line for line in source.split("\n") if not line.lstrip().startswith(("%", "!")))


def top_level_names(source: str) -> set[str]:
    """Names a cell binds at its top level (def, class, assignments, imports); empty if it does not parse."""
    try:
        tree = ast.parse(strip_magics(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    names: set[str] = set()

    def targets(node):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                targets(elt)
        elif isinstance(node, ast.Starred):
            targets(node.value)

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                targets(t)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets(node.target)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    names.add((alias.asname or alias.name).split(".")[0])
    return names


def defined_functions(source: str) -> set[str]:
    """Names of the functions a cell defines at its top level."""
    try:
        tree = ast.parse(strip_magics(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def normalise_source(source: str) -> str:
    """A cell's code for comparison with a test cell: no comment-only or blank lines, no trailing spaces (exports
    turn markdown into comments next to the code)."""
    return "\n".join(line.rstrip() for line in source.strip().split("\n")
                     if line.strip() and not line.lstrip().startswith("#"))


def infer_assignment(sub: Submission, functions: dict[str, set[str]]) -> str | None:
    """The assignment whose graded functions the submission defines (most of them, and more than any other),
    from ``functions``: {assignment name: names of its solution functions}; None if it is not clear."""
    defined: set[str] = set()
    for c in sub.code_cells:
        defined |= defined_functions(c.source)
    scores = []
    for name, funcs in functions.items():
        if funcs:
            scores.append((len(defined & funcs) / len(funcs), name))
    scores.sort(reverse=True)
    if not scores or scores[0][0] < 0.5 or (len(scores) > 1 and scores[1][0] == scores[0][0]):
        return None
    return scores[0][1]
