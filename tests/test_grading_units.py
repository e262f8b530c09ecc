"""Units of the grading package: the markers and the student version, the checks' messages, the safe codec."""

import json
import math
import pickle
import struct

import nbformat
import pytest
import torch

from dlcourse.grading import checks, markers, protocol
from dlcourse.grading.checks import CheckFailed
from dlcourse.grading.grader import _free_names

# --------------------------------------------------------------------------------------------------------------
# markers

SOLUTION = '''def f(x):
    """Doubles x."""
    ### BEGIN SOLUTION
    y = 2 * x
    return y
    ### END SOLUTION'''

TEST = '''check_close(f(torch.ones(2)), 2 * torch.ones(2))
### BEGIN HIDDEN TESTS
check_close(f(torch.zeros(3)), torch.zeros(3))
### END HIDDEN TESTS'''


def _master(test=TEST, solution=SOLUTION, meta=None):
    nb = nbformat.v4.new_notebook()
    nb.metadata["dlcourse"] = {"assignment": "ax_tiny", "blocked": ["dlcourse.data.toy2d.GaussianMixture.score"],
                               **(meta or {})}
    nb.cells = [
        nbformat.v4.new_code_cell("import torch\nfrom dlcourse.grading.checks import check_close",
                                  metadata={"tags": ["grading-setup"]}),
        nbformat.v4.new_code_cell(solution, metadata={"nbgrader": {"solution": True, "grade": False,
                                                                   "grade_id": "f", "locked": False}}),
        nbformat.v4.new_code_cell(test, metadata={"nbgrader": {"grade": True, "grade_id": "q1", "points": 3,
                                                               "locked": True, "solution": False},
                                                  "lines_to_next_cell": 2}),
        nbformat.v4.new_markdown_cell("Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION",
                                      metadata={"nbgrader": {"solution": True, "grade": False, "grade_id": "why",
                                                             "locked": False}}),
    ]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hi")]
    return nb


def test_parse_and_student_version(tmp_path):
    a = markers.parse_assignment(_master(), tmp_path / "ax_tiny.py")
    assert a.kind == "master" and a.max_points == 3 and a.blocked == ["dlcourse.data.toy2d.GaussianMixture.score"]
    q = a.questions[0]
    assert q.has_hidden and "zeros(3)" in q.source(True) and "zeros(3)" not in q.source(False)
    assert "BEGIN HIDDEN" not in q.source(True)
    nb = markers.student_version(a)
    code = [c.source for c in nb.cells]
    assert code[1] == ('def f(x):\n    """Doubles x."""\n    # YOUR CODE HERE\n'
                       '    raise NotImplementedError("f is not implemented yet: replace this line with your code")')
    assert code[2] == "check_close(f(torch.ones(2)), 2 * torch.ones(2))"
    assert code[3] == "Why?\nYOUR ANSWER HERE"
    assert all(c.get("outputs", []) == [] for c in nb.cells)
    assert nb.cells[2].metadata["editable"] is False and "lines_to_next_cell" not in nb.cells[2].metadata
    assert [c.id for c in nb.cells] == ["cell-00", "cell-01", "cell-02", "cell-03"]
    assert nb.metadata["dlcourse"]["version"] == "student"
    again = markers.parse_assignment(nb, tmp_path / "ax_tiny.ipynb")
    assert again.kind == "student" and again.questions[0].source(True) == again.questions[0].source(False)
    assert markers.dumps(nb) == markers.dumps(markers.student_version(a))  # deterministic


def test_hidden_only_question_gets_a_note(tmp_path):
    test = "### BEGIN HIDDEN TESTS\ncheck_close(f(torch.zeros(3)), torch.zeros(3))\n### END HIDDEN TESTS"
    nb = markers.student_version(markers.parse_assignment(_master(test=test), tmp_path / "a.py"))
    assert nb.cells[2].source == markers.HIDDEN_ONLY_NOTE


def test_blocks_in_a_test_cell_are_added(tmp_path):
    nb = _master()
    nb.cells[2].metadata["nbgrader"]["blocks"] = ["dlcourse.data.toy2d.GaussianMixture.log_prob"]
    a = markers.parse_assignment(nb, tmp_path / "a.py")
    assert a.blocked == ["dlcourse.data.toy2d.GaussianMixture.score", "dlcourse.data.toy2d.GaussianMixture.log_prob"]


@pytest.mark.parametrize("solution, test, needle", [
    ("def f(x):\n    ### BEGIN SOLUTION\n    return x", TEST, "never closed"),
    ("def f(x):\n    return x\n    ### END SOLUTION", TEST, "without a '### BEGIN SOLUTION'"),
    (SOLUTION, "check(1)\n### BEGIN HIDDEN TESTS\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS", "inside another"),
    (SOLUTION, "check_close(1,\n### BEGIN HIDDEN TESTS\nx\n### END HIDDEN TESTS", "does not parse"),
])
def test_bad_markers_name_the_cell(tmp_path, solution, test, needle):
    with pytest.raises(markers.MasterError, match="cell") as info:
        markers.parse_assignment(_master(test=test, solution=solution), tmp_path / "a.py")
    assert needle in str(info.value)


def test_bad_metadata(tmp_path):
    nb = _master()
    nb.cells[2].metadata["nbgrader"]["points"] = "three"
    with pytest.raises(markers.MasterError, match="points"):
        markers.parse_assignment(nb, tmp_path / "a.py")
    nb = _master()
    nb.cells[1].metadata["nbgrader"]["grade_id"] = "q1"
    with pytest.raises(markers.MasterError, match="also used"):
        markers.parse_assignment(nb, tmp_path / "a.py")
    with pytest.raises(markers.MasterError, match="dotted"):
        markers.parse_assignment(_master(meta={"blocked": ["nodots"]}), tmp_path / "a.py")


def test_free_names():
    src = "import math as m\nx = f(y)\nfor i in range(3):\n    g(i, x, lambda t: t + z)\ndef h(a):\n    return a\n"
    assert _free_names(src) == ["f", "y", "g", "z"]


# --------------------------------------------------------------------------------------------------------------
# checks: messages that say what is wrong


def _message(fn, *args, **kwargs):
    with pytest.raises(CheckFailed) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_check_close_hints():
    e = torch.tensor([1.0, -2.0, 3.0])
    assert "opposite sign" in _message(checks.check_close, -e, e)
    assert "twice" in _message(checks.check_close, 2 * e, e)
    assert "log(2π)" in _message(checks.check_close, e + math.log(2 * math.pi), e)
    m = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert "transpose" in _message(checks.check_close, m.T, m)
    assert "shape (3, 1)" in _message(checks.check_close, e[:, None], e)
    assert "forget a `return`" in _message(checks.check_close, None, e)
    msg = _message(checks.check_close, torch.tensor([1.0, float("nan"), 3.0]), e)
    assert "not finite" in msg and "NaN" in msg and "index 1" in msg
    assert "It looks like my bug" in _message(checks.check_close, e + 1, e, mistakes={"my bug": e + 1})
    checks.check_close(e + 1e-7, e)


def test_check_equal_off_by_one_and_dtype():
    assert "off-by-one" in _message(checks.check_equal, torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3]))
    assert "integer values" in _message(checks.check_equal, torch.tensor([1.0]), torch.tensor([1]))
    assert ".long()" in _message(checks.check_dtype, torch.tensor([1.0]), torch.int64)


def test_statistical_checks():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 2, generator=gen, dtype=torch.float64)
    checks.check_mean_close(x, [0.0, 0.0], cov=torch.eye(2))
    checks.check_mean_close(x, [0.0, 0.0], std=1.0)
    checks.check_cov_close(x, torch.eye(2))
    checks.check_cov_close(x, torch.eye(2), reference=torch.randn(50000, 2, generator=gen, dtype=torch.float64))
    assert "mean" in _message(checks.check_mean_close, x + 0.1, [0.0, 0.0], cov=torch.eye(2))
    assert "covariance" in _message(checks.check_cov_close, 1.2 * x, torch.eye(2))
    with pytest.raises(TypeError, match="must not come from the samples"):
        checks.check_mean_close(x, [0.0, 0.0])  # a tolerance from the samples under test is not offered
    labels = torch.randint(0, 3, (20000,), generator=gen)
    checks.check_frequencies(labels, [1, 1, 1])
    assert "ignored" in _message(checks.check_frequencies, labels, [0.2, 0.3, 0.5])


def test_statistical_checks_take_error_bars_from_the_reference():
    """A sampler that ignores its noise but adds two huge outliers used to widen its own error bars enough to pass
    both checks; with the reference's error bars it fails both."""
    mean, cov = torch.tensor([1.0, -2.0]), torch.tensor([[2.0, 0.6], [0.6, 0.5]])
    bad = mean.expand(20000, 2).clone().double()
    bad[0], bad[1] = 1e6, -1e6
    assert "mean" in _message(checks.check_mean_close, bad + 0.05, mean, cov=cov)
    assert "covariance" in _message(checks.check_cov_close, bad, cov)
    # a mixture: error bars from reference draws (its fourth moments), so a correct sampler still passes
    w = torch.tensor([0.5, 0.5])
    centres = torch.tensor([[-4.0, 0.0], [4.0, 0.0]], dtype=torch.float64)

    def draw(n, seed):
        g = torch.Generator().manual_seed(seed)
        k = (torch.rand(n, generator=g) < w[1]).long()
        return centres[k] + 0.3 * torch.randn(n, 2, generator=g, dtype=torch.float64)

    true_cov = torch.diag(torch.tensor([16.0 + 0.09, 0.09], dtype=torch.float64))
    checks.check_cov_close(draw(20000, 1), true_cov, reference=draw(50000, 2))
    assert "covariance" in _message(checks.check_cov_close, 1.1 * draw(20000, 3), true_cov, reference=draw(50000, 2))


def test_every_matching_mistake_is_reported():
    e = torch.tensor([1.0, 2.0, 3.0])
    msg = _message(checks.check_close, 2 * e, e, mistakes={"the 1/2 is missing": 2 * e, "sigma instead": 2 * e,
                                                           "unrelated": e + 5})
    assert "the 1/2 is missing" in msg and "sigma instead" in msg and "unrelated" not in msg
    assert "they give the same values here" in msg
    one = _message(checks.check_close, 2 * e, e, mistakes={"the 1/2 is missing": 2 * e, "other": 3 * e})
    assert "It looks like the 1/2 is missing." in one and "other" not in one


def test_lint_finds_mistakes_the_data_cannot_separate():
    e = torch.tensor([1.0, 2.0, 3.0])
    with checks.lint_mistakes():
        checks.check_close(e, e, mistakes={"a": 2 * e, "b": 3 * e})  # separated: passes
        with pytest.raises(checks.MistakesNotSeparated, match="'a' and 'b'"):
            checks.check_close(e, e, mistakes={"a": 2 * e, "b": 2 * e})
        with pytest.raises(checks.MistakesNotSeparated, match="gives the expected values"):
            checks.check_close(e, e, mistakes={"a": e.clone()})
    checks.check_close(e, e, mistakes={"a": 2 * e, "b": 2 * e})  # off by default: students never see it


def test_lazy_package_and_all():
    import dlcourse.grading as grading

    assert set(grading.__all__) >= set(checks.__all__)
    assert grading.check_close is checks.check_close


def test_grade_help_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, dlcourse.grading, dlcourse.grading.cli, dlcourse.grading.sandbox; "
            "dlcourse.grading.sandbox.describe(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_reply_headers_are_capped_before_parsing():
    import time

    huge = _frame({"msg": {"v": "x" * (2 << 20)}, "nbuf": 0})
    t0 = time.monotonic()
    with pytest.raises(protocol.ProtocolError, match="header"):
        protocol.unpack(huge)
    assert time.monotonic() - t0 < 0.5
    nested = struct.pack(">Q", 200_000) + b"[" * 200_000 + struct.pack(">Q", 0)
    with pytest.raises(protocol.ProtocolError):
        protocol.unpack(nested)
    # a worker's own huge list is described, not refused
    out = protocol.unpack(protocol.pack({"value": list(range(300_000))}))["value"]
    assert isinstance(out, protocol.StudentObject) and "too large" in out.describe()


# --------------------------------------------------------------------------------------------------------------
# protocol: only plain data comes back


def test_codec_round_trip():
    msg = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": [1, 2.5, "x", None, True],
           "c": {"k": (torch.tensor(3), torch.int64)}, "d": torch.zeros(0, 2), "e": torch.ones(2, dtype=torch.bool)}
    out = protocol.unpack(protocol.pack(msg))
    assert torch.equal(out["a"], msg["a"]) and out["b"] == msg["b"] and out["c"]["k"][1] is torch.int64
    assert out["d"].shape == (0, 2) and out["e"].dtype == torch.bool


def test_codec_turns_objects_into_descriptions():
    class Sneaky:
        def __eq__(self, other):
            return True

        def __repr__(self):
            return "sneaky"

    out = protocol.unpack(protocol.pack({"v": Sneaky()}))["v"]
    assert isinstance(out, protocol.StudentObject) and "Sneaky" in out.describe()
    assert "Sneaky object (sneaky), but a torch.Tensor was expected" in _message(checks.check_close, out, torch.ones(1))
    with pytest.raises(CheckFailed):
        out.shape


def _frame(header: dict, *buffers: bytes) -> bytes:
    head = json.dumps(header).encode()
    parts = [struct.pack(">Q", len(head)), head]
    for b in buffers:
        parts += [struct.pack(">Q", len(b)), b]
    return b"".join(parts)


@pytest.mark.parametrize("data", [
    pickle.dumps({"type": "result", "value": 1}),
    _frame({"msg": {"v": {"t": "pickle", "data": "x"}}, "nbuf": 0}),
    _frame({"msg": {"v": {"t": "tensor", "i": 0, "dtype": "float32", "shape": [1000]}}, "nbuf": 1}, b"\0" * 4),
    _frame({"msg": {"v": {"t": "tensor", "i": 0, "dtype": "object", "shape": [1]}}, "nbuf": 1}, b"\0" * 8),
    _frame({"msg": {"v": {"t": "ndarray", "i": 0, "dtype": "|O", "shape": [1]}}, "nbuf": 1}, b"\0" * 8),
    _frame({"msg": {"v": 1}, "nbuf": 0}) + b"trailing",
])
def test_codec_rejects_bad_messages(data):
    with pytest.raises(protocol.ProtocolError):
        protocol.unpack(data)
