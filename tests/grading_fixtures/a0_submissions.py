"""Submissions of assignment a0 for the grader's tests, built from the committed student version.

`build(solutions=..., extra_cells=...)` returns the text of a notebook: the student version of a0 with each
solution cell filled in (the master's answer, optionally with a deliberate bug) and extra cells inserted. Not
an ``.ipynb`` on disk: ``pytest --nbval`` would try to run it.
"""

from __future__ import annotations

import copy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MASTER = ROOT / "solutions" / "a0_sampling.py"
STUDENT = ROOT / "assignments" / "a0_sampling.ipynb"

# One deliberate bug per question: {solution grade_id: (old, new)} applied to the master's answer; and the
# question it breaks, with a word the grader's message must contain (the symptom).
BUGS = {
    "sample_components": (("right=True", "right=False"), "q1_components", "off-by-one"),
    "sample_gaussian": (("z @ L.T", "z @ L"), "q2_gaussian", "covariance"),
    "sample_mixture": (('torch.einsum("nij,nj->ni", L[k], z)', "z @ L[0].T"), "q3_mixture", "covariance"),
    "log_prob": ((" - 0.5 * d * math.log(2 * math.pi)", ""), "q4_log_prob", "log(2π)"),
    "score": (("return -(resp", "return (resp"), "q5_score", "opposite sign"),
}

# Bugs that only the hidden tests see: naive log-sum-exp and naive responsibilities underflow far away.
NAIVE = {
    "log_prob": ("torch.logsumexp(torch.log(weights) + log_normal, dim=-1)",
                 "torch.log((weights * torch.exp(log_normal)).sum(-1))"),
    "score": ("resp = torch.softmax(log_joint, dim=-1)",
              "resp = torch.exp(log_joint) / torch.exp(log_joint).sum(-1, keepdim=True)"),
}


def answers() -> dict[str, str]:
    """The master's solution cells with the markers removed: {grade_id: source}."""
    from dlcourse.grading.markers import load_assignment

    nb = load_assignment(MASTER).nb
    out = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            lines = [line for line in cell.source.split("\n") if line.strip() not in ("### BEGIN SOLUTION",
                                                                                      "### END SOLUTION")]
            out[meta["grade_id"]] = "\n".join(lines)
    return out


def build(solutions: dict[str, str] | None = None, extra_cells: list[tuple[str, str]] = (),
          solved: bool = True) -> str:
    """The notebook text. ``solutions`` overrides solution cells by grade_id; ``extra_cells`` are (where, source)
    with where "start" (after the first cell), "end", or "after:<grade_id>"."""
    import nbformat

    nb = nbformat.read(str(STUDENT), as_version=4)
    filled = answers() if solved else {}
    filled.update(solutions or {})
    cells = []
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and gid in filled:
            cell = copy.deepcopy(cell)
            cell.source = filled[gid]
        cells.append(cell)
        for where, src in extra_cells:
            if where == f"after:{gid}" and gid is not None:
                cells.append(nbformat.v4.new_code_cell(src))
    for where, src in extra_cells:
        if where == "start":
            cells.insert(1, nbformat.v4.new_code_cell(src))
        elif where == "end":
            cells.append(nbformat.v4.new_code_cell(src))
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:02d}"
    nb.cells = cells
    return nbformat.writes(nb, version=4)


def with_bugs(bugs: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Solution sources with the given (old, new) replacements; each must apply."""
    sols = answers()
    out = {}
    for gid, (old, new) in bugs.items():
        assert old in sols[gid], f"bug for {gid} does not apply: {old!r} not in the master's answer"
        out[gid] = sols[gid].replace(old, new)
    return out


# ---------------------------------------------------------------------------------------------------------------
# adversarial code

INFINITE_LOOP_CELL = "while True:\n    pass"
INFINITE_LOOP_FUNCTION = '''def sample_gaussian(mean, cov, z):
    while True:
        pass'''

SYS_EXIT_CELL = "import sys\nsys.exit(3)"
SYS_EXIT_FUNCTION = '''def sample_components(weights, u):
    import sys
    sys.exit(0)'''

OS_EXIT_CELL = "import os\nos._exit(0)"
OS_EXIT_FUNCTION = '''import math
import torch

def score(x, weights, means, covs):
    import os
    os._exit(1)'''

HUGE_OUTPUT_CELL = 'for i in range(20_000):\n    print("spam " * 20)'
HUGE_OUTPUT_FUNCTION = '''import torch

def sample_components(weights, u):
    print("x" * 3_000_000)
    cdf = torch.cumsum(weights / weights.sum(), dim=0).to(u.dtype)
    return torch.searchsorted(cdf, u, right=True).clamp(max=weights.numel() - 1)'''

PATCH_CHECKER_CELL = '''import torch
import dlcourse.grading
import dlcourse.grading.checks as checks

def check_close(*args, **kwargs):
    return None

for mod in (checks, dlcourse.grading):
    for name in dir(mod):
        if name.startswith("check_"):
            setattr(mod, name, check_close)
checks.CheckFailed = type("CheckFailed", (Exception,), {})
torch.isclose = lambda a, b, **kw: torch.ones_like(a, dtype=torch.bool)
torch.allclose = lambda *a, **kw: True
import builtins
builtins.AssertionError = type("AssertionError", (Exception,), {})
try:
    import dlcourse.grading.grader as grader
    grader.Grader.grade = lambda self, path: None
except Exception:
    pass'''

# Reads the master (and the repository's history) from disk and executes its answers: would score 10/10.
READ_MASTER_CELL = '''import json, os, glob
found = {{}}
candidates = [{master!r}] + glob.glob(os.path.join({root!r}, "solutions", "*")) + [{root!r} + "/.git/HEAD"]
for path in candidates:
    try:
        with open(path) as f:
            found[path] = f.read()
    except Exception as exc:
        found[path] = None
text = found.get({master!r})
if text:
    exec(text.replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", ""))
secret = [p for p, v in found.items() if v]'''

# Tries to write a perfect result where the grader writes its results, and to modify the submission itself.
EDIT_RESULT_CELL = '''import json, os
targets = {targets!r}
report = []
for path in targets:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(json.dumps({{"score": 10, "max_score": 10}}))
        report.append("wrote " + path)
    except Exception as exc:
        report.append(type(exc).__name__)
try:
    with open({submission!r}, "a") as f:
        f.write("tampered")
except Exception as exc:
    report.append(type(exc).__name__)
try:
    os.remove({submission!r})
except Exception as exc:
    report.append(type(exc).__name__)'''

BLOCKED_FUNCTIONS = '''import importlib
import torch
import dlcourse.data.toy2d as toy2d
from dlcourse.data.toy2d import GaussianMixture

def log_prob(x, weights, means, covs):
    return GaussianMixture(weights, means, covs, dtype=x.dtype).log_prob(x)

def score(x, weights, means, covs):
    try:
        importlib.reload(toy2d)  # a fresh copy of the module would have the real method back
    except Exception:
        pass
    return toy2d.GaussianMixture(weights, means, covs, dtype=x.dtype).score(x)'''

UNRELATED_FAILURES = [("start", "import not_a_module_anywhere_123"), ("start", "1 / 0"),
                      ("end", "raise RuntimeError('a cell that fails after all the functions')")]

# Writes a forged frame header (a 1 TiB message) straight into the pipe the worker answers on.
FORGED_REPLY_FUNCTION = '''import os, stat, struct

def sample_components(weights, u):
    for fd in range(3, 64):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, struct.pack(">Q", 2**40))
        except OSError:
            pass
    return torch.zeros(u.shape, dtype=torch.int64)'''
