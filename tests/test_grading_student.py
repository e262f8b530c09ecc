"""The grader as an honest student meets it: no false failures for ordinary notebooks, feedback that names the
right mistake and the input that broke, exports graded, the grade command and its speed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlcourse.cli import main
from dlcourse.grading.grader import Grader
from dlcourse.grading.submission import SubmissionError

ROOT = Path(__file__).resolve().parents[1]
from grading_fixtures import a0_submissions as subs  # noqa: E402

FAST = dict(time_limit=10.0, cell_time_limit=30.0)

ORDINARY_IMPORTS = '''%matplotlib inline
import numpy as np
import scipy.special
import scipy.linalg
from scipy import stats
from collections import namedtuple

Point = namedtuple("Point", ["x", "y"], defaults=[0.0])
assert Point(1.0).y == 0.0 and abs(stats.norm.cdf(0.0) - 0.5) < 1e-12 and scipy.special.expit(0.0) == 0.5'''

# log_prob written with scipy's logsumexp on NumPy, the import in the function's own cell
LOG_PROB_WITH_SCIPY = '''import math
import numpy as np
import scipy.special
import torch

def log_prob(x, weights, means, covs):
    d = x.shape[-1]
    L = torch.linalg.cholesky(covs)
    residual = x.unsqueeze(1) - means
    white = torch.linalg.solve_triangular(L, residual.unsqueeze(-1), upper=False).squeeze(-1)
    logdet = 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    log_normal = -0.5 * white.square().sum(-1) - 0.5 * logdet - 0.5 * d * math.log(2 * math.pi)
    terms = (torch.log(weights) + log_normal).detach().double().numpy()
    return torch.from_numpy(scipy.special.logsumexp(terms, axis=-1)).to(x.dtype)'''

OTHER_MAGICS = [
    ("start", "%timeit -n 5 sum(range(10))\nimport math"),
    ("start", "%%time\ntotal = sum(range(100))"),
    ("start", "%load_ext autoreload\n%autoreload 2"),
    ("start", "%config InlineBackend.figure_format = 'retina'\n%env DEMO_FLAG=1"),
]


def _grade(tmp_path, text, name="submission.ipynb", **kwargs):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return Grader(**{**FAST, **kwargs}).grade(path)


def _by_id(result):
    return {q.id: q for q in result.questions}


def test_scipy_namedtuple_and_magics_score_full_marks(tmp_path):
    text = subs.build({"log_prob": LOG_PROB_WITH_SCIPY}, [("start", ORDINARY_IMPORTS)] + OTHER_MAGICS)
    result = _grade(tmp_path, text, hidden=True)
    assert result.score == result.max_score, [(q.id, q.message) for q in result.questions if not q.passed]
    assert [c.message for c in result.cells] == []  # no note about any of those cells


def test_shell_escapes_are_skipped_with_a_note_and_the_cell_still_runs(tmp_path):
    text = subs.build(extra_cells=[("start", "!pip install scipy\n%pip install numpy\nimport math\nFLAG = 1")])
    result = _grade(tmp_path, text)
    assert result.score == result.max_score
    notes = [c.message for c in result.cells]
    assert any("`!pip install scipy` was not run" in n for n in notes), notes
    assert any("`%pip install numpy` was not run" in n for n in notes), notes
    assert all(c.status == "ok" for c in result.cells)


def test_a_failing_call_names_its_input(tmp_path):
    broken = subs.answers()["sample_gaussian"].replace("return mean + z @ L.T", "return mean + z @ L.T[:1]")
    q = _by_id(_grade(tmp_path, subs.build({"sample_gaussian": broken})))["q2_gaussian"]
    assert q.status == "failed"
    assert "The test called sample_gaussian as `got = sample_gaussian(mean, cov, torch.zeros(3, 2))`" in q.message
    assert "mean = a tensor of shape (2,) (float32)" in q.message and "z = a tensor of shape (3, 2)" in q.message


def test_hidden_calls_name_inputs_but_never_quote_the_hidden_line(tmp_path):
    from dlcourse.grading.cli import hidden_texts

    # passes the public tests (z has 2 columns), breaks on the hidden float64 case... by raising on float64
    picky = subs.answers()["sample_gaussian"].replace(
        "    L = torch.linalg.cholesky(cov)", "    assert z.dtype == torch.float32, 'only float32'\n"
                                             "    L = torch.linalg.cholesky(cov)")
    q = _by_id(_grade(tmp_path, subs.build({"sample_gaussian": picky}), hidden=True))["q2_gaussian"]
    assert q.status == "failed" and "AssertionError: only float32" in q.message
    assert "z = a tensor of shape (4, 2) (float64)" in q.message and " as `" not in q.message
    assert not [line for line in hidden_texts() if line in q.message]


def test_a_missing_function_blames_the_cell_with_its_def(tmp_path):
    broken = subs.answers()["score"].replace("def score(x, weights, means, covs):",
                                             "import not_installed_anywhere_42\n\ndef score(x, weights, means, covs):")
    text = subs.build({"score": broken}, [("start", "1 / 0")])  # an earlier, unrelated failing cell
    q = _by_id(_grade(tmp_path, text))["q5_score"]
    assert "does not define 'score'" in q.message
    assert "which defines it, did not run cleanly" in q.message and "not_installed_anywhere_42" in q.message
    assert "ZeroDivisionError" not in q.message
    gone = _by_id(_grade(tmp_path, subs.build({"score": "# deleted"}), name="gone.ipynb"))["q5_score"]
    assert "no cell has `def score`" in gone.message


def test_a_graded_function_redefined_after_its_test_gets_a_warning(tmp_path):
    scratch = "def sample_components(weights, u):\n    return u.long()  # an experiment, left in"
    text = subs.build(extra_cells=[("end", scratch)])
    result = _grade(tmp_path, text)
    assert any("redefines sample_components after its test" in n for n in result.notes), result.notes
    assert not _by_id(result)["q1_components"].passed  # the last definition is graded, as the note says


def _jupytext_export(text: str, keep_metadata: bool) -> str:
    import jupytext
    import nbformat

    nb = nbformat.reads(text, as_version=4)
    if not keep_metadata:
        nb.metadata = {}
        for cell in nb.cells:
            cell.metadata = {}
    return jupytext.writes(nb, fmt="py:percent")


def _nbconvert_export(text: str) -> str:
    import nbformat
    from nbconvert import PythonExporter

    body, _ = PythonExporter().from_notebook_node(nbformat.reads(text, as_version=4))
    return body


@pytest.mark.parametrize("how", ["jupytext_with_metadata", "jupytext_without_metadata", "nbconvert"])
def test_py_exports_are_graded(tmp_path, how):
    text = subs.build(subs.with_bugs({"score": subs.BUGS["score"][0]}), [("start", "%matplotlib inline")])
    export = {"jupytext_with_metadata": lambda: _jupytext_export(text, True),
              "jupytext_without_metadata": lambda: _jupytext_export(text, False),
              "nbconvert": lambda: _nbconvert_export(text)}[how]()
    result = _grade(tmp_path, export, name="mine.py")
    assert result.assignment == "a0_sampling"
    assert result.score == 8, [(q.id, q.message) for q in result.questions if not q.passed]
    assert [q.id for q in result.questions if not q.passed] == ["q5_score"]
    assert not [c for c in result.cells if c.status != "ok"]  # the test cells of the export did not run


def test_an_export_that_cannot_be_placed_suggests_master(tmp_path):
    path = tmp_path / "notes.py"
    path.write_text("# just some notes\nx = 1\n")
    with pytest.raises(SubmissionError, match=r"pass --master assignments/NAME\.ipynb"):
        Grader().grade(path)
    # with --master assignments/NAME.ipynb (what a student has), it is graded against the public tests
    result = Grader(master=ROOT / "assignments" / "a0_sampling.ipynb", **FAST).grade(path)
    assert result.assignment == "a0_sampling" and result.score == 0


def test_cli_master_from_assignments(tmp_path, capsys):
    sub = tmp_path / "mine.py"
    sub.write_text(_jupytext_export(subs.build(), keep_metadata=False))
    assert main(["grade", str(sub), "--master", str(ROOT / "assignments" / "a0_sampling.ipynb")]) == 0
    assert "10/10" in capsys.readouterr().out


def test_grade_help_is_fast_and_says_what_it_needs():
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "dlcourse.cli", "grade", "--help"], capture_output=True, text=True,
                         cwd=ROOT)
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    assert ".venv/bin/dlcourse grade" in " ".join(out.stdout.split())
    assert "--no-sandbox" in out.stdout and "--budget" in out.stdout
    assert elapsed < 30  # measured, not asserted tightly: a loaded machine varies


@pytest.mark.parametrize("path", ["course/grading.md", "course/README.md", "lectures/00_welcome.py",
                                  "solutions/a0_sampling.py", "solutions/a1_score_matching.py",
                                  "solutions/a2_score_sdes.py", "solutions/a3_masked_diffusion.py",
                                  "solutions/a4_gail.py"])
def test_one_way_of_writing_the_grade_command(path):
    """Always `.venv/bin/dlcourse grade ...` (course/grading.md says once what it needs); a student checks
    `assignments/NAME.ipynb`."""
    import re

    text = (ROOT / path).read_text(encoding="utf-8")
    uses = [m.start() for m in re.finditer(r"dlcourse grade\b", text)]
    assert uses, path
    for at in uses:
        assert text[max(0, at - 10):at] == ".venv/bin/", f"{path}: {text[max(0, at - 30):at + 40]!r}"
    if path.startswith(("solutions/", "lectures/")):
        assert re.search(r"\.venv/bin/dlcourse grade assignments/\w+\.ipynb", text), path


def test_public_check_of_an_untouched_student_version_is_quick(tmp_path):
    """A single public check, with the command as a student types it (wall time includes starting Python and
    the worker); the goal is 5 s on an idle 2-core machine, asserted loosely here because CI machines are busy."""
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "dlcourse.cli", "grade", "assignments/a0_sampling.ipynb", "--json"],
                         capture_output=True, text=True, cwd=ROOT)
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["score"] == 0 and all(q["status"] == "not implemented" for q in data["questions"])
    assert elapsed < 60, elapsed
