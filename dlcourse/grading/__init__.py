"""Graded assignments: masters with nbgrader markers, student versions, tensor-aware checks, a safe grader.

- `dlcourse.grading.markers`: how a master is written (see its docstring), parsing, and the student version;
- `dlcourse.grading.checks`: the checks tests use (``check_close``, ``check_shape``, statistical checks...);
- `dlcourse.grading.grader`: `Grader`, which runs a submission in a hardened worker process
  (`dlcourse.grading.worker`) and its tests here, against proxies of the student's functions;
- `dlcourse.grading.cli`: ``dlcourse assign``, ``dlcourse grade``, ``dlcourse release``.

The checks are imported eagerly (notebooks use them); the grader and the command line load on first use.
"""

from .checks import *  # noqa: F401,F403
from .checks import __all__ as _checks_all

__all__ = list(_checks_all) + ["Grader", "GradeResult", "grade"]


def __getattr__(name):
    if name in ("Grader", "GradeResult"):
        from . import grader

        return getattr(grader, name)
    raise AttributeError(name)


def grade(submission, *, hidden: bool = False, **kwargs):
    """Grade one submission notebook; see `dlcourse.grading.grader.Grader` for the options."""
    from .grader import Grader

    return Grader(hidden=hidden, **kwargs).grade(submission)
