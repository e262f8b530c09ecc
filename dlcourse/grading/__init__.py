"""Graded assignments: masters with nbgrader markers, student versions, tensor-aware checks, a safe grader.

- `dlcourse.grading.markers`: how a master is written (see its docstring), parsing, and the student version;
- `dlcourse.grading.checks`: the checks tests use (``check_close``, ``check_shape``, statistical checks...);
- `dlcourse.grading.grader`: `Grader`, which runs a submission in a hardened worker process
  (`dlcourse.grading.worker`), confined by bubblewrap where it works (`dlcourse.grading.sandbox`), and its
  tests here, against proxies of the student's functions;
- `dlcourse.grading.submission`: the structural check of a submission file before anything runs;
- `dlcourse.grading.cli`: ``dlcourse assign``, ``dlcourse grade``, ``dlcourse release``.

Everything loads on first use (``from dlcourse.grading import check_close`` imports the checks, and with them
torch, only then), so ``dlcourse grade --help`` and ``dlcourse doctor`` stay fast.
"""

from __future__ import annotations

# the names of dlcourse.grading.checks.__all__ (tests/test_grading_units.py checks they agree)
_CHECKS = [
    "CheckFailed", "check_true", "check_tensor", "check_shape", "check_dtype", "check_finite", "check_in_range",
    "check_close", "check_equal", "check_mean_close", "check_cov_close", "check_frequencies",
]

__all__ = _CHECKS + ["Grader", "GradeResult", "grade"]


def __getattr__(name: str):
    if name in _CHECKS:
        from . import checks

        return getattr(checks, name)
    if name in ("Grader", "GradeResult"):
        from . import grader

        return getattr(grader, name)
    raise AttributeError(f"module 'dlcourse.grading' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def grade(submission, *, hidden: bool = False, **kwargs):
    """Grade one submission notebook; see `dlcourse.grading.grader.Grader` for the options."""
    from .grader import Grader

    return Grader(hidden=hidden, **kwargs).grade(submission)
