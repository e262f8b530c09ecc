"""Assignment masters: parse their nbgrader markers, check them, and make the student version.

How to write a master (``solutions/aN_topic.py``, a jupytext percent notebook; see ``solutions/a0_sampling.py``)
------------------------------------------------------------------------------------------------------------

1. Header: the usual jupytext header (kernelspec ``dlcourse``) plus a ``dlcourse`` block::

       #   dlcourse:
       #     assignment: a1_score_matching       # = the file stem
       #     blocked:                            # package references students re-implement: disabled in their code
       #     - dlcourse.score.losses.dsm_loss    #   while grading (module.function or module.Class.method)
       #     time_limit: 20                      # seconds per question (optional)
       #     cell_time_limit: 60                 # seconds per notebook cell of the submission (optional)

2. One setup cell tagged ``grading-setup`` (``# %% tags=["grading-setup"]``) with the imports the tests need
   (``import torch``, ``from dlcourse.grading.checks import *``, reference objects). The grader runs it, taken
   from the master, in its own trusted process.
3. Solution cells: ``# %% nbgrader={"grade": false, "grade_id": "sample_components", "locked": false,
   "solution": true}``. Inside a function body put the answer between ``### BEGIN SOLUTION`` and
   ``### END SOLUTION``; the student version keeps the signature and docstring and gets
   ``raise NotImplementedError("<function> is not implemented yet: ...")`` instead.
4. Test cells, one per question: ``# %% nbgrader={"grade": true, "grade_id": "q1_components", "locked": true,
   "points": 2, "solution": false}``. Public checks first; then ``### BEGIN HIDDEN TESTS`` ...
   ``### END HIDDEN TESTS`` (removed from the student version; run by ``dlcourse grade --hidden``). A test cell
   must be self-contained: it may use the setup cell's names and the student's functions and variables (called
   through the grader) but no name defined by another test cell. Use `dlcourse.grading.checks` so a failure
   says *what* is wrong. Every student function is called with picklable arguments (tensors, numbers, lists);
   what it returns comes back as tensors / numbers / lists / dicts only.
5. Keep other code cells cheap (the grader runs them for every submission) and free of calls to the blocked
   references (they fail while grading). A question's time limit covers its whole test cell, the test's own
   work included; each call into the student's process costs about a millisecond.
6. Execute with ``python -m dlcourse.notebooks execute solutions/aN.py`` (nbval runs the master with its hidden
   tests), run ``dlcourse assign`` (writes ``assignments/aN.ipynb``), and check with
   ``dlcourse grade solutions/aN.py --hidden`` (full marks) and ``dlcourse grade assignments/aN.ipynb`` (0, "not
   implemented yet"). ``tests/test_grading.py`` checks both for every master in solutions/.

Reference
---------

- **solution cells**: cell metadata ``nbgrader={"solution": true, "grade": false, "grade_id": ..., ...}``; inside,
  the code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` is the answer. In the student version it
  becomes ``raise NotImplementedError("...")`` at the same indentation, naming the enclosing function, so the
  signature and docstring stay. In a markdown cell the region becomes "YOUR ANSWER HERE".
- **test cells**: ``nbgrader={"grade": true, "grade_id": "q1_...", "points": 2, "locked": true, ...}``. One test
  cell is one question. The part between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` is removed from
  the student version and runs only when an instructor grades with ``--hidden``.
- **the grading setup cell**: tagged ``grading-setup`` (imports, checks); the grader runs it, from the master,
  in its own process before the tests. Test cells may use the names it defines, the student's functions and
  variables (looked up in the student's notebook), and nothing else from the notebook.
- **notebook metadata** (the jupytext header): ``dlcourse: {assignment: aN_topic, time_limit: 20,
  cell_time_limit: 60, blocked: [dotted.path.of.a.reference, ...]}``. ``blocked`` lists the package functions a
  student is asked to re-implement; they are disabled while the student's code is graded (for the whole
  submission, not only during one question). A test cell may also list ``"blocks": [...]`` in its nbgrader
  metadata; those are added to the notebook's list.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DlcourseError
from ..notebooks import _LANGUAGE_INFO

__all__ = [
    "BEGIN_SOLUTION",
    "END_SOLUTION",
    "BEGIN_HIDDEN",
    "END_HIDDEN",
    "SETUP_TAG",
    "MasterError",
    "Question",
    "Assignment",
    "read_notebook",
    "parse_assignment",
    "load_assignment",
    "strip_hidden",
    "hidden_regions",
    "solution_regions",
    "stub_solutions",
    "student_version",
    "is_test_cell",
]

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
SETUP_TAG = "grading-setup"
HIDDEN_ONLY_NOTE = "# This question is graded by hidden tests only; they run when your work is graded."

DEFAULT_TIME_LIMIT_S = 20.0
DEFAULT_CELL_TIME_LIMIT_S = 60.0

_DEF_RE = re.compile(r"^(\s*)(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(")
_GRADE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,60}$")


class MasterError(DlcourseError):
    """A master's markers or metadata are inconsistent; the message names the cell."""


@dataclass(frozen=True)
class Question:
    """One test cell: ``grade_id``, ``points``, its public test code and its code with the hidden tests."""

    grade_id: str
    points: float
    public: str
    full: str
    cell_index: int

    @property
    def has_hidden(self) -> bool:
        return self.full != self.public

    def source(self, hidden: bool) -> str:
        return self.full if hidden else self.public


@dataclass
class Assignment:
    """A parsed master (``kind == "master"``) or student version (``kind == "student"``, no hidden tests)."""

    name: str
    path: Path
    kind: str
    nb: Any
    questions: list[Question]
    setup_sources: list[str]
    blocked: list[str] = field(default_factory=list)
    time_limit: float = DEFAULT_TIME_LIMIT_S
    cell_time_limit: float = DEFAULT_CELL_TIME_LIMIT_S

    @property
    def max_points(self) -> float:
        return sum(q.points for q in self.questions)

    @property
    def functions(self) -> set[str]:
        """Names of the functions its solution cells define (what a student writes)."""
        from .submission import defined_functions

        names: set[str] = set()
        for cell in self.nb.cells:
            if cell.get("cell_type") == "code" and _is_solution_cell(cell):
                names |= defined_functions(cell.source)
        return names

    def question(self, grade_id: str) -> Question:
        for q in self.questions:
            if q.grade_id == grade_id:
                return q
        raise KeyError(grade_id)


# --------------------------------------------------------------------------------------------------------------
# reading


class _Node(dict):
    """A notebook, cell or metadata mapping read from JSON, with attribute access like nbformat's NotebookNode
    (reading an ``.ipynb`` this way avoids importing nbformat, whose dependencies take seconds to import)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


def _node(value: Any) -> Any:
    if isinstance(value, dict):
        return _Node((k, _node(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_node(v) for v in value]
    return value


def read_notebook(path: str | Path) -> Any:
    """A notebook from a jupytext percent ``.py`` or an ``.ipynb`` (nbformat v4; sources joined into strings)."""
    path = Path(path)
    if path.suffix == ".py":
        import jupytext

        return jupytext.read(str(path), fmt="py:percent")
    try:
        nb = _node(json.loads(path.read_text(encoding="utf-8")))
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            raise ValueError("no list of cells")
        for cell in nb["cells"]:
            if isinstance(cell.get("source"), list):
                cell["source"] = "".join(cell["source"])
            cell.setdefault("metadata", _Node())
    except Exception as exc:  # malformed JSON, not a notebook
        raise DlcourseError(f"{path}: not a readable notebook ({type(exc).__name__}: {exc})") from None
    return nb


def _nbgrader(cell: Any) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def is_test_cell(cell: Any) -> bool:
    meta = _nbgrader(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not bool(meta.get("solution"))


def _is_solution_cell(cell: Any) -> bool:
    return bool(_nbgrader(cell).get("solution"))


def _regions(source: str, begin: str, end: str, where: str) -> list[tuple[int, int]]:
    """(first, last) line indices of each begin..end region, markers included; checks nesting and pairing."""
    lines = source.split("\n")
    out: list[tuple[int, int]] = []
    start = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped == begin:
            if start is not None:
                raise MasterError(f"{where}: line {i + 1}: '{begin}' inside another one (line {start + 1})")
            start = i
        elif stripped == end:
            if start is None:
                raise MasterError(f"{where}: line {i + 1}: '{end}' without a '{begin}' before it")
            out.append((start, i))
            start = None
    if start is not None:
        raise MasterError(f"{where}: line {start + 1}: '{begin}' is never closed with '{end}'")
    return out


def hidden_regions(source: str, where: str = "cell") -> list[str]:
    """The code inside each hidden-tests region (markers excluded)."""
    lines = source.split("\n")
    return ["\n".join(lines[a + 1:b]) for a, b in _regions(source, BEGIN_HIDDEN, END_HIDDEN, where)]


def solution_regions(source: str, where: str = "cell") -> list[str]:
    """The code inside each solution region (markers excluded)."""
    lines = source.split("\n")
    return ["\n".join(lines[a + 1:b]) for a, b in _regions(source, BEGIN_SOLUTION, END_SOLUTION, where)]


def strip_hidden(source: str, where: str = "cell") -> str:
    """The public part of a test cell: hidden regions removed, trailing blank lines trimmed."""
    lines = source.split("\n")
    drop: set[int] = set()
    for a, b in _regions(source, BEGIN_HIDDEN, END_HIDDEN, where):
        drop.update(range(a, b + 1))
    kept = [line for i, line in enumerate(lines) if i not in drop]
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept)


def _without_hidden_markers(source: str, where: str) -> str:
    """The full test code (public and hidden) with the marker lines themselves removed."""
    lines = source.split("\n")
    markers: set[int] = set()
    for a, b in _regions(source, BEGIN_HIDDEN, END_HIDDEN, where):
        markers.update((a, b))
    return "\n".join(line for i, line in enumerate(lines) if i not in markers)


def stub_solutions(source: str, where: str = "cell", markdown: bool = False) -> str:
    """Replace each solution region with a stub at the region's indentation.

    Inside a function the stub is ``raise NotImplementedError("<function> is not implemented yet")``; at the top
    level of a cell it is the same with the cell's purpose left to the text; in markdown, "YOUR ANSWER HERE".
    """
    lines = source.split("\n")
    regions = _regions(source, BEGIN_SOLUTION, END_SOLUTION, where)
    out: list[str] = []
    pos = 0
    for a, b in regions:
        out.extend(lines[pos:a])
        indent = re.match(r"\s*", lines[a]).group(0)
        if markdown:
            out.append(f"{indent}YOUR ANSWER HERE")
        else:
            func = None
            for line in reversed(lines[:a]):
                m = _DEF_RE.match(line)
                if m and len(m.group(1)) < len(indent):
                    func = m.group(2)
                    break
            what = f"{func} is not implemented yet" if func else "this cell is not implemented yet"
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f'{indent}raise NotImplementedError("{what}: replace this line with your code")')
        pos = b + 1
    out.extend(lines[pos:])
    return "\n".join(out)


def _points(meta: dict, where: str) -> float:
    points = meta.get("points")
    if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
        raise MasterError(f"{where}: a test cell needs non-negative 'points' in its nbgrader metadata, got {points!r}")
    return float(points)


def parse_assignment(nb: Any, path: str | Path, name: str | None = None) -> Assignment:
    """Parse and check a master or a student version; raises `MasterError` naming the cell on any problem."""
    path = Path(path)
    meta = dict(nb.get("metadata", {}).get("dlcourse", {}) or {})
    name = name or meta.get("assignment") or path.stem
    questions: list[Question] = []
    setup: list[str] = []
    ids: dict[str, int] = {}
    any_solution = any_hidden = False
    for i, cell in enumerate(nb.cells):
        where = f"{path.name}: cell {i}"
        src = cell.source
        nbg = _nbgrader(cell)
        grade_id = nbg.get("grade_id")
        if nbg and (nbg.get("grade") or nbg.get("solution") or nbg.get("locked")):
            if not isinstance(grade_id, str) or not _GRADE_ID_RE.match(grade_id):
                raise MasterError(f"{where}: nbgrader cells need a grade_id of letters, digits, '_' or '-', got {grade_id!r}")
            if grade_id in ids:
                raise MasterError(f"{where}: grade_id {grade_id!r} is also used by cell {ids[grade_id]}")
            ids[grade_id] = i
        sol = _regions(src, BEGIN_SOLUTION, END_SOLUTION, where)
        hid = _regions(src, BEGIN_HIDDEN, END_HIDDEN, where)
        if sol and not _is_solution_cell(cell):
            raise MasterError(f"{where}: has '{BEGIN_SOLUTION}' but no nbgrader solution metadata "
                              '(nbgrader={"solution": true, "grade_id": ...})')
        if hid and not is_test_cell(cell):
            raise MasterError(f"{where}: has '{BEGIN_HIDDEN}' but is not a test cell "
                              '(nbgrader={"grade": true, "grade_id": ..., "points": ...})')
        any_solution |= bool(sol)
        any_hidden |= bool(hid)
        if is_test_cell(cell):
            if sol:
                raise MasterError(f"{where}: a test cell cannot also contain a solution region")
            public = strip_hidden(src, where)
            full = _without_hidden_markers(src, where)
            for label, code in (("public", public), ("hidden", full)):
                try:
                    ast.parse(code)
                except SyntaxError as exc:
                    raise MasterError(f"{where}: the {label} test code does not parse: {exc}") from None
            questions.append(Question(grade_id, _points(nbg, where), public, full, i))
        if cell.cell_type == "code" and SETUP_TAG in cell.get("metadata", {}).get("tags", []):
            setup.append(src)
    if not questions:
        raise MasterError(f"{path}: no test cells (nbgrader grade cells with points): nothing to grade")
    blocked = meta.get("blocked", []) or []
    if not isinstance(blocked, list) or not all(isinstance(b, str) and "." in b for b in blocked):
        raise MasterError(f"{path}: metadata dlcourse.blocked must be a list of dotted names, got {blocked!r}")
    blocked = list(blocked)
    for i, cell in enumerate(nb.cells):
        extra = _nbgrader(cell).get("blocks", []) or []
        if not isinstance(extra, list) or not all(isinstance(b, str) and "." in b for b in extra):
            raise MasterError(f"{path.name}: cell {i}: nbgrader 'blocks' must be a list of dotted names, got {extra!r}")
        blocked += [b for b in extra if b not in blocked]
    kind = "master" if (any_solution or any_hidden) else "student"
    return Assignment(
        name=str(name), path=path, kind=kind, nb=nb, questions=questions, setup_sources=setup, blocked=list(blocked),
        time_limit=float(meta.get("time_limit", DEFAULT_TIME_LIMIT_S)),
        cell_time_limit=float(meta.get("cell_time_limit", DEFAULT_CELL_TIME_LIMIT_S)),
    )


def load_assignment(path: str | Path) -> Assignment:
    """Read and parse a master (``.py`` or ``.ipynb``) or a student version (``.ipynb``)."""
    return parse_assignment(read_notebook(path), path)


# --------------------------------------------------------------------------------------------------------------
# the student version


def student_version(assignment: Assignment) -> Any:
    """The notebook students get: solutions stubbed, hidden tests removed, outputs cleared, stable cell ids,
    test and setup cells locked (not editable or deletable in Jupyter), no jupytext pairing."""
    import nbformat

    src_nb = assignment.nb
    cells = []
    for i, cell in enumerate(src_nb.cells):
        where = f"{assignment.path.name}: cell {i}"
        meta = copy.deepcopy(dict(cell.get("metadata", {})))
        for key in ("execution", "collapsed", "scrolled", "jupyter", "lines_to_next_cell"):
            meta.pop(key, None)
        nbg = meta.get("nbgrader", {})
        if (isinstance(nbg, dict) and nbg.get("locked")) or SETUP_TAG in meta.get("tags", []):
            meta["editable"] = False
            meta["deletable"] = False
        source = cell.source
        if cell.cell_type == "code":
            if is_test_cell(cell):
                source = strip_hidden(source, where)
                if not _has_code(source):
                    source = (source + "\n" if source.strip() else "") + HIDDEN_ONLY_NOTE
            source = stub_solutions(source, where)
            new = nbformat.v4.new_code_cell(source=source, metadata=meta)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(source=stub_solutions(source, where, markdown=True), metadata=meta)
        else:
            new = nbformat.v4.new_raw_cell(source=source, metadata=meta)
        cells.append(new)
    width = max(2, len(str(len(cells) - 1)))
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:0{width}d}"
    meta_in = src_nb.get("metadata", {})
    dl = copy.deepcopy(dict(meta_in.get("dlcourse", {}) or {}))
    dl["assignment"] = assignment.name
    dl["version"] = "student"
    metadata = {
        "dlcourse": dl,
        "kernelspec": copy.deepcopy(dict(meta_in.get("kernelspec") or {"display_name": "Python 3", "language": "python",
                                                                       "name": "python3"})),
        # what the course kernel reports, so JupyterLab does not mark a just-opened assignment modified
        "language_info": copy.deepcopy(_LANGUAGE_INFO),
    }
    nb = nbformat.v4.new_notebook(cells=cells, metadata=metadata)
    nb.nbformat, nb.nbformat_minor = 4, 5
    nbformat.validate(nb)
    return nb


def _has_code(source: str) -> bool:
    try:
        return bool(ast.parse(source).body)
    except SyntaxError:
        return True


def dumps(nb: Any) -> str:
    """Deterministic JSON: nbformat's layout (sorted keys, one-space indent), ending in a newline."""
    import nbformat

    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"
